"""The report of ``canna reproduce``: the paper's tables and figures from a finished sweep, ours
beside the paper's published numbers, and a verdict on each of the paper's four claims.

Statistics: every figure of ours is over the plan's seeds: ``mean [min, max]``. The claims
compare two designs run on the same seeds (same split, initial weights, shuffles and dropout
masks), so they are judged on the per-seed differences: a difference *holds* only when it has
the same sign on every seed (its ``[min, max]`` excludes 0), and a claim counts as reproduced
only on differences that hold.

Conventions (the paper's, mapped to ours): quality loss = test error of the approximate run
minus that of the exact run of the same seed, in percentage points (training: both networks
evaluated exactly, ``test_accuracy``; inference: the searched configuration on the test set);
energy improvement = baseline energy / CFPU energy; speedup = baseline cycles / CFPU cycles;
both against ``plain`` (an exact FPU multiplying every pair: the paper's baseline) and against
``zero_skip`` (our array in exact mode), in the lockstep discipline (a GPU's SIMD) unless a
column says DC (decoupled lanes). Hit rate = hits / products; fast rate = (hits + products
with a zero/inf/NaN operand) / products (docs/savings.md).
"""
from __future__ import annotations

import math

import numpy as np

from .experiments import TARGETS, Plan

__all__ = ["Stat", "collect", "tables", "claims", "render_markdown", "paper_application", "paper_view"]


def paper_application(dataset: str) -> str:
    """The paper's application our ``dataset`` is set beside: its own where the paper has it,
    else MNIST (digits and Fashion-MNIST are image classification like MNIST; Fashion-MNIST has
    MNIST's very shapes)."""
    from . import paper
    return paper.DATASET_NAMES.get(dataset, "MNIST")


def paper_view(dataset: str) -> dict:
    """The paper's numbers in the shape the tables and plots use: ``I`` by level label,
    ``IV`` by target, ``5`` / ``6`` by (design, target), ``V`` the row, ``application``."""
    from . import paper
    app = paper_application(dataset)
    t1 = {("exact" if r["tuning_bits"] is None else f"{r['tuning_bits']}-bit"):
          {"quality_loss": r["quality_loss_pct"], "energy_improvement": 1 / r["norm_energy"],
           "speedup": 1 / r["norm_time"]} for r in paper.TABLE_I["rows"]}
    fig = {}
    for name, designs in (("5", ("uniform", "gta")), ("6", ("layer", "uniform"))):
        fig[name] = {(d, t): {"energy": paper.fig_value(f"fig{name}", d, "energy_improvement", t),
                              "speedup": paper.fig_value(f"fig{name}", d, "speedup", t)}
                     for d in designs for t in (0, 1, 2)}
    return {"application": app, "I": t1, "IV": paper.TABLE_IV["rows"][app], "5": fig["5"], "6": fig["6"],
            "V": paper.TABLE_V["rows"][app]}


