"""Lane-array backend ``"verilator-fast"``: the Verilated array driven by a compiled C++ loop
(``fast_driver.cpp``) loaded with ctypes. Python hands over whole matrices and the driver runs
every cycle in C++; a matmul's tiles are split among independent models, one per thread.
No back-pressure (the output is always ready) and no waveform.

The fast build rewrites the array's Verilog (:func:`dual_edge_verilog`, :func:`tie_top_inputs`)
and generates the driver's port header; :func:`canna.sim.rtl_build.verilated_library` builds
and caches it under ``build/array/`` (``CANNA_BUILD_DIR``).
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

from canna.spec.array import COUNTERS, DEFAULT_STAGES, pipeline_latency, split_tiles, tile_count
from canna.spec.layouts import op_layout

from ..native import run_parts
from ..paths import build_root
from ..rtl_build import LANE_MODULE, array_name, array_verilog, verilated_library
from .check import ArrayMismatch
from .job import ArrayJob, RawRun

__all__ = ["run", "build", "FastArray", "dual_edge_verilog", "tie_top_inputs",
           "FAST_TIED_INPUTS"]

#: Verilator flags of the fast build: no assertions, X values resolved at compile time.
#: ``-fno-dfg`` (with the lane's input ports public, :data:`VERILATOR_CONFIG`) lets Verilator emit
#: one copy of the lane's code shared by every lane instead of one specialised copy per lane
#: (smaller hot code, shorter builds: docs/performance.md).
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-fno-dfg",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "--output-split", "20000")
#: C++ flags: the model's hot files at -O2, its one-off initialisation files at -O0.
CXX_FAST = ("-O2", "-fno-strict-aliasing", "-w")
CXX_SLOW = ("-O0", "-fno-strict-aliasing", "-w")


#: Verilator configuration: keep the lane a module of its own (one C++ class shared by all lanes)
#: and its input ports real variables, so that the lane's code reads only its own members and is
#: emitted once for all lanes.
#: ``held_a`` / ``held_b`` (the held operand registers) are public for the driver's switching
#: activity probe.
VERILATOR_CONFIG = (f'`verilator_config\nno_inline -module "{LANE_MODULE}"\n'
                    + "".join(f'public_flat_rd -module "{LANE_MODULE}" -var "{v}"\n'
                              for v in ("i__*", "o__ready", "cfg_*", "clear", "held_a",
                                        "held_b")))


def dual_edge_verilog(text: str) -> str:
    """The fast build's Verilog: every register clocked on both edges of ``clk``, so that one
    toggle of ``clk`` and one ``eval()`` is one clock cycle (``fast_driver.cpp``). The design
    has one clock domain, and Amaranth writes each register as ``always @(posedge clk)``."""
    n = text.count("always @(posedge clk)")
    if n == 0 or "negedge" in text or text.count("posedge") != n:
        raise ValueError("unexpected clocking in the array's Verilog")
    return text.replace("always @(posedge clk)", "always @(edge clk)")


#: Top-level inputs the fast build turns into constants (:func:`tie_top_inputs`).
FAST_TIED_INPUTS = {"o__ready": 1, "rst": 0}


def tie_top_inputs(text: str, values: dict[str, int], top: str = "lane_array") -> str:
    """The ``top`` module's Verilog with the 1-bit inputs ``values`` (name -> 0 or 1) turned
    from ports into constant wires. Refuses text it does not recognise.

    The fast build ties ``o.ready`` high and ``rst`` low: its driver never applies
    back-pressure (the Amaranth and cocotb backends test that) and needs no reset pulse (every
    register starts at its reset value, Amaranth's Verilog initialiser). Verilator re-evaluates,
    on every ``eval()``, all the logic that depends on a top-level input - as ports these two
    reach every register's next state of every lane (the CFPU's pipeline enables, the
    synchronous resets) - and folds it away when they are constants (docs/performance.md). The
    rest of the design is unchanged, and every run is still checked against the golden model.
    """
    head = re.search(rf"^module {top}\((.*?)\);", text, re.M | re.S)
    end = text.find("\nendmodule", head.end()) if head else -1
    if head is None or end < 0:
        raise ValueError(f"no module {top} in the Verilog")
    ports, body = head.group(1), text[head.end():end]
    for name, value in values.items():
        port = re.compile(rf",\s*{name}\s*,")
        decl = f"\n  input {name};\n  wire {name};\n"
        if len(port.findall(ports)) != 1 or body.count(decl) != 1:
            raise ValueError(f"unexpected {name} port in the {top} module's Verilog")
        ports = port.sub(",", ports)
        body = body.replace(decl, f"\n  wire {name} = 1'b{int(bool(value))};\n")
    return text[:head.start()] + f"module {top}({ports});" + body + text[end:]


def _ports_header(lanes: int, top_class: str) -> str:
    def v(name):  # Verilator's name of an Amaranth port ("__" is escaped)
        return name.replace("__", "___05F")
    binds = " ".join(
        f"payload[{l}] = reinterpret_cast<uint32_t*>(&(top)->{v(f'i__{l}__payload')}); "
        f"valid[{l}] = &(top)->{v(f'i__{l}__valid')}; ready[{l}] = &(top)->{v(f'i__{l}__ready')};"
        for l in range(lanes))
    ptrs = ", ".join(f"reinterpret_cast<const uint32_t*>(&(top)->{c})" for c in COUNTERS)
    probes = " ".join(
        f"held_a[{l}] = &(top)->rootp->vlSymsp->TOP__lane_array__DOT__lane{l}.held_a; "
        f"held_b[{l}] = &(top)->rootp->vlSymsp->TOP__lane_array__DOT__lane{l}.held_b;"
        for l in range(lanes))
    names = {"P_O_VALID": "o__valid", "P_O_PAYLOAD": "o__payload",
             "P_CFG_VALID": "cfg__valid", "P_CFG_PAYLOAD": "cfg__payload"}
    # a lane operation's 32-bit words, from its layout: the operands, then last/nop flags
    op = {name: op_layout()[name].offset for name in ("a", "b", "last", "nop")}
    words = {"OP_A_WORD": op["a"] // 32, "OP_B_WORD": op["b"] // 32,
             "OP_FLAGS_WORD": op["last"] // 32}
    if (op["a"] % 32 or op["b"] % 32 or op["nop"] // 32 != words["OP_FLAGS_WORD"]
            or len(set(words.values())) != 3):
        raise ValueError(f"the fast driver needs word-aligned operands and one flags word: {op}")
    return "\n".join([
        f"// generated by canna.sim.array.fast: ports of the {lanes}-lane array",
        "#pragma once", f'#include "{top_class}.h"', f'#include "{top_class}__Syms.h"',
        f"#define LANES {lanes}", f"#define TOP_CLASS {top_class}",
        f"#define BIND_LANES(top, payload, valid, ready) do {{ {binds} }} while (0)",
        f"#define BIND_PROBES(top, held_a, held_b) do {{ {probes} }} while (0)",
        f"#define N_COUNTERS {len(COUNTERS)}", f"#define COUNTER_PTRS(top) {ptrs}",
        *[f"#define {k} {v}" for k, v in words.items()],
        f"#define OP_LAST {1 << op['last'] % 32}u", f"#define OP_NOP {1 << op['nop'] % 32}u",
        *[f"#define {k} {v(n)}" for k, n in names.items()], ""])


def build(*, lanes: int = 16, exact_cycles: int = 4, discipline: str = "lockstep",
          stages: int = DEFAULT_STAGES, quiet: bool = True) -> Path:
    """Verilate the array and compile it with ``fast_driver.cpp`` into a shared library
    (:func:`canna.sim.rtl_build.verilated_library`: cached by content under ``build/array/``,
    ``CANNA_BUILD_DIR``). Returns the library path."""
    name = array_name(lanes, exact_cycles, discipline, stages)
    root = build_root() / "array"
    plain = array_verilog(root / "rtl" / f"{name}.v", lanes=lanes, exact_cycles=exact_cycles,
                          discipline=discipline, stages=stages)
    return verilated_library(
        name, tie_top_inputs(dual_edge_verilog(plain.read_text()), FAST_TIED_INPUTS), top="lane_array",
        driver=Path(__file__).with_name("fast_driver.cpp"), root=root,
        verilator_flags=VERILATOR_FLAGS, cxx_fast=CXX_FAST, cxx_slow=CXX_SLOW,
        config=VERILATOR_CONFIG, headers={"array_ports.h": _ports_header(lanes, "Vlane_array")},
        quiet=quiet)


class FastArray:
    """Loaded fast co-simulations of one array geometry: ``threads`` independent models (default
    2, ``CANNA_ARRAY_THREADS``) that share a matmul's tiles, each in its own Python thread (ctypes
    releases the GIL). Tiles are independent and never stall, so the cycle counts and counters of
    the parts add up to those of one array running every tile; each part is checked on its own
    (its wall cycles equal its cycles plus the pipeline latency)."""

    _cache: dict = {}

    def __init__(self, lib_path: Path, lanes: int, stages: int, threads: int | None = None):
        import ctypes
        self.lib = ctypes.CDLL(str(lib_path))
        self.lanes = lanes
        self.latency = pipeline_latency(stages)
        L = self.lib
        p = ctypes.c_void_p
        L.canna_array_new.restype = p
        L.canna_array_free.argtypes = [p]
        L.canna_array_config.argtypes = [p, ctypes.c_uint32]
        i64 = ctypes.c_int64
        L.canna_array_matmul.argtypes = [p, i64, i64, i64, p, p, p, p, p, p, i64, i64]
        L.canna_array_matmul.restype = ctypes.c_int
        if L.canna_array_lanes() != lanes:
            raise RuntimeError(f"{lib_path} has {L.canna_array_lanes()} lanes, expected {lanes}")
        if threads is None:
            text = os.environ.get("CANNA_ARRAY_THREADS", str(min(2, os.cpu_count() or 1)))
            if not text.strip().isdigit() or int(text) < 1:
                raise ValueError(f"CANNA_ARRAY_THREADS must be a positive integer, got {text!r}")
            threads = int(text)
        self.handles = [L.canna_array_new() for _ in range(max(1, threads))]
        self.codes: list | None = None

    @classmethod
    def get(cls, *, lanes: int, exact_cycles: int, discipline: str, stages: int) -> "FastArray":
        key = (lanes, exact_cycles, discipline, stages)
        if key not in cls._cache:
            lib = build(lanes=lanes, exact_cycles=exact_cycles, discipline=discipline,
                             stages=stages)
            cls._cache[key] = cls(lib, lanes, stages)
        return cls._cache[key]

    def configure(self, job: ArrayJob) -> None:
        """Write the lanes' configurations (:meth:`ArrayJob.config_writes`); skipped when
        unchanged."""
        if self.codes == job.codes:
            return
        for h in self.handles:
            for word in job.config_writes():
                self.lib.canna_array_config(h, word)
        self.codes = job.codes

    def run(self, job: ArrayJob) -> RawRun:
        """Run one matmul."""
        t0 = time.perf_counter()
        self.configure(job)
        a_bits, b_bits, activity = job.a_bits, job.b_bits, job.activity
        m, k_dim = a_bits.shape
        n = b_bits.shape[1]
        a_c = np.ascontiguousarray(a_bits, dtype=np.uint32)
        bt = np.ascontiguousarray(b_bits.T, dtype=np.uint32)
        out = np.zeros((m, n), np.uint32)
        bounds = split_tiles(tile_count(m, n, self.lanes), len(self.handles))
        parts = len(bounds) - 1
        counters = np.zeros((parts, len(COUNTERS), self.lanes), np.uint64)
        stats = np.zeros((parts, 4), np.uint64)
        act = np.zeros((parts, self.lanes, 6), np.uint64)  # toggles, then start values

        def part(i):
            return self.lib.canna_array_matmul(
                self.handles[i], m, n, k_dim, a_c.ctypes.data, bt.ctypes.data, out.ctypes.data,
                counters[i].ctypes.data, stats[i].ctypes.data,
                act[i].ctypes.data if activity else None, bounds[i], bounds[i + 1])
        rcs = run_parts(part, parts)
        if any(rcs):
            raise RuntimeError("the Verilated array stopped making progress")
        walls = stats[:, 1].astype(np.int64)
        cycles = stats[:, 0].astype(np.int64)
        if not np.array_equal(walls[bounds[1:] > np.array(bounds[:-1])],
                              (cycles + self.latency)[bounds[1:] > np.array(bounds[:-1])]):
            raise ArrayMismatch(f"fast co-simulation: wall cycles {walls.tolist()} != cycles "
                                f"{cycles.tolist()} + latency {self.latency}")
        toggles = [((bounds[i], bounds[i + 1]), act[i, :, 3:].astype(np.uint32),
                    act[i, :, :3].astype(np.int64)) for i in range(parts)] if activity else []
        total = counters.sum(axis=0)
        # one array running all tiles back to back: the fill/drain latency counts once
        return RawRun(out=out, cycles=int(cycles.sum()), wall_cycles=int(cycles.sum()) + self.latency,
                      latency=self.latency, seconds=time.perf_counter() - t0, toggle_parts=toggles,
                      counters={name: total[i].astype(np.int64) for i, name in enumerate(COUNTERS)},
                      extra={"sim_cycles": int(stats[:, 2].sum()), "evals": int(stats[:, 3].sum()),
                             "models": parts})


def run(job: ArrayJob) -> RawRun:
    if job.p_stall or job.vcd:
        raise ValueError("p_stall and vcd need the amaranth or cocotb backend: the fast "
                         "co-simulation never applies back-pressure and writes no waveform")
    return FastArray.get(lanes=job.lanes, exact_cycles=job.geometry.exact_cycles,
                         discipline=job.discipline, stages=job.stages).run(job)
