"""CFPU arithmetic inside PyTorch models: every product of ``nn.Linear`` and ``nn.Conv2d`` layers,
forward and backward, equal bit for bit to the golden CFPU model (docs/torch.md).

    from canna.torch import convert, attach_counters
    from canna.spec.config import CFPUConfig
    model = convert(model, CFPUConfig.approx(3))     # every layer, every phase at t = 3
    counters = attach_counters(model)                # products and hits per layer and phase
"""
from .engine import matmul
from .conv import CFPUConv2d
from .layers import CFPULinear, LayerPlan, cfpu_matmul
from .model import attach_counters, cfpu_layers, convert, follow_gta, set_level

__all__ = ["matmul", "cfpu_matmul", "LayerPlan", "CFPULinear", "CFPUConv2d", "convert",
           "cfpu_layers", "attach_counters", "set_level", "follow_gta"]
