"""The per-operation configuration of the CFPU, shared by the golden model, the RTL, the lanes and
the NN layers: approximation on or off, the number of tuning bits, and the policy that says whose
mantissa may be discarded; and its encoding as the configuration word the RTL carries
(:func:`config_layout`, :func:`encode_config`, :func:`decode_config`), defined here and only here.
"""
from __future__ import annotations

import enum
import operator
from dataclasses import dataclass

import numpy as np
from amaranth.lib import data
from amaranth.utils import bits_for

from .formats import BINARY32, FloatFormat

__all__ = ["Policy", "CFPUConfig", "EXACT", "MAX_TUNING_BITS", "check_tuning_bits",
           "config_layout", "encode_config", "encode_configs", "decode_config"]

#: Largest tuning-bit count for binary32: 23 fraction bits minus the first one (m1).
MAX_TUNING_BITS = BINARY32.max_tuning_bits


def check_tuning_bits(t, what: str = "tuning_bits", fmt: FloatFormat = BINARY32) -> int:
    """``t`` as an int in ``0 .. fmt.max_tuning_bits``: the one check of a tuning-bit count.

    Raises ``TypeError`` for a non-integer (a bool included) and ``ValueError`` out of range,
    each naming ``what``."""
    if isinstance(t, bool):
        raise TypeError(f"{what} must be an integer, got a bool")
    try:
        bits = operator.index(t)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {t!r}") from None
    if not 0 <= bits <= fmt.max_tuning_bits:
        suffix = "" if fmt is BINARY32 else f" for {fmt.name}"
        raise ValueError(f"{what} must be in 0..{fmt.max_tuning_bits}{suffix}, got {bits}")
    return bits


class Policy(str, enum.Enum):
    """Which operand's mantissa the approximate mode may discard.

    ``B``: only the second operand (``b``) is checked; with ``y = x @ W`` that is the weight.
    ``DUAL``: ``b`` is checked first; when ``b`` does not qualify and ``a`` does, ``a``'s
    mantissa is discarded instead.
    """

    B = "b"
    DUAL = "dual"

    def __str__(self) -> str:
        return self.value


def _parse_policy(policy) -> Policy:
    if isinstance(policy, Policy):
        return policy
    try:
        return Policy(policy)
    except ValueError:
        known = ", ".join(p.value for p in Policy)
        raise ValueError(f"unknown policy {policy!r}; expected one of: {known}") from None


@dataclass(frozen=True)
class CFPUConfig:
    """Configuration of one CFPU operation.

    Parameters
    ----------
    enabled : bool
        Approximation on. When off every product runs in exact (IEEE-754) mode.
    tuning_bits : int
        Number ``t`` of fraction bits after ``m1`` that must all equal ``m1`` for a product to
        run approximately (0 .. 22 for binary32). Each extra bit halves the worst relative error.
    policy : Policy or str
        ``"b"`` or ``"dual"`` (see :class:`Policy`).
    """

    enabled: bool = False
    tuning_bits: int = 0
    policy: Policy = Policy.B

    def __post_init__(self):
        if not isinstance(self.enabled, bool):
            raise TypeError(f"enabled must be a bool, got {self.enabled!r}")
        object.__setattr__(self, "tuning_bits", check_tuning_bits(self.tuning_bits))
        object.__setattr__(self, "policy", _parse_policy(self.policy))

    @classmethod
    def exact(cls) -> "CFPUConfig":
        return cls(enabled=False)

    @classmethod
    def approx(cls, tuning_bits: int, policy="b") -> "CFPUConfig":
        return cls(enabled=True, tuning_bits=tuning_bits, policy=policy)

    def word_fields(self) -> tuple[int, int, int]:
        """``(enabled, tuning_bits, dual)`` as the configuration word carries them: all zero
        for an exact configuration (:func:`encode_config`)."""
        if not self.enabled:
            return 0, 0, 0
        return 1, self.tuning_bits, int(self.policy is Policy.DUAL)

    def describe(self) -> str:
        if not self.enabled:
            return "exact"
        return f"t={self.tuning_bits} policy={self.policy.value}"

    def as_dict(self) -> dict:
        return {"enabled": self.enabled, "tuning_bits": self.tuning_bits, "policy": self.policy.value}


EXACT = CFPUConfig.exact()


# ---- the configuration word --------------------------------------------------------------------

def config_layout(fmt: FloatFormat = BINARY32) -> data.StructLayout:
    """The per-operation configuration carried with the operands, LSB first: ``enabled``
    (1 bit), ``tuning_bits`` (enough bits for ``fmt.max_tuning_bits``: 5 for binary32) and
    ``policy`` (1 bit, 0 = ``b``, 1 = ``dual``)."""
    return data.StructLayout({
        "enabled": 1,
        "tuning_bits": bits_for(fmt.max_tuning_bits),
        "policy": 1,
    })


def encode_config(config: CFPUConfig, fmt: FloatFormat = BINARY32) -> int:
    """The integer value of :func:`config_layout` for one :class:`CFPUConfig` (an exact
    configuration is all zeros)."""
    if not isinstance(config, CFPUConfig):
        raise TypeError(f"config must be a CFPUConfig, got {type(config).__name__}")
    if config.enabled:
        check_tuning_bits(config.tuning_bits, fmt=fmt)
    return int(encode_configs(*config.word_fields(), fmt))


def encode_configs(enabled, tuning_bits, dual, fmt: FloatFormat = BINARY32) -> np.ndarray:
    """Vectorised :func:`encode_config` on arrays (``dual`` True for :attr:`Policy.DUAL`)."""
    layout = config_layout(fmt)
    enabled = np.asarray(enabled, dtype=np.uint64)
    tuning = np.asarray(tuning_bits, dtype=np.uint64) * enabled
    dual = np.asarray(dual, dtype=np.uint64) * enabled
    return ((enabled << np.uint64(layout["enabled"].offset))
            | (tuning << np.uint64(layout["tuning_bits"].offset))
            | (dual << np.uint64(layout["policy"].offset)))


def decode_config(code: int, fmt: FloatFormat = BINARY32) -> CFPUConfig:
    """Inverse of :func:`encode_config`."""
    layout = config_layout(fmt)
    code = int(code)

    def field(name):
        f = layout[name]
        return (code >> f.offset) & ((1 << f.width) - 1)
    if not field("enabled"):
        return EXACT
    return CFPUConfig.approx(field("tuning_bits"), Policy.DUAL if field("policy") else Policy.B)
