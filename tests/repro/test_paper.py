"""canna.repro.paper: the paper's published numbers. Structure the suite relies on, a source on
every entry, spot checks against literals copied from the paper, and the internal consistency
the paper allows (hit rates in 0..100, tables agreeing with one another and with their printed
cells). Nothing here reads a file outside the repository."""
from __future__ import annotations

import math
import re

import pytest

from canna.nn.datasets import DATASETS
from canna.nn.train import PRESETS
from canna.repro import paper

APPS = ("MNIST", "ISOLET", "HYPER", "HAR")
SOURCE_RE = re.compile(r"\b(Table (I|II|III|IV|V)|Fig\. [56]|Section [IVX]+(-[A-D]\d?)?|Abstract)\b")


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _bits(cell: str) -> int:
    m = re.fullmatch(r"(\d+)-bits?", cell)
    assert m, cell
    return int(m.group(1))


def _pct(cell: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%", cell)
    assert m, cell
    return float(m.group(1))


def _walk(obj, path="paper"):
    """Every dict inside obj, with its path."""
    if isinstance(obj, dict):
        yield path, obj
        for k, v in obj.items():
            yield from _walk(v, f"{path}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")


def test_table_lookup_names():
    names = {"Table I": paper.TABLE_I, "table2": paper.TABLE_II, "III": paper.TABLE_III, "4": paper.TABLE_IV,
             "Table V": paper.TABLE_V, "Fig. 5": paper.FIG5, "figure 6": paper.FIG6, "headline": paper.HEADLINE,
             "hyperparameters": paper.HYPERPARAMETERS_INFO}
    for name, expected in names.items():
        assert paper.table(name) is expected, name
    with pytest.raises(KeyError):
        paper.table("Table VI")
    print(f"table(): {len(names)} spellings resolved, 1 unknown name rejected")


def test_dataset_names():
    assert paper.DATASET_NAMES == {"mnist": "MNIST", "isolet": "ISOLET", "hyper": "HYPER", "har": "HAR"}
    assert set(paper.DATASET_NAMES) <= set(DATASETS)
    assert set(paper.DATASET_NAMES.values()) == set(APPS)
    for ours, theirs in paper.DATASET_NAMES.items():
        assert paper.paper_name(ours) == theirs
        assert paper.table4_cell(ours, 0) is paper.TABLE_IV["rows"][theirs][0]
    print(f"DATASET_NAMES: {len(paper.DATASET_NAMES)} of our datasets, all in DATASETS, onto the paper's 4")


def test_every_entry_names_its_source():
    tables = 0
    entries = 0
    for name, t in paper.TABLES.items():
        assert isinstance(t.get("source"), str) and SOURCE_RE.search(t["source"]), (name, t.get("source"))
        tables += 1
        for path, d in _walk(t, name):
            if "value" in d or "claim" in d:
                assert isinstance(d.get("source"), str) and SOURCE_RE.search(d["source"]), path
                entries += 1
    for key in ("text", "entries"):
        for name, t in paper.TABLES.items():
            for e in t.get(key, ()):
                assert "source" in e, (name, key, e)
    print(f"source: {tables} tables and {entries} text entries each name where the paper prints them")


def test_only_plain_data():
    allowed = (dict, list, tuple, str, int, float, type(None))
    count = 0

    def check(obj, path):
        nonlocal count
        assert isinstance(obj, allowed), (path, type(obj))
        count += 1
        if isinstance(obj, dict):
            for k, v in obj.items():
                assert isinstance(k, (str, int)), (path, k)
                check(v, f"{path}[{k!r}]")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                check(v, f"{path}[{i}]")

    for name, t in paper.TABLES.items():
        check(t, name)
    print(f"plain data: {count} values, all dict/list/tuple/str/int/float/None")


def test_table_i_structure_and_values():
    t = paper.TABLE_I
    rows = t["rows"]
    assert rows[0]["level"] == "Exact" and rows[0]["tuning_bits"] is None
    assert rows[0]["norm_energy"] == 1 and rows[0]["norm_time"] == 1 and rows[0]["quality_loss_pct"] == 0
    bits = [r["tuning_bits"] for r in rows[1:]]
    assert bits == sorted(bits, reverse=True) == [4, 3, 2, 1, 0]
    for r in rows:
        assert set(t["columns"]) <= set(r)
        for c in ("quality_loss_pct", "norm_energy", "norm_time"):
            assert _num(r[c]), (r, c)
        assert 0 < r["norm_energy"] <= 1 and 0 < r["norm_time"] <= 1
    # Claim (a): the loss never shrinks as the bits do; energy and time fall.
    loss = [r["quality_loss_pct"] for r in rows]
    assert loss == sorted(loss)
    assert [r["norm_energy"] for r in rows] == sorted((r["norm_energy"] for r in rows), reverse=True)
    assert [r["norm_time"] for r in rows] == sorted((r["norm_time"] for r in rows), reverse=True)
    # The printed cells give the same numbers.
    header, ql, en, ex = t["printed"]
    assert list(header[1:]) == [r["level"] for r in rows]
    assert [_pct(c) for c in ql[1:]] == loss
    assert [float(c) for c in en[1:]] == [r["norm_energy"] for r in rows]
    assert [float(c) for c in ex[1:]] == [r["norm_time"] for r in rows]
    # Spot checks, literals from the paper.
    assert (rows[1]["norm_energy"], rows[1]["norm_time"]) == (0.31, 0.45)
    assert (rows[5]["quality_loss_pct"], rows[5]["norm_energy"], rows[5]["norm_time"]) == (3.2, 0.12, 0.19)
    # The text's 4-bit figures agree with the table to its printed precision.
    text = {(e["tuning_bits"], e["quantity"]): e["value"] for e in t["text"]}
    assert round(1 / rows[1]["norm_time"], 1) == text[(4, "speedup")] == 2.2
    assert round(1 / rows[1]["norm_energy"], 1) == text[(4, "energy_improvement")] == 3.2
    assert text[(0, "quality_loss_pct")] == rows[5]["quality_loss_pct"]
    assert text[(0, "speedup")] == 5.1 and text[(0, "energy_improvement")] == 7.9  # not 1/0.19, 1/0.12: noted
    assert any("5.26x" in n for n in t["notes"])
    print(f"Table I: {len(rows)} levels (Exact, 4..0 bits) x 3 numbers, printed cells agree, "
          f"monotone; {len(t['text'])} text numbers, the 0-bit mismatch noted")


def test_table_ii_structure_and_values():
    t = paper.TABLE_II
    assert len(t["layers"]) == len(t["sensitivity"]) == 4
    assert t["sensitivity"] == (1.0, 0.52, 0.34, 0.89)
    assert t["sensitivity"] == paper.TABLE_V["rows"]["MNIST"]
    assert t["sensitivity_delta_e_test_pct"] is None
    for c in t["configs"]:
        m = c["m"]
        assert c["tuning_bits"] == (m, m - 1, m - 2, m), c
        assert _num(c["delta_e_test_pct"])
    assert [c["m"] for c in t["configs"]] == [6, 3, 2]
    assert [c["delta_e_test_pct"] for c in t["configs"]] == [0.0, 0.9, 3.2]
    for row, c in zip(t["printed"][2:], t["configs"], strict=True):
        assert row[0] == c["name"]
        assert tuple(_bits(x) for x in row[1:5]) == c["tuning_bits"]
        assert _pct(row[5]) == c["delta_e_test_pct"]
    text = {e["quantity"]: e["value"] for e in t["text"] if e["m"] == 6}
    assert text == {"hit_rate_pct": 51.0, "energy_improvement": 4.4, "speedup": 2.9, "quality_loss_pct": 0.0,
                    "energy_improvement_over_uniform": 1.6, "speedup_over_uniform": 1.8}
    assert t["configs"][0]["delta_e_test_pct"] == text["quality_loss_pct"]
    # "up to 3x lower": the least sensitive hidden layer against the most sensitive layer.
    assert round(max(t["sensitivity"]) / min(t["sensitivity"][1:3])) == 3
    print(f"Table II: 4 sensitivities (= Table V MNIST), {len(t['configs'])} configs on the m, m-1, m-2, m "
          f"rule, printed cells agree, {len(t['text'])} text numbers (m = 6: 51%, 4.4x, 2.9x, 1.6x, 1.8x)")


def test_table_iii_structure_and_values():
    rows = paper.TABLE_III["rows"]
    assert tuple(rows) == APPS
    for app, r in rows.items():
        assert len(r["topology"]) == 4 and r["topology"][1:3] == (500, 500), app
        assert 0 <= r["e_train_pct"] < r["e_test_pct"] < 100, app
    assert [rows[a]["topology"][0] for a in APPS] == [784, 617, 200, 561]
    assert [rows[a]["topology"][-1] for a in APPS] == [10, 26, 9, 12]
    assert [(rows[a]["e_train_pct"], rows[a]["e_test_pct"]) for a in APPS] == [(0.3, 2.4), (0.7, 4.4),
                                                                              (0.9, 6.6), (0.2, 3.4)]
    for printed in paper.TABLE_III["printed"][1:]:
        r = rows[printed[0]]
        assert tuple(int(x) for x in printed[1].split(",")) == r["topology"]
        assert (float(printed[2]), float(printed[3])) == (r["e_train_pct"], r["e_test_pct"])
    assert paper.TABLE_I["topology"] == rows["MNIST"]["topology"]
    print("Table III: 4 applications x (topology, e_train, e_test), printed cells agree, "
          "MNIST topology = Table I's")


def test_table_iv_structure_and_values():
    t = paper.TABLE_IV
    assert paper.TARGETS == t["targets_pct"] == (0, 1, 2, 4)
    assert list(paper.TARGETS) == sorted(paper.TARGETS)
    assert tuple(t["rows"]) == APPS == t["printed_applications"]
    cells = 0
    for app in APPS:
        row = t["rows"][app]
        assert tuple(row) == paper.TARGETS, app
        for q in paper.TARGETS:
            cell = row[q]
            assert set(cell) == set(t["fields"]), (app, q)
            for k, v in cell.items():
                assert v is None or _num(v), (app, q, k)
                if v is not None and k.endswith("_pct"):
                    assert 0 <= v <= 100, (app, q, k)
                if v is not None and not k.endswith("_pct"):
                    assert v == int(v) and 0 <= v <= 22, (app, q, k)
            cells += 1
        # A looser target never needs more bits nor gives a lower hit rate.
        for k, sign in (("gta_apx_min", -1), ("uniform_tuning_bits", -1),
                        ("gta_hit_rate_pct", 1), ("uniform_hit_rate_pct", 1)):
            seq = [row[q][k] for q in paper.TARGETS]
            assert seq == sorted(seq, reverse=sign < 0), (app, k, seq)
        # Claim (b): GTA's hit rate at least uniform's at every target.
        assert all(row[q]["gta_hit_rate_pct"] >= row[q]["uniform_hit_rate_pct"] for q in paper.TARGETS), app
    # The printed cells give the same numbers.
    keys = {"GTA Apxmin": ("gta_apx_min", _bits), "GTA Approx Hit Rate": ("gta_hit_rate_pct", _pct),
            "Uniform Tuning bits": ("uniform_tuning_bits", _bits),
            "Uniform Approx Hit Rate": ("uniform_hit_rate_pct", _pct)}
    assert set(t["printed"]) == set(keys)
    for label, cells_printed in t["printed"].items():
        key, parse = keys[label]
        assert len(cells_printed) == 16
        typed = [t["rows"][a][q][key] for a in APPS for q in paper.TARGETS]
        assert [parse(c) for c in cells_printed] == typed, label
    # Spot checks, literals from the paper.
    assert paper.table4_cell("mnist", 0) == {"gta_apx_min": 5, "gta_hit_rate_pct": 56,
                                             "uniform_tuning_bits": 4, "uniform_hit_rate_pct": 33}
    assert paper.table4_cell("HYPER", 0)["uniform_hit_rate_pct"] == 6
    assert paper.table4_cell("har", 4) == {"gta_apx_min": 2, "gta_hit_rate_pct": 86,
                                           "uniform_tuning_bits": 1, "uniform_hit_rate_pct": 66}
    assert paper.table4_cell("isolet", 2)["gta_hit_rate_pct"] == 79
    # MNIST uniform: the fewest Table I bits whose loss is within each target.
    rows_i = [r for r in paper.TABLE_I["rows"] if r["tuning_bits"] is not None]
    for q in paper.TARGETS:
        fewest = min(r["tuning_bits"] for r in rows_i if r["quality_loss_pct"] <= q)
        assert t["rows"]["MNIST"][q]["uniform_tuning_bits"] == fewest, q
    # The text's MNIST 0% figures differ from the table's; both kept.
    text = {e["quantity"]: e["value"] for e in t["text"]}
    assert text["uniform_tuning_bits"] == t["rows"]["MNIST"][0]["uniform_tuning_bits"]
    assert text["gta_tuning_bits_range"] == (0, t["rows"]["MNIST"][0]["gta_apx_min"])
    assert (text["uniform_hit_rate_pct"], text["gta_hit_rate_pct"]) == (36.0, 70.0)
    assert any("36%" in n and "70%" in n for n in t["notes"])
    print(f"Table IV: {len(APPS)} applications x {len(paper.TARGETS)} targets = {cells} cells x 4 numbers, "
          f"printed cells agree, monotone in the target, GTA hit rate >= uniform everywhere, MNIST uniform "
          f"bits = Table I's, text-vs-table 36%/70% vs 33%/56% noted")


def test_table_v_structure_and_values():
    t = paper.TABLE_V
    assert tuple(t["rows"]) == APPS
    for app, sens in t["rows"].items():
        assert len(sens) == t["n_columns"][app] == len(t["layers"]) == 4, app
        assert t["weight_matrices_per_table_iii"][app] == len(paper.TABLE_III["rows"][app]["topology"]) - 1
        assert all(_num(s) and 0 < s <= 1 for s in sens), app
        assert max(sens) == 1.0, app
        # Claim (c): layers 1 and 4 are the two most sensitive.
        assert sorted(range(4), key=lambda i: sens[i])[-2:] in ([0, 3], [3, 0]), app
    for printed in t["printed"][1:]:
        assert tuple(float(x) for x in printed[1:]) == t["rows"][printed[0]]
    assert t["rows"]["ISOLET"] == (1.0, 0.57, 0.65, 0.83)
    assert t["rows"]["HYPER"][3] == 1.0 and t["rows"]["HAR"][1] == 0.48
    print("Table V: 4 applications x 4 columns (vs 3 weight matrices in Table III, noted), max 1 per row, "
          "layers 1 and 4 the most sensitive in every row, printed cells agree")


def _fig_entries(fig):
    es = fig["entries"]
    keys = [(e["design"], e["metric"], e["target_pct"]) for e in es]
    assert len(keys) == len(set(keys)), "duplicate entries"
    for e in es:
        assert e["design"] in fig["designs"] and e["metric"] in fig["metrics"], e
        assert e["target_pct"] in paper.TARGETS, e
        assert e["value"] is None or (_num(e["value"]) and e["value"] > 1), e
        assert (e["value"] is None) == (e["printed"] is None), e
        if e["value"] is None:
            assert e.get("note"), e
    return {k: e["value"] for k, e in zip(keys, es)}


def test_fig5_text_numbers():
    v = _fig_entries(paper.FIG5)
    expected = {("gta", "energy_improvement", 0): 3.86, ("uniform", "energy_improvement", 0): 2.26,
                ("gta", "speedup", 0): 2.62, ("uniform", "speedup", 0): 1.62,
                ("gta", "energy_improvement", 1): 4.84, ("gta", "energy_improvement", 2): 6.11,
                ("uniform", "energy_improvement", 1): 2.99, ("uniform", "energy_improvement", 2): 4.04,
                ("gta", "speedup", 1): 3.23, ("gta", "speedup", 2): 4.01,
                ("uniform", "speedup", 1): 2.07, ("uniform", "speedup", 2): 2.37}
    assert v == expected
    assert paper.fig_value("fig5", "gta", "speedup", 2) == 4.01
    assert paper.fig_value("fig5", "gta", "speedup", 4) is None
    # The typo: two numbers printed as percentages, read as factors, with a note each.
    typo = [e for e in paper.FIG5["entries"] if "%" in (e["printed"] or "")]
    assert [e["value"] for e in typo] == [2.99, 4.04] and all("read as" in e["note"] for e in typo)
    assert any("2.99% and 4.04%" in n for n in paper.FIG5["notes"])
    # Claims (b) in Fig. 5's text: GTA above uniform, and both grow with the target.
    for metric in paper.FIG5["metrics"]:
        for q in (0, 1, 2):
            assert v[("gta", metric, q)] > v[("uniform", metric, q)]
        for design in paper.FIG5["designs"]:
            assert v[(design, metric, 0)] < v[(design, metric, 1)] < v[(design, metric, 2)]
    print(f"Fig. 5: {len(v)} numbers from Section V-B text (GTA/uniform x energy/speedup x 0/1/2 %), "
          "the '2.99% and 4.04%' typo read as factors with notes, GTA > uniform")


def test_fig6_text_numbers():
    v = _fig_entries(paper.FIG6)
    stated = {k: x for k, x in v.items() if x is not None}
    assert stated == {("layer", "energy_improvement", 0): 3.27, ("uniform", "energy_improvement", 0): 1.86,
                      ("layer", "speedup", 0): 2.25, ("uniform", "speedup", 0): 1.38,
                      ("layer", "energy_improvement", 1): 4.05, ("layer", "speedup", 1): 2.73,
                      ("layer", "energy_improvement", 2): 5.25, ("layer", "speedup", 2): 3.48}
    unstated = sorted(k for k, x in v.items() if x is None)
    assert unstated == sorted(("uniform", m, q) for m in paper.FIG6["metrics"] for q in (1, 2))
    # Claim (d) at 0%: layer-based above uniform.
    for metric in paper.FIG6["metrics"]:
        assert v[("layer", metric, 0)] > v[("uniform", metric, 0)]
        assert v[("layer", metric, 0)] < v[("layer", metric, 1)] < v[("layer", metric, 2)]
    print(f"Fig. 6: {len(stated)} numbers from Section V-C text, {len(unstated)} uniform 1%/2% numbers "
          "not stated (None, noted), layer-based > uniform at 0%")


def test_headline_numbers():
    h = {(e["phase"], e["metric"], e["target_pct"]): e["value"] for e in paper.HEADLINE["entries"]}
    assert h[("training", "energy_improvement", 0)] == 4.84 and h[("training", "energy_improvement", 2)] == 7.13
    assert h[("training", "speedup", 0)] == 3.22 and h[("training", "speedup", 2)] == 4.64
    assert h[("inference", "energy_improvement", 0)] == 4.42 and h[("inference", "energy_improvement", 2)] == 6.06
    assert h[("inference", "speedup", 0)] == 2.96 and h[("inference", "speedup", 2)] == 3.98
    assert h[(None, "area_overhead_pct_max", None)] == 2.6
    # "up to" is at least what Section V-B / V-C state at the same target.
    for fig, phase, design in ((paper.FIG5, "training", "gta"), (paper.FIG6, "inference", "layer")):
        for metric in ("energy_improvement", "speedup"):
            for q in (0, 2):
                assert h[(phase, metric, q)] >= paper.fig_value(
                    "fig5" if fig is paper.FIG5 else "fig6", design, metric, q), (phase, metric, q)
    print(f"headline: {len(h)} numbers (abstract, Section I, V-D, VI), each >= the section's figure at its target")


def test_claims():
    assert set(paper.CLAIMS) == {"a", "b", "c", "d"}
    for k, c in paper.CLAIMS.items():
        assert c["claim"] and c["quote"] and SOURCE_RE.search(c["source"]), k
    assert "Table I" in paper.CLAIMS["a"]["source"]
    assert "Table IV" in paper.CLAIMS["b"]["source"]
    assert "Table V" in paper.CLAIMS["c"]["source"]
    assert "Section V-C" in paper.CLAIMS["d"]["source"]
    print("claims: (a)-(d), each with a quote and where the paper states it")


def test_hyperparameters():
    hp = paper.HYPERPARAMETERS
    assert paper.table("hyperparameters")["source"] == "Section V-A text"
    assert (hp["lr"], hp["momentum"], hp["batch_size"], hp["dropout"], hp["relu_clamp"]) == (0.001, 0.1, 10, 0.5, 6.0)
    assert hp["activation"] == "ReLU" and hp["output"] == "softmax" and hp["epochs"] is None
    # Our `--preset paper` is these numbers.
    assert {k: hp[k] for k in PRESETS["paper"]} == PRESETS["paper"]
    assert paper.GTA_PARAMETERS["slope_window_iterations"] == 50 and paper.GTA_PARAMETERS["start_tuning_bits"] == 0
    print(f"hyper-parameters: {len(hp)} entries of Section V-A (lr 0.001, momentum 0.1, batch 10, dropout 0.5, "
          "ReLU clamped at 6, softmax), = canna.nn.train.PRESETS['paper']; GTA window 50")
