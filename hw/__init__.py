"""The hardware in Amaranth HDL: the CFPU and the stages it is built from, the accumulator adder,
the multiply-accumulate lane and the SIMD lane array."""
from .adder import FAdd, FAddUnit
from .approx import ApproxDecide, ResultSelect
from .array import LaneArray
from .cfpu import CFPU, DATAPATH_ORDER, MAX_STAGES, PLACEMENT
from .lane import Lane
from .stages import Normalise, RoundPack, SigMul, Unpack

__all__ = [
    "CFPU", "DATAPATH_ORDER", "MAX_STAGES", "PLACEMENT", "FAdd", "FAddUnit", "Lane", "LaneArray",
    "Unpack", "SigMul", "Normalise", "RoundPack", "ApproxDecide", "ResultSelect",
]
