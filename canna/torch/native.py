"""The C++ half of CFPULinear's lean branch (``lean_layers.cpp``): built with the machine's C++
compiler against the installed PyTorch on first use and cached as the C kernels are
(:mod:`canna.sim.native`); about a minute the first time. It calls the C kernels of the loaded
``_fastkernels`` module through that module's capsule, so there is one build of them.

:func:`lean_module` is None where it cannot be had (no C++ compiler, no C kernels,
``CANNA_NO_NATIVE`` set, ``CANNA_NO_CPP`` set: the Python lean branch then serves, with the
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


@functools.cache
def lean_module():
    """The built extension with its kernels and Python fallbacks set, or None (a warning says
    why when a build failed)."""
    lib = _matmul._Kernels.get()
    if lib is None or os.environ.get("CANNA_NO_CPP"):
        return None
    try:
        module = _build()
    except (NativeBuildError, OSError, ImportError) as e:
        warnings.warn(f"CFPULinear's C++ lean branch unavailable, using Python: {e}", RuntimeWarning)
        return None
    from . import conv, engine, layers
    module.set_kernels(lib.lean_api, layers, conv, engine)
    return module


def _build():
    torch_dir = Path(torch.__file__).parent
    includes = (torch_dir / "include", torch_dir / "include" / "torch" / "csrc" / "api" / "include",
                _HEADER.parent)
    flags = ("-O2", "-std=c++20", f"-DTORCH_EXTENSION_NAME={NAME}", "-DTORCH_API_INCLUDE_EXTENSION_H",
             *(f"-isystem{d}" if d != _HEADER.parent else f"-I{d}" for d in includes))
    lib_dir = torch_dir / "lib"
    libs = (f"-L{lib_dir}", "-lc10", "-ltorch_cpu", "-ltorch", "-ltorch_python", f"-Wl,-rpath,{lib_dir}")
    key = f"torch {torch.__version__} {hashlib.sha256(_HEADER.read_bytes()).hexdigest()}"
    return build_extension(NAME, [_SOURCE], compiler=os.environ.get("CXX", "g++"), flags=flags,
                           libs=libs, key_extra=key)
