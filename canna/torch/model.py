"""Model-level helpers: ``convert`` a model's ``nn.Linear``/``nn.Conv2d`` layers to CFPU layers,
list them, attach counters, set their level (uniformly, or from the GTA controller)."""
from __future__ import annotations

from torch import nn

from canna.nn.mlp import PHASES, ArithPlan, Counters
from canna.spec.array import ArrayGeometry

from .conv import CFPUConv2d
from .layers import CFPULinear, LayerPlan, _CFPULayer

__all__ = ["convert", "cfpu_layers", "attach_counters", "set_level", "follow_gta"]

def cfpu_layers(model: nn.Module) -> list:
    """The CFPU layers of ``model`` in module order (the layer index of plans and counters)."""
    return [m for m in model.modules() if isinstance(m, _CFPULayer)]


def _plans(config, n: int) -> list:
    if isinstance(config, ArithPlan):
        if config.n_layers != n:
            raise ValueError(f"the plan has {config.n_layers} layers, the model {n} Linear/Conv2d layers")
        return [LayerPlan(**row, checked=config.checked) for row in config.configs]
    if isinstance(config, (list, tuple)):
        if len(config) != n:
            raise ValueError(f"{len(config)} per-layer plans for {n} Linear/Conv2d layers")
        return [LayerPlan.of(c) for c in config]
    return [LayerPlan.of(config)] * n


def convert(model: nn.Module, config=None, *, path: str = "auto") -> nn.Module:
    """Replace every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` (in place; ``model`` itself
    when it is one) by its CFPU layer holding the same Parameter objects (tied weights stay tied;
    a module used twice becomes one CFPU layer used twice). ``config``: one plan for every layer
    (anything :meth:`LayerPlan.of` takes), a list of them (one per distinct layer, in module
    order) or an :class:`~canna.nn.mlp.ArithPlan` with one row per layer. Returns the model.
    Layers that already are CFPU layers get their plan set instead."""
    uses = [(name, m) for name, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, (nn.Linear, nn.Conv2d))]
    distinct = list({id(m): m for _, m in uses}.values())
    twins = {}
    for old, plan in zip(distinct, _plans(config, len(distinct))):
        if isinstance(old, _CFPULayer):
            old.plan, old.path = plan, path
        else:
            twins[id(old)] = _cfpu_twin(old, plan, path)
    out = model
    for name, old in uses:
        new = twins.get(id(old))
        if new is None:
            continue
        if name == "":
            out = new
        else:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, new)
    return out


def _cfpu_twin(old: nn.Module, plan: LayerPlan, path: str) -> nn.Module:
    p = old.weight
    kw = dict(bias=old.bias is not None, device=p.device, dtype=p.dtype, config=plan, path=path)
    if isinstance(old, nn.Conv2d):
        new = CFPUConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                         old.dilation, old.groups, padding_mode=old.padding_mode, **kw)
    else:
        new = CFPULinear(old.in_features, old.out_features, **kw)
    new.weight, new.bias = old.weight, old.bias    # the same Parameters, not copies
    new.train(old.training)
    return new


def attach_counters(model: nn.Module, geometry: ArrayGeometry | None = None) -> Counters:
    """A fresh :class:`~canna.nn.mlp.Counters` (products, hits, nonzero products per layer and
    phase; with ``geometry`` the lane array's accounting of every matmul) that every CFPU layer
    of ``model`` books into from now on (layer ``i`` = the ``i``-th in module order)."""
    layers = cfpu_layers(model)
    counters = Counters(len(layers), geometry)
    for i, m in enumerate(layers):
        m.counters, m.index = counters, i
    return counters


def set_level(model: nn.Module, tuning_bits: int | None, policy="b", phases=PHASES) -> None:
    """Every CFPU layer at ``tuning_bits`` (None: exact) in ``phases`` (the others exact),
    keeping each layer's checked operands."""
    for m in cfpu_layers(model):
        m.plan = LayerPlan.uniform(tuning_bits, policy, phases, m.plan.checked)


def follow_gta(model: nn.Module, controller, policy="b", phases=PHASES) -> int:
    """Set every CFPU layer to the GTA controller's current level (call it before each step,
    and ``controller.observe(iteration, batch_error)`` after); returns that level."""
    set_level(model, controller.level, policy, phases)
    return controller.level
