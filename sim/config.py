"""The per-operation configuration of the CFPU, shared by the golden model, the RTL, the lanes and
the NN layers: approximation on or off, the number of tuning bits, and the policy that says whose
mantissa may be discarded."""
from __future__ import annotations

import enum
import operator
from dataclasses import dataclass

__all__ = ["Policy", "CFPUConfig", "EXACT", "MAX_TUNING_BITS"]

#: Largest tuning-bit count for binary32: 23 fraction bits minus the first one (m1).
MAX_TUNING_BITS = 22


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
        if isinstance(self.tuning_bits, bool):
            raise TypeError("tuning_bits must be an integer, got a bool")
        try:
            bits = operator.index(self.tuning_bits)
        except TypeError:
            raise TypeError(f"tuning_bits must be an integer, got {self.tuning_bits!r}") from None
        if not 0 <= bits <= MAX_TUNING_BITS:
            raise ValueError(f"tuning_bits must be in 0..{MAX_TUNING_BITS}, got {bits}")
        object.__setattr__(self, "tuning_bits", bits)
        object.__setattr__(self, "policy", _parse_policy(self.policy))

    @classmethod
    def exact(cls) -> "CFPUConfig":
        return cls(enabled=False)

    @classmethod
    def approx(cls, tuning_bits: int, policy="b") -> "CFPUConfig":
        return cls(enabled=True, tuning_bits=tuning_bits, policy=policy)

    def describe(self) -> str:
        if not self.enabled:
            return "exact"
        return f"t={self.tuning_bits} policy={self.policy.value}"

    def as_dict(self) -> dict:
        return {"enabled": self.enabled, "tuning_bits": self.tuning_bits, "policy": self.policy.value}


EXACT = CFPUConfig.exact()