class Stat:
    """Mean and range of one figure over the seeds (None values dropped); ``seeds`` (one per
    value) lets :meth:`minus` pair two figures seed by seed."""

    def __init__(self, values, seeds=None):
        values = list(values)
        seeds = list(range(len(values))) if seeds is None else list(seeds)
        ok = [(k, float(v)) for k, v in zip(seeds, values) if v is not None and math.isfinite(float(v))]
        self.by_seed = dict(ok)
        self.values = [v for _, v in ok]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self):
        return float(np.mean(self.values)) if self.values else None

    @property
    def lo(self):
        return min(self.values) if self.values else None

    @property
    def hi(self):
        return max(self.values) if self.values else None

    def minus(self, other: "Stat") -> "Stat":
        """The per-seed differences ``self - other`` over the seeds both have."""
        common = [k for k in self.by_seed if k in other.by_seed]
        return Stat([self.by_seed[k] - other.by_seed[k] for k in common], common)

    @property
    def positive(self) -> bool:
        """Every value above 0 (a difference that holds on every seed)."""
        return bool(self.n) and self.lo > 0

    @property
    def negative(self) -> bool:
        return bool(self.n) and self.hi < 0

    def fmt(self, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
        if not self.n:
            return "-"
        m, lo, hi = (scale * x for x in (self.mean, self.lo, self.hi))
        if self.n == 1 or lo == hi:
            return f"{m:.{digits}f}{suffix}"
        return f"{m:.{digits}f}{suffix} [{lo:.{digits}f}, {hi:.{digits}f}]"

    def as_dict(self) -> dict:
        return {"mean": self.mean, "min": self.lo, "max": self.hi, "n": self.n, "values": self.values}


def _hw(res: dict, kind: str, baseline: str, discipline: str = "lockstep"):
    """speedup or energy improvement (baseline / CFPU) of a results dict, None without it."""
    hw = res.get("hardware") or {}
    if kind == "speedup":
        return ((hw.get("speedup") or {}).get(baseline) or {}).get(discipline)
    ratio = ((hw.get("energy_ratio") or {}).get(baseline) or {}).get(discipline)
    return None if not ratio else 1.0 / ratio


def _hw_fields(res: dict) -> dict:
    """``speedup_<baseline>_<discipline>`` and ``energy_<baseline>_<discipline>`` of a results dict."""
    return {f"{k}_{b}_{s}": _hw(res, k, b, s) for k in ("speedup", "energy") for b in ("plain", "zero_skip")
            for s in ("lockstep", "decoupled")}


def _decomposition(res: dict, entry: str, kind: str, discipline: str = "lockstep"):
    d = ((res.get("hardware") or {}).get("decomposition") or {}).get(entry) or {}
    if kind == "speedup":
        return (d.get("speedup") or {}).get(discipline)
    r = (d.get("energy_ratio") or {}).get(discipline)
    return None if not r else 1.0 / r


def collect(plan: Plan, results: dict) -> dict:
    """Per configuration, the per-seed figures the tables need (raw lists, JSON-able)."""
    def train_res(mode, bits, seed):
        return results.get(plan.train[mode, bits, seed].key)

    rows = {}
    for (mode, bits, seed), job in plan.train.items():
        res, exact = results.get(job.key), train_res("exact", None, seed)
        if res is None or exact is None:
            continue
        row = rows.setdefault(f"{mode}:{bits}", {"mode": mode, "bits": bits, "seeds": []})
        row["seeds"].append({
            "seed": seed, "quality_loss_pp": 100 * (res["test_error"] - exact["test_error"]),
            "test_accuracy": res["test_accuracy"], "hit_rate": res["hit_rate"],
            "fast_rate": res.get("fast_rate"), "iterations": res["iterations_run"],
            **_hw_fields(res),
            **{f"{e}_{k}": _decomposition(res, e, k) for e in ("zero_skip_alone", "approximation_alone", "both")
               for k in ("speedup", "energy")},
            "trajectory": (res.get("gta") or {}).get("trajectory")})
    infer = {}
    for (qos, metric, seed), job in plan.infer.items():
        res = results.get(job.key)
        if res is None:
            continue
        entry = infer.setdefault(f"{qos}:{metric}", {"qos": qos, "metric": metric, "seeds": []})
        one = {"seed": seed, "sensitivity": res["sensitivity"]["normalized"],
               "sensitivity_raw": res["sensitivity"]["raw"]}
        for mode in ("layer", "uniform"):
            r = res[mode]
            one[mode] = {"bits": r["bits"], "quality_loss_pp": 100 * r["quality_loss"],
                         "hit_rate": r["hit_rate"], "fast_rate": r.get("fast_rate"),
                         **_hw_fields(r)}
        entry["seeds"].append(one)
    return {"dataset": plan.dataset, "profile": plan.profile.name, "seeds": list(plan.seeds),
            "levels": list(plan.levels), "train": rows, "infer": infer}


def _stat(row: dict | None, field: str, sub: str | None = None) -> Stat:
    if not row:
        return Stat([])
    return Stat([(s[sub] if sub else s).get(field) for s in row["seeds"]], [s["seed"] for s in row["seeds"]])


def _choose(train_rows: dict, mode: str, levels, target: float):
    """The most approximate level of ``mode`` whose mean quality loss stays within ``target``
    (the paper's Table IV search); None when no level does."""
    for t in sorted(levels):
        row = train_rows.get(f"{mode}:{t}")
        ql = _stat(row, "quality_loss_pp")
        if ql.n and ql.mean <= target + 1e-9:
            return t
    return None


def tables(data: dict) -> dict:
    """The tables as lists of rows (strings formatted, numbers kept in ``values``)."""
    rows, levels = data["train"], data["levels"]
    out = {}
    # Table I: uniform training
    t1 = []
    for bits in [None] + sorted((t for t in levels if t <= 4), reverse=True):
        row = rows.get("exact:None" if bits is None else f"uniform:{bits}")
        if row is None:
            continue
        t1.append({"bits": bits, **{f: _stat(row, f) for f in (
            "quality_loss_pp", "hit_rate", "fast_rate", "energy_plain_lockstep", "speedup_plain_lockstep",
            "energy_plain_decoupled", "speedup_plain_decoupled", "energy_zero_skip_lockstep",
            "speedup_zero_skip_lockstep", "energy_zero_skip_decoupled", "speedup_zero_skip_decoupled")}})
    out["I"] = t1
    # Table IV and Fig. 5: the settings meeting each quality-loss target
    t4 = []
    for target in TARGETS:
        entry = {"target": target}
        for mode in ("uniform", "gta"):
            t = _choose(rows, mode, levels, target)
            row = rows.get(f"{mode}:{t}") if t is not None else None
            entry[mode] = {"bits": t, **{f: _stat(row, f) for f in (
                "quality_loss_pp", "hit_rate", "fast_rate", "iterations", "energy_plain_lockstep", "speedup_plain_lockstep",
                "energy_zero_skip_lockstep", "speedup_zero_skip_lockstep", "energy_plain_decoupled",
                "speedup_plain_decoupled")}}
        t4.append(entry)
    out["IV"] = t4
    # Table II / V: sensitivities, all three metrics; configurations at QoS 0, ~1, ~3
    sens = {}
    for metric in ("kl", "loss", "error"):      # the sensitivity does not depend on the QoS
        entry = next((e for e in data["infer"].values() if e["metric"] == metric), None)
        if entry:
            layers = len(entry["seeds"][0]["sensitivity"])
            seeds = [s["seed"] for s in entry["seeds"]]
            sens[metric] = [Stat([s["sensitivity"][i] for s in entry["seeds"]], seeds) for i in range(layers)]
    out["V"] = sens
    configs = []
    for qos in (0.0, 1.0, 3.0):
        entry = data["infer"].get(f"{qos}:kl")
        if entry:
            configs.append({"qos": qos, "bits": [s["layer"]["bits"] for s in entry["seeds"]],
                            "quality_loss_pp": Stat([s["layer"]["quality_loss_pp"] for s in entry["seeds"]])})
    out["II"] = configs
    # Fig. 6: layer-based vs uniform inference over the QoS range
    f6 = []
    for key, entry in sorted(data["infer"].items(), key=lambda kv: kv[1]["qos"]):
        if entry["metric"] != "kl":
            continue
        seeds = [s["seed"] for s in entry["seeds"]]
        f6.append({"qos": entry["qos"], **{mode: {f: Stat([s[mode][f] for s in entry["seeds"]], seeds) for f in (
            "quality_loss_pp", "hit_rate", "fast_rate", "energy_plain_lockstep", "speedup_plain_lockstep",
            "energy_zero_skip_lockstep", "speedup_zero_skip_lockstep")} for mode in ("layer", "uniform")},
            "bits": {mode: [s[mode]["bits"] for s in entry["seeds"]] for mode in ("layer", "uniform")}})
    out["6"] = f6
    return out


def _verdict(holds: int, fails: int) -> str:
    return "reproduced" if holds and not fails else "partly reproduced" if holds else "not reproduced"


def claims(data: dict, tabs: dict) -> list[dict]:
    """The paper's four claims, each reproduced / partly reproduced / not reproduced (or not
    decided, where the run cannot test it), on per-seed differences (module docstring), with
    the numbers that decide it."""
    rows, verdicts = data["train"], []
    # (a) quality loss grows as tuning bits shrink (uniform training)
    ql = {t: _stat(rows.get(f"uniform:{t}"), "quality_loss_pp") for t in data["levels"]}
    ql = {t: s for t, s in ql.items() if s.n}
    if len(ql) >= 2:
        lo_t, hi_t = min(ql), max(ql)
        end = ql[lo_t].minus(ql[hi_t])
        steps = {t: ql[t - 1].minus(ql[t]) for t in sorted(ql)[1:] if t - 1 in ql}
        rises = [t - 1 for t, d in steps.items() if d.positive]      # one bit fewer, more loss
        falls = [t - 1 for t, d in steps.items() if d.negative]
        verdict = ("reproduced" if end.positive and not falls else
                   "partly reproduced" if end.positive or rises else "not reproduced")
        verdicts.append({"claim": "a", "verdict": verdict, "numbers": (
            f"uniform quality loss at t={lo_t}: {ql[lo_t].fmt()} pp, at t={hi_t}: {ql[hi_t].fmt()} pp, "
            f"per-seed difference {end.fmt()} pp; one bit fewer raises the loss on every seed at "
            f"t = {rises or 'none'}, lowers it on every seed at t = {falls or 'none'}")})
    # (b) GTA reaches a higher hit rate than uniform at equal quality
    parts, holds, fails = [], 0, 0
    for e in tabs["IV"]:
        u, g = e["uniform"], e["gta"]
        if u["bits"] is None or g["bits"] is None:
            parts.append(f"{e['target']:g} pp: {'uniform' if u['bits'] is None else 'GTA'} meets no level")
            continue
        d = g["hit_rate"].minus(u["hit_rate"])
        holds += d.positive
        fails += not d.positive
        parts.append(f"{e['target']:g} pp: GTA t={g['bits']} {g['hit_rate'].fmt(1, 100, '%')} vs uniform "
                     f"t={u['bits']} {u['hit_rate'].fmt(1, 100, '%')} (per seed {d.fmt(1, 100, ' pp')})")
    verdicts.append({"claim": "b", "verdict": _verdict(holds, fails), "numbers": "; ".join(parts)})
    # (c) first and last layers are the most sensitive
    sens = tabs["V"].get("kl")
    if sens and len(sens) >= 3:
        ends = {"first": sens[0], "last": sens[-1]}
        ok = [name for name, s in ends.items() if all(s.minus(m).positive for m in sens[1:-1])]
        verdicts.append({"claim": "c", "verdict": _verdict(len(ok), 2 - len(ok)), "numbers": (
            "sensitivity (KL, normalised) " + ", ".join(f"L{i + 1} {s.fmt()}" for i, s in enumerate(sens))
            + f"; above every middle layer on every seed: {', '.join(ok) or 'neither end'}")})
    else:
        verdicts.append({"claim": "c", "verdict": "not decided",
                         "numbers": f"{len(sens or [])} weight layers: no middle layer to compare with"})
    # (d) layer-based beats uniform at equal QoS (energy improvement against plain)
    parts, holds, fails = [], 0, 0
    for e in tabs["6"]:
        lb, un = e["layer"]["energy_plain_lockstep"], e["uniform"]["energy_plain_lockstep"]
        d = lb.minus(un)
        holds += d.positive
        fails += not d.positive
        parts.append(f"QoS {e['qos']:g} pp: layer-based {lb.fmt()}x vs uniform {un.fmt()}x (per seed {d.fmt()})")
    verdicts.append({"claim": "d", "verdict": _verdict(holds, fails),
                     "numbers": "energy improvement vs plain, lockstep: " + "; ".join(parts)})
    return verdicts


def render_markdown(data: dict) -> str:
    """The report's section of one dataset: its tables, the paper's numbers beside them
    (:func:`paper_view`), the claims' verdicts."""
    tabs = tables(data)
    view = paper_view(data["dataset"])
    app = view["application"]
    L = [f"## {data['dataset']} ({data['profile']} profile, seeds {data['seeds']}; set beside the "
         f"paper's {app})", ""]
    L += ["### Table I: uniform training", "",
          "| tuning bits | quality loss pp | hit rate | fast rate | energy impr. vs plain LS / DC | "
          "speedup vs plain LS / DC | energy impr. vs zero_skip LS / DC | speedup vs zero_skip LS / DC | "
          "paper (MNIST): loss pp / energy impr. / speedup |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in tabs["I"]:
        label = "exact" if r["bits"] is None else f"{r['bits']}-bit"
        pr = view["I"].get(label)
        pcell = "-" if pr is None else (f"{pr['quality_loss']:g} / {pr['energy_improvement']:.2f} / "
                                        f"{pr['speedup']:.2f}")
        L.append(f"| {'exact' if r['bits'] is None else r['bits']} | {r['quality_loss_pp'].fmt()} | "
                 f"{r['hit_rate'].fmt(1, 100, '%')} | {r['fast_rate'].fmt(1, 100, '%')} | "
                 f"{r['energy_plain_lockstep'].fmt()} / {r['energy_plain_decoupled'].fmt()} | "
                 f"{r['speedup_plain_lockstep'].fmt()} / {r['speedup_plain_decoupled'].fmt()} | "
                 f"{r['energy_zero_skip_lockstep'].fmt()} / {r['energy_zero_skip_decoupled'].fmt()} | "
                 f"{r['speedup_zero_skip_lockstep'].fmt()} / {r['speedup_zero_skip_decoupled'].fmt()} | {pcell} |")
    L += ["", "### Table IV and Fig. 5: the most approximate setting within each quality-loss target", "",
          "| target pp | uniform bits | its loss pp | hit / fast rate | energy / speedup vs plain | "
          "GTA apx-min | its loss pp | hit / fast rate | energy / speedup vs plain | GTA iterations "
          "(early stop at apx-min, Algorithm 1) |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for e in tabs["IV"]:
        cells = []
        for mode in ("uniform", "gta"):
            m = e[mode]
            if m["bits"] is None:
                cells += ["none", "-", "-", "-"]
                continue
            cells += [str(m["bits"]), m["quality_loss_pp"].fmt(),
                      f"{m['hit_rate'].fmt(1, 100, '%')} / {m['fast_rate'].fmt(1, 100, '%')}",
                      f"{m['energy_plain_lockstep'].fmt()} / {m['speedup_plain_lockstep'].fmt()}"]
        cells.append(e["gta"]["iterations"].fmt(0) if e["gta"]["bits"] is not None else "-")
        L.append(f"| {e['target']:g} | " + " | ".join(cells) + " |")
    L += ["", f"The paper ({app}; Table IV, and Fig. 5 as its text states it, energy / speedup against "
              "an exact GPGPU):", "",
          "| target pp | uniform bits | hit rate | energy / speedup | GTA apx-min | hit rate | energy / speedup |",
          "|---|---|---|---|---|---|---|"]
    for target, cell in view["IV"].items():
        f5 = {d: view["5"].get((d, target), {}) for d in ("uniform", "gta")}
        fmt = {d: "-" if f5[d].get("energy") is None else f"{f5[d]['energy']:g} / {f5[d]['speedup']:g}"
               for d in f5}
        L.append(f"| {target:g} | {cell['uniform_tuning_bits']} | {cell['uniform_hit_rate_pct']:g}% | "
                 f"{fmt['uniform']} | {cell['gta_apx_min']} | {cell['gta_hit_rate_pct']:g}% | {fmt['gta']} |")
    L += ["", "### Tables II and V: layer sensitivity (one layer at 0 tuning bits, the others exact; "
          "validation data; normalised to max 1)", "",
          "| metric | " + " | ".join(f"layer {i + 1}" for i in range(len(next(iter(tabs["V"].values()), [])))) + " |",
          "|---|" + "---|" * len(next(iter(tabs["V"].values()), []))]
    for metric, stats in tabs["V"].items():
        L.append(f"| {metric} | " + " | ".join(s.fmt() for s in stats) + " |")
    L += ["", f"The paper's Table V ({app}): " + ", ".join(f"layer {i + 1} {v:g}" for i, v in enumerate(view["V"]))
          + ". Its four columns are the four neuron layers of its Table III topologies, which have three "
          "weight matrices, as ours do (inputs-500-500-classes); the paper does not say how a column maps "
          "to a matmul. We compare ends with ends: our first and last weight layers with its first and last "
          "columns, our middle layer with its two middle columns."]
    L += ["", "Layer-based configurations found (per seed; KL sensitivity, spread 3):", ""]
    for c in tabs["II"]:
        L.append(f"* QoS {c['qos']:g} pp: bits {c['bits']}, test quality loss {c['quality_loss_pp'].fmt()} pp")
    L += ["", "### Fig. 6: layer-based vs uniform inference", "",
          "| QoS pp | layer-based bits | loss pp | hit rate | energy / speedup vs plain | uniform bits | "
          "loss pp | hit rate | energy / speedup vs plain |", "|---|---|---|---|---|---|---|---|---|"]
    for e in tabs["6"]:
        cells = []
        for mode in ("layer", "uniform"):
            m = e[mode]
            cells += [str(e["bits"][mode]), m["quality_loss_pp"].fmt(), m["hit_rate"].fmt(1, 100, "%"),
                      f"{m['energy_plain_lockstep'].fmt()} / {m['speedup_plain_lockstep'].fmt()}"]
        L.append(f"| {e['qos']:g} | " + " | ".join(cells) + " |")
    f6 = [f"{t:g} pp: layer-based {view['6'][('layer', t)]['energy']}x / {view['6'][('layer', t)]['speedup']}x, "
          f"uniform {view['6'][('uniform', t)]['energy'] or '-'} / {view['6'][('uniform', t)]['speedup'] or '-'}"
          for t in (0, 1, 2)]
    L += ["", "The paper (Fig. 6 as its text states it, energy improvement / speedup against an exact GPGPU): "
          + "; ".join(f6) + "."]
    L += ["", "### The paper's claims", ""]
    for c in claims(data, tabs):
        L.append(f"* ({c['claim']}) **{c['verdict']}**: {c['numbers']}")
    return "\n".join(L) + "\n"
