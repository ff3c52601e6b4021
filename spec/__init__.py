"""The specification layer every other part of CANNA imports, and which imports nothing of ours
(in the spirit of CVFPU's ``fpnew_pkg``): floating-point formats, the CFPU configuration and its
encoding, the bit layouts of the RTL's ports, and the lane array's parameters and tile plan."""
from .array import (COUNTERS, DEFAULT_EXACT_CYCLES, DEFAULT_LANES, DEFAULT_STAGES, DISCIPLINES,
                    ArrayGeometry, pipeline_latency, split_tiles, tile_count, tile_plan)
from .config import (EXACT, MAX_TUNING_BITS, CFPUConfig, Policy, check_tuning_bits, config_layout,
                     decode_config, encode_config, encode_configs)
from .formats import BFLOAT16, BINARY16, BINARY32, FORMATS, FloatFormat, get_format

__all__ = [
    "FloatFormat", "FORMATS", "BINARY32", "BFLOAT16", "BINARY16", "get_format",
    "Policy", "CFPUConfig", "EXACT", "MAX_TUNING_BITS", "check_tuning_bits", "config_layout",
    "encode_config", "encode_configs", "decode_config",
    "ArrayGeometry", "DISCIPLINES", "COUNTERS", "DEFAULT_STAGES", "DEFAULT_LANES",
    "DEFAULT_EXACT_CYCLES", "pipeline_latency", "tile_count", "tile_plan", "split_tiles",
]
