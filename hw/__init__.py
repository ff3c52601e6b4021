"""The CFPU in Amaranth HDL: :class:`~canna.hw.cfpu.CFPU` and the stages it is built from."""
from .approx import ApproxDecide, ResultSelect
from .cfpu import CFPU, DATAPATH_ORDER, MAX_STAGES, PLACEMENT
from .layouts import (FLAGS_LAYOUT, config_layout, encode_config, encode_configs, float_layout,
                      input_layout, output_layout)
from .stages import Normalise, RoundPack, SigMul, Unpack

__all__ = [
    "CFPU", "DATAPATH_ORDER", "MAX_STAGES", "PLACEMENT",
    "Unpack", "SigMul", "Normalise", "RoundPack", "ApproxDecide", "ResultSelect",
    "FLAGS_LAYOUT", "config_layout", "encode_config", "encode_configs", "float_layout",
    "input_layout", "output_layout",
]
