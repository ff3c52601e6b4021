"""The C++ half of CFPULinear's and CFPUConv2d's lean branches (``lean_layers.cpp``): built
with the machine's C++ compiler against the installed PyTorch on first use and cached as the C
kernels are (:mod:`canna.sim.native`); about a minute the first time. It calls the C kernels of
the loaded ``_fastkernels`` module through that module's capsule, so there is one build of them.

:func:`lean_module` is None where it cannot be had (no C++ compiler, no C kernels,
``CANNA_NO_NATIVE`` set, ``CANNA_NO_CPP`` set: the Python lean branches then serve, with the
same bits, slower)."""
from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import torch

from canna.sim import matmul as _matmul
from canna.sim.native import NativeBuildError, build_extension

NAME = "_canna_lean_layers"
_SOURCE = Path(__file__).with_name("lean_layers.cpp")
_HEADER = Path(_matmul.__file__).with_name("fastkernels.h")


def lean_module():
    """The built extension with its kernels and Python fallbacks set, or None (a warning says
    why when a build failed). Asked per call: only the build's outcome is kept, so a process
    whose C kernels were off for a while (``CANNA_NO_NATIVE``) gets the extension once they are
    back. None while ``torch.jit.trace`` or ``torch.compile`` records the model: they see a
    Python autograd Function as one operation, but would record a C++ node's operations one by
    one without the C kernels between them (a trace multiplying by uninitialised memory)."""
    if torch.compiler.is_compiling() or torch._C._get_tracing_state() is not None:
        return None
    lib = _matmul._Kernels.get()
    if lib is None or os.environ.get("CANNA_NO_CPP"):
        return None
    return _built(lib)


@functools.cache
def _built(lib):
    try:
        module = _build()
    except (NativeBuildError, OSError, ImportError) as e:
        warnings.warn(f"the C++ lean branches of CFPULinear and CFPUConv2d unavailable, using "
                      f"Python: {e}", RuntimeWarning)
        return None
    from . import conv, engine, layers
    module.set_kernels(lib.lean_api, layers, conv, engine)
    return module


def _build():
    torch_dir = Path(torch.__file__).parent
    torch_includes = (torch_dir / "include", torch_dir / "include" / "torch" / "csrc" / "api" / "include")
    flags = ("-O2", "-std=c++20", f"-DTORCH_EXTENSION_NAME={NAME}", "-DTORCH_API_INCLUDE_EXTENSION_H",
             f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",   # libtorch's ABI
             *(f"-isystem{d}" for d in torch_includes), f"-I{_HEADER.parent}")
    lib_dir = torch_dir / "lib"
    libs = (f"-L{lib_dir}", "-lc10", "-ltorch_cpu", "-ltorch", "-ltorch_python", f"-Wl,-rpath,{lib_dir}")
    key = f"torch {torch.__version__} {hashlib.sha256(_HEADER.read_bytes()).hexdigest()}"
    return build_extension(NAME, [_SOURCE], compiler=os.environ.get("CXX", "g++"), flags=flags,
                           libs=libs, key_extra=key)
