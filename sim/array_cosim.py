"""Matmul driver of the SIMD lane array (:class:`canna.hw.array.LaneArray`) over three backends.

``run_array(a, b, config, backend=..., geometry=..., discipline=...)`` tiles ``a @ b`` onto the
array exactly as the golden lane model does (:mod:`canna.sim.lanes`: tiles of ``lanes``
consecutive outputs of ``Y`` in row-major order, lane ``l`` streams the ``K`` products of its
output, padding lanes of the last tile stream ``nop`` operations), runs it, and checks every
result against the golden model: output bits, per-lane operation / hit / bypass / busy counts
and the cycle count of the discipline (the RTL's ``cycles`` counter must equal
``cycles_lockstep`` or ``cycles_decoupled``; wall-clock cycles are ``cycles + latency``).

Backends
    ``"amaranth"``
        The Amaranth simulator, one Python testbench step per cycle (small matrices only).
    ``"cocotb"``
        cocotb on the Verilated array (:mod:`canna.sim.cocotb_array`), one Python step per cycle.
    ``"verilator-fast"``
        The Verilated array driven by a compiled C++ loop (``sim/array_driver.cpp``) loaded with
        ctypes: Python hands over whole matrices, the driver runs every cycle in C++. Built once
        and cached by content hash under ``build/array/`` (``CANNA_BUILD_DIR``).

Operands are fed with no idle cycles and the output is always ready, unless ``p_stall`` (output
back-pressure probability, amaranth/cocotb) is set: then results are still checked bit for bit,
cycles are not (the model has no back-pressure).

Switching activity (``activity=True``, every backend): the testbench or driver reads every
lane's held operand registers and accumulator after every clock edge and counts their bit
toggles (``activity["toggles_a"]``, ``["toggles_b"]``, ``["toggles_acc"]``, per lane). Each
simulated model's counts are checked like the results: against
:func:`canna.sim.lanes.register_toggles` for its tiles, from its registers' values at the start
of the run.

A mismatch raises :class:`ArrayMismatch` whose message is the reproducer: backend, discipline,
geometry, configuration, seed, the first differing outputs (index, expected, actual) and the
path of an ``.npz`` with the operands. ``vcd=path`` writes a waveform (amaranth, cocotb).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from canna.hw.array import pipeline_latency

from .config import EXACT, CFPUConfig
from .lanes import (ArrayGeometry, LaneArrayResult, ToggleProbe, check_operands, lane_configs,
                    lane_operands, register_toggles, run_lane_array, tile_plan)

__all__ = ["BACKENDS", "ArrayRunResult", "ArrayMismatch", "run_array", "lane_ops",
           "golden_model", "verilog_array", "build_fast", "FastArray", "DEFAULT_STAGES"]

BACKENDS = ("amaranth", "cocotb", "verilator-fast")
DEFAULT_STAGES = 3
COUNTERS = ("ops", "hits", "bypass", "busy", "mul")


class ArrayMismatch(AssertionError):
    """The RTL array disagrees with the golden model; the message is a reproducer."""


@dataclass
class ArrayRunResult:
    """One matmul on the RTL array, with the golden model it was checked against."""

    value: np.ndarray                 # M x N float32, bit-identical to matmul_reference
    products: int
    hits: int
    tiles: int
    discipline: str
    cycles: int                       # the RTL's cycle counter (occupied cycles)
    wall_cycles: int                  # clock cycles from the first operation to the last beat
    counters: dict                    # per-lane RTL counters: ops, hits, bypass, busy, mul
    model: LaneArrayResult | None     # golden lane-array model (None for per-lane configs)
    backend: str
    seconds: float                    # simulation time (excluding builds and the golden check)
    activity: dict = field(default_factory=dict)

    @property
    def cycles_lockstep(self) -> int:
        return self.model.cycles_lockstep

    @property
    def cycles_decoupled(self) -> int:
        return self.model.cycles_decoupled

    @property
    def macs_per_second(self) -> float:
        return self.products / self.seconds if self.seconds else float("inf")


# ---- operand plan ----------------------------------------------------------------------------

def lane_ops(a_bits: np.ndarray, b_bits: np.ndarray, lanes: int):
    """Per-lane operation streams: (op_a, op_b, nop), op_* of shape (tiles, lanes, K) and nop
    (tiles, lanes). Padding lanes get zero operands and ``nop``."""
    m, _ = a_bits.shape
    n = b_bits.shape[1]
    rows, cols, valid = tile_plan(m, n, lanes)
    return (*lane_operands(a_bits, b_bits, rows, cols, valid), ~valid)


def _codes(configs):
    from canna.hw.layouts import encode_config
    return [encode_config(c) for c in configs]



# ---- golden check ----------------------------------------------------------------------------

def _reproducer_path(tag: str) -> Path:
    from .cosim import build_root
    d = build_root() / "array_mismatch"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{tag}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.npz"


def check_result(res: ArrayRunResult, a, b, configs, geometry: ArrayGeometry, *, seed=None,
                 check_cycles: bool = True, latency: int | None = None,
                 max_lines: int = 10) -> None:
    """Raise :class:`ArrayMismatch` unless ``res`` equals the golden model."""
    problems = []
    exp = res.model.value
    eb, gb = exp.view(np.uint32), res.value.view(np.uint32)
    bad = eb != gb
    if bad.any():
        idx = np.argwhere(bad)
        problems.append(f"{len(idx)} of {bad.size} outputs differ:")
        for i, j in idx[:max_lines]:
            problems.append(f"  Y[{i},{j}] (tile {(i * b.shape[1] + j) // geometry.lanes}, lane "
                            f"{(i * b.shape[1] + j) % geometry.lanes}): expected "
                            f"{int(eb[i, j]):08X} ({exp[i, j]!r}), got {int(gb[i, j]):08X} "
                            f"({res.value[i, j]!r})")
    model = res.model
    want = {"ops": model.lane_products, "hits": model.lane_hits,
            "bypass": model.lane_bypassed, "busy": model.lane_busy_lockstep,
            "mul": model.lane_products - model.lane_hits - model.lane_bypassed}
    for name, w in want.items():
        got = np.asarray(res.counters[name])
        if not np.array_equal(got, w):
            problems.append(f"lane {name} counters: expected {w.tolist()}, got {got.tolist()}")
    for tiles, start, got in res.activity.get("toggle_parts", ()):
        want = register_toggles(a, b, configs, geometry, tiles=tiles, start=start)
        if not np.array_equal(got, want):
            problems.append(f"register toggles (held_a, held_b, acc) of tiles {tiles[0]}.."
                            f"{tiles[1] - 1}: expected {want.tolist()}, got {got.tolist()}")
    if check_cycles:
        w = model.cycles_lockstep if res.discipline == "lockstep" else model.cycles_decoupled
        if res.cycles != w:
            problems.append(f"cycles ({res.discipline}): expected {w}, got {res.cycles}")
        if latency is not None and res.wall_cycles != w + latency:
            problems.append(f"wall cycles: expected {w} + latency {latency}, got {res.wall_cycles}")
    if problems:
        path = _reproducer_path(res.backend)
        np.savez(path, a=a, b=b, configs=np.array([repr(c) for c in configs]),
                 expected=exp, actual=res.value)
        cfg = configs[0].describe() if len(set(configs)) == 1 else [c.describe() for c in configs]
        head = (f"lane array mismatch: backend {res.backend}, discipline {res.discipline}, "
                f"lanes {geometry.lanes}, exact_cycles {geometry.exact_cycles}, config {cfg}, "
                f"shape {a.shape} x {b.shape}, seed {seed}")
        raise ArrayMismatch("\n".join([head, *problems, f"  operands saved to {path}",
                                       "  rerun with vcd=... (amaranth/cocotb) for a waveform"]))


def toggle_activity(parts) -> dict:
    """``run_array``'s activity entries from the measured register toggles of each simulated
    model: ``parts`` = [((tile_lo, tile_hi), start values (lanes, 3), toggles (lanes, 3))]."""
    tot = sum(np.asarray(t, np.int64) for _, _, t in parts)
    return {"toggles_a": tot[:, 0], "toggles_b": tot[:, 1], "toggles_acc": tot[:, 2],
            "toggle_parts": list(parts)}


# ---- backend: Amaranth simulator -------------------------------------------------------------

def cfg_word(code: int, lane: int, broadcast: bool, lanes: int) -> int:
    """The integer of :func:`canna.hw.array.config_write_layout` for one write."""
    from canna.hw.array import config_write_layout
    layout = config_write_layout(_fmt(), lanes)
    return ((int(code) << layout["config"].offset) | (int(lane) << layout["lane"].offset)
            | (int(broadcast) << layout["broadcast"].offset))


def _fmt():
    from .formats import BINARY32
    return BINARY32


def _pack_op(a, b, last, nop) -> int:
    return int(a) | (int(b) << 32) | (int(last) << 64) | (int(nop) << 65)


def _run_amaranth(op_a, op_b, nop, codes, *, lanes, exact_cycles, discipline, stages, vcd=None,
                  p_stall=0.0, rng=None, dut=None, activity=False):
    from amaranth.sim import Simulator

    from canna.hw.array import LaneArray

    from .cosim import run_simulator
    dut = dut or LaneArray(lanes=lanes, exact_cycles=exact_cycles, discipline=discipline,
                           stages=stages)
    tiles, _, k_dim = op_a.shape
    streams = []
    for l in range(lanes):
        words = []
        for t in range(tiles):
            for k in range(k_dim):
                words.append(_pack_op(op_a[t, l, k], op_b[t, l, k], k == k_dim - 1, nop[t, l]))
        streams.append(words)
    total = tiles * k_dim
    beats: list[list[int]] = []
    state = {}
    rng = rng or np.random.default_rng(0)
    limit = (total * exact_cycles + 8 * (stages + 4)) * (4 if p_stall else 1) + 64

    async def testbench(ctx):
        # configuration writes: broadcast when uniform, else one per lane
        if len(set(codes)) == 1:
            writes = [(0, 1, codes[0])]
        else:
            writes = [(l, 0, c) for l, c in enumerate(codes)]
        for lane, bc, code in writes:
            ctx.set(dut.cfg.valid, 1)
            ctx.set(dut.cfg.payload.as_value(), cfg_word(code, lane, bc, lanes))
            await ctx.tick()
        ctx.set(dut.cfg.valid, 0)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        probe = ToggleProbe(lanes) if activity else None

        def sample():
            probe.sample([[ctx.get(lane.held_a), ctx.get(lane.held_b), ctx.get(dut.acc[l])]
                          for l, lane in enumerate(dut.lane_units)])
        if probe:
            sample()
        pos = [0] * lanes
        cycle = 0
        started = None
        i_valid = [dut.i[l].valid for l in range(lanes)]
        i_ready = [dut.i[l].ready for l in range(lanes)]
        i_payload = [dut.i[l].payload.as_value() for l in range(lanes)]
        while len(beats) < tiles:
            if cycle > limit:
                raise RuntimeError(f"array stalled: {len(beats)} of {tiles} tiles after {cycle} cycles")
            for l in range(lanes):
                offer = pos[l] < total
                ctx.set(i_valid[l], offer)
                if offer:
                    ctx.set(i_payload[l], streams[l][pos[l]])
            ready = not (p_stall and rng.random() < p_stall)
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                state["wall"] = cycle + 1 - started
                v = ctx.get(dut.o.payload.as_value())
                beats.append([(v >> (32 * l)) & 0xFFFFFFFF for l in range(lanes)])
            for l in range(lanes):
                if pos[l] < total and ctx.get(i_ready[l]):
                    if started is None:
                        started = cycle
                    pos[l] += 1
            await ctx.tick()
            cycle += 1
            if probe:
                sample()
        state["cycles"] = ctx.get(dut.cycles)
        state["activity"] = (probe.start, probe.toggles) if probe else None
        state["counters"] = {name: [ctx.get(getattr(dut, name)[l]) for l in range(lanes)]
                             for name in COUNTERS}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    run_simulator(sim, vcd)
    out = np.array(beats, dtype=np.uint32).reshape(tiles, lanes)
    return out, state["cycles"], state["wall"], state["counters"], state["activity"]


# ---- backend: cocotb on Verilator ------------------------------------------------------------

def build_cocotb(*, lanes: int, exact_cycles: int, discipline: str, stages: int,
                 waves: bool = False) -> Path:
    """Build the cocotb/Verilator simulation of the array once (cached by content under
    ``build/array/cocotb/``); returns the build directory."""
    from cocotb_tools.runner import get_runner

    from .cosim import VERILATOR_BUILD_ARGS, _apply_env, build_root, verilator_env
    name = array_name(lanes, exact_cycles, discipline, stages) + ("_trace" if waves else "")
    root = build_root() / "array" / "cocotb"
    src = verilog_array(root / "rtl" / f"{name}.v", lanes=lanes, exact_cycles=exact_cycles,
                        discipline=discipline, stages=stages)
    bdir = root / name
    key = hashlib.sha256((src.read_text() + repr(VERILATOR_BUILD_ARGS) + str(waves)).encode()).hexdigest()
    stamp = bdir / ".canna_stamp"
    if stamp.exists() and stamp.read_text() == key:
        return bdir
    _apply_env(verilator_env())
    bdir.mkdir(parents=True, exist_ok=True)
    get_runner("verilator").build(
        sources=[src], hdl_toplevel="lane_array", build_dir=bdir, waves=waves,
        build_args=list(VERILATOR_BUILD_ARGS) + (["--trace"] if waves else []), always=True,
        log_file=root / f"{name}.build.log")
    stamp.write_text(key)
    return bdir


def run_cocotb(op_a, op_b, nop, codes, *, lanes, exact_cycles, discipline, stages, vcd=None,
               p_stall=0.0, seed=1, activity=False):
    import tempfile

    from cocotb_tools.runner import get_runner

    from .cosim import _apply_env, _tail, verilator_env
    bdir = build_cocotb(lanes=lanes, exact_cycles=exact_cycles, discipline=discipline,
                        stages=stages, waves=bool(vcd))
    tiles, _, k_dim = op_a.shape
    last = np.broadcast_to((np.arange(k_dim) == k_dim - 1)[None, None, :], op_a.shape)
    flags = last.astype(np.uint8) | (np.broadcast_to(nop[:, :, None], op_a.shape).astype(np.uint8) << 1)

    def per_lane(x):
        return np.ascontiguousarray(x.transpose(1, 0, 2).reshape(lanes, tiles * k_dim))
    if len(set(codes)) == 1:
        cfg = [cfg_word(codes[0], 0, True, lanes)]
    else:
        cfg = [cfg_word(c, l, False, lanes) for l, c in enumerate(codes)]
    _apply_env(verilator_env())
    with tempfile.TemporaryDirectory(prefix="canna_array_") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "in.npz", a=per_lane(op_a), b=per_lane(op_b), flags=per_lane(flags),
                 cfg=np.array(cfg, np.uint64), tiles=tiles)
        env = {"CANNA_ARRAY_IN": str(tmp / "in.npz"), "CANNA_ARRAY_OUT": str(tmp / "out.npz"),
               "CANNA_P_STALL": str(p_stall), "CANNA_SEED": str(seed),
               "CANNA_ACTIVITY": "1" if activity else "0"}
        log = tmp / "sim.log"
        try:
            get_runner("verilator").test(
                test_module="canna.sim.cocotb_array", hdl_toplevel="lane_array",
                hdl_toplevel_lang="verilog", testcase="matmul_file", build_dir=bdir, test_dir=tmp,
                extra_env=env, waves=bool(vcd), seed=seed, log_file=log,
                results_xml=str(tmp / "results.xml"))
        except SystemExit as e:
            raise RuntimeError(f"cocotb run failed ({e}); log:\n{_tail(log)}") from None
        if not (tmp / "out.npz").exists():
            raise RuntimeError(f"cocotb run produced no results; log:\n{_tail(log)}")
        if vcd:
            dump = tmp / "dump.vcd"
            shutil.copyfile(dump if dump.exists() else bdir / "dump.vcd", vcd)
        out = np.load(tmp / "out.npz")
        counters = {name: out[name] for name in COUNTERS}
        toggles = (out["toggle_start"], out["toggles"]) if activity else None
        return out["beats"], int(out["cycles"]), int(out["wall"]), counters, toggles


# ---- the driver --------------------------------------------------------------------------

def run_array(a, b, config: CFPUConfig | list = EXACT, *, backend: str = "verilator-fast",
              geometry: ArrayGeometry = ArrayGeometry(), discipline: str = "lockstep",
              stages: int = DEFAULT_STAGES, seed=None, vcd=None, p_stall: float = 0.0,
              check: bool = True, activity: bool = False) -> ArrayRunResult:
    """Run ``a @ b`` on the RTL lane array and check it against the golden model.

    ``config``: one :class:`CFPUConfig` broadcast to every lane, or a list of ``lanes``
    configurations (lane ``l`` uses ``config[l]``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if backend == "verilator-fast" and (p_stall or vcd):
        raise ValueError("p_stall and vcd need the amaranth or cocotb backend: the fast "
                         "co-simulation never applies back-pressure and writes no waveform")
    a, b = check_operands(a, b)
    lanes, k_cycles = geometry.lanes, geometry.exact_cycles
    configs = lane_configs(config, lanes)
    codes = _codes(configs)
    uniform = len(set(configs)) == 1
    a_bits, b_bits = a.view(np.uint32), b.view(np.uint32)
    m, n = a.shape[0], b.shape[1]
    tiles = -(-(m * n) // lanes)
    extra = {}
    t0 = time.perf_counter()
    if backend == "verilator-fast":
        fast = FastArray.get(lanes=lanes, exact_cycles=k_cycles, discipline=discipline,
                             stages=stages)
        t0 = time.perf_counter()
        out, cycles, wall, counters, extra = fast.run(a_bits, b_bits, codes, activity=activity)
        elapsed = time.perf_counter() - t0
        value = out.view(np.float32)
        latency = fast.latency
    else:
        op_a, op_b, nop = lane_ops(a_bits, b_bits, lanes)
        if backend == "amaranth":
            out, cycles, wall, counters, toggles = _run_amaranth(
                op_a, op_b, nop, codes, lanes=lanes, exact_cycles=k_cycles,
                discipline=discipline, stages=stages, vcd=vcd, p_stall=p_stall,
                rng=np.random.default_rng(seed), activity=activity)
        else:
            out, cycles, wall, counters, toggles = run_cocotb(
                op_a, op_b, nop, codes, lanes=lanes, exact_cycles=k_cycles,
                discipline=discipline, stages=stages, vcd=vcd, p_stall=p_stall, seed=seed or 1,
                activity=activity)
        elapsed = time.perf_counter() - t0
        if toggles is not None:   # (start values, toggles) of the one simulated array
            extra = toggle_activity([((0, tiles), *toggles)])
        value = out.reshape(-1)[:m * n].reshape(m, n).view(np.float32)
        latency = pipeline_latency(stages)
    counters = {k: np.asarray(v, dtype=np.int64) for k, v in counters.items()}
    t_check = time.perf_counter()
    model = golden_model(a, b, configs[0] if uniform else configs, geometry)
    res = ArrayRunResult(value=value.copy(), products=m * n * a.shape[1],
                         hits=int(counters["hits"].sum()), tiles=tiles, discipline=discipline,
                         cycles=int(cycles), wall_cycles=int(wall), counters=counters,
                         model=model, backend=backend, seconds=elapsed, activity=extra)
    if check:
        check_result(res, a, b, configs, geometry, seed=seed, check_cycles=not p_stall,
                     latency=None if p_stall else latency)
    res.activity["check_seconds"] = time.perf_counter() - t_check
    res.activity["golden"] = "c" if _golden_fast() else "numpy"
    return res


def _golden_fast() -> bool:
    from . import golden_fast
    return golden_fast.available()


def golden_model(a, b, config: CFPUConfig | list, geometry: ArrayGeometry) -> LaneArrayResult:
    """The golden lane model of a run (``config``: one for every lane or one per lane): the C
    twin (:mod:`canna.sim.golden_fast`, tested equal to the NumPy model) when it builds, else
    the NumPy model :func:`canna.sim.lanes.run_lane_array`."""
    if _golden_fast():
        from . import golden_fast
        return golden_fast.run_lane_array(a, b, config, geometry)
    return run_lane_array(a, b, config, geometry)


# ---- backend: fast Verilator co-simulation ---------------------------------------------------

#: Verilator flags of the fast build: no assertions, X values resolved at compile time.
#: ``-fno-dfg`` (with the lane's input ports public, :data:`VERILATOR_CONFIG`) lets Verilator emit
#: one copy of the lane's code shared by every lane instead of one specialised copy per lane
#: (16 x smaller hot code, half the build time).
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-fno-dfg",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "--output-split", "20000")
#: C++ flags: the model's hot files at -O2, its one-off initialisation files at -O0.
CXX_FAST = ("-O2", "-fno-strict-aliasing", "-w")
CXX_SLOW = ("-O0", "-fno-strict-aliasing", "-w")


def array_name(lanes: int, exact_cycles: int, discipline: str, stages: int) -> str:
    return f"lane_array_l{lanes}_k{exact_cycles}_{discipline}_s{stages}"


def verilog_array(path, *, lanes: int = 16, exact_cycles: int = 4, discipline: str = "lockstep",
                  stages: int = DEFAULT_STAGES, name: str = "lane_array",
                  shared_lane: bool = True) -> Path:
    """Write the array's Verilog (``amaranth.back.verilog``) to ``path``; rewrite only on change.

    ``shared_lane``: one ``canna_lane`` module instantiated ``lanes`` times (the simulator then
    shares one lane model among the lanes) instead of one flattened copy per lane.
    """
    import warnings

    from amaranth.back import verilog

    from canna.hw.array import LaneArray
    dut = LaneArray(lanes=lanes, exact_cycles=exact_cycles, discipline=discipline, stages=stages,
                    lane_module=LANE_MODULE if shared_lane else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the per-lane Lane objects are only port holders here
        text = verilog.convert(dut, name=name, emit_src=False)
        if shared_lane:
            text = verilog.convert(dut.lane_units[0], name=LANE_MODULE, emit_src=False) + text
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


LANE_MODULE = "canna_lane"
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
    toggle of ``clk`` and one ``eval()`` is one clock cycle (sim/array_driver.cpp). The design
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
    synchronous resets) - and folds it away when they are constants: 15% more cycles/s. The
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
    return "\n".join([
        f"// generated by canna.sim.array_cosim: ports of the {lanes}-lane array",
        "#pragma once", f'#include "{top_class}.h"', f'#include "{top_class}__Syms.h"',
        f"#define LANES {lanes}", f"#define TOP_CLASS {top_class}",
        f"#define BIND_LANES(top, payload, valid, ready) do {{ {binds} }} while (0)",
        f"#define BIND_PROBES(top, held_a, held_b) do {{ {probes} }} while (0)",
        f"#define N_COUNTERS {len(COUNTERS)}", f"#define COUNTER_PTRS(top) {ptrs}",
        *[f"#define {k} {v(n)}" for k, n in names.items()], ""])


def build_fast(*, lanes: int = 16, exact_cycles: int = 4, discipline: str = "lockstep",
               stages: int = DEFAULT_STAGES, quiet: bool = True) -> Path:
    """Verilate the array and compile it with ``sim/array_driver.cpp`` into a shared library
    (:func:`canna.sim.native.build_verilated`: cached by content under ``build/array/``,
    ``CANNA_BUILD_DIR``). Returns the library path."""
    from .cosim import build_root
    from .native import build_verilated
    name = array_name(lanes, exact_cycles, discipline, stages)
    root = build_root() / "array"
    plain = verilog_array(root / "rtl" / f"{name}.v", lanes=lanes, exact_cycles=exact_cycles,
                          discipline=discipline, stages=stages)
    return build_verilated(
        name, tie_top_inputs(dual_edge_verilog(plain.read_text()), FAST_TIED_INPUTS), top="lane_array",
        driver=Path(__file__).with_name("array_driver.cpp"), root=root,
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
            lib = build_fast(lanes=lanes, exact_cycles=exact_cycles, discipline=discipline,
                             stages=stages)
            cls._cache[key] = cls(lib, lanes, stages)
        return cls._cache[key]

    def configure(self, codes: list[int]) -> None:
        """Write the lanes' configurations (one broadcast when uniform); skipped when unchanged."""
        if self.codes == list(codes):
            return
        for h in self.handles:
            if len(set(codes)) == 1:
                self.lib.canna_array_config(h, cfg_word(codes[0], 0, True, self.lanes))
            else:
                for l, c in enumerate(codes):
                    self.lib.canna_array_config(h, cfg_word(c, l, False, self.lanes))
        self.codes = list(codes)

    def run(self, a_bits: np.ndarray, b_bits: np.ndarray, codes: list[int], *,
            activity: bool = False):
        """Run one matmul; returns (out bits (M, N), cycles, wall cycles, counters, extra)."""
        from .native import run_parts
        self.configure(codes)
        m, k_dim = a_bits.shape
        n = b_bits.shape[1]
        a_c = np.ascontiguousarray(a_bits, dtype=np.uint32)
        bt = np.ascontiguousarray(b_bits.T, dtype=np.uint32)
        out = np.zeros((m, n), np.uint32)
        tiles = -(-(m * n) // self.lanes)
        parts = min(len(self.handles), max(1, tiles))
        bounds = [tiles * i // parts for i in range(parts + 1)]
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
        extra = {"sim_cycles": int(stats[:, 2].sum()), "evals": int(stats[:, 3].sum()),
                 "models": parts}
        if activity:
            extra.update(toggle_activity([((bounds[i], bounds[i + 1]),
                                           act[i, :, 3:].astype(np.uint32),
                                           act[i, :, :3].astype(np.int64))
                                          for i in range(parts)]))
        total = counters.sum(axis=0)
        # one array running all tiles back to back: the fill/drain latency counts once
        return (out, int(cycles.sum()), int(cycles.sum()) + self.latency,
                {name: total[i].astype(np.int64) for i, name in enumerate(COUNTERS)}, extra)
