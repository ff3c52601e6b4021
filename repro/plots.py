"""The report's figures (matplotlib, no display): ours with their spread over seeds, the
paper's published points beside them where it gives numbers. Every file is written atomically."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from canna.files import atomic_write_bytes

__all__ = ["write_plots"]


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _err(stats):
    """Means and asymmetric error bars (to min and max) of a list of Stats."""
    m = np.array([s.mean if s.n else np.nan for s in stats])
    lo = np.array([s.mean - s.lo if s.n else 0 for s in stats])
    hi = np.array([s.hi - s.mean if s.n else 0 for s in stats])
    return m, np.vstack([lo, hi])


def _finish(ax, xlabel: str, ylabel: str, *, legend: int = 8, grid: str = "both") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis=grid)
    ax.legend(fontsize=legend)


def _paper(ax, x, values, style: str, label) -> None:
    """The paper's points where it states them (None: not stated)."""
    if any(v is not None for v in values):
        ax.plot(x, [np.nan if v is None else v for v in values], style, markersize=9, label=label)


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_table1(dataset: str, rows, paper_rows, path: Path) -> None:
    """Quality loss, energy improvement and speedup (vs plain, lockstep) of uniform training."""
    plt = _figure()
    labels = ["exact" if r["bits"] is None else f"{r['bits']}-bit" for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, field, name, paper_key in (
            (axes[0], "quality_loss_pp", "quality loss (pp)", "quality_loss"),
            (axes[1], "energy_plain_lockstep", "energy improvement vs plain (x)", "energy_improvement"),
            (axes[2], "speedup_plain_lockstep", "speedup vs plain (x)", "speedup")):
        m, e = _err([r[field] for r in rows])
        ax.errorbar(x, m, yerr=e, fmt="o-", capsize=3, label=f"ours ({dataset})")
        _paper(ax, x, [(paper_rows or {}).get(lab, {}).get(paper_key) for lab in labels], "s--",
               "paper (MNIST)")
        ax.set_xticks(x, labels)
        _finish(ax, "uniform training, tuning bits", name)
    fig.suptitle(f"Table I: uniform approximate training ({dataset}; ours: 16-lane array, lockstep)")
    _save(fig, path)


def plot_fig5(dataset: str, table4, paper_points, path: Path) -> None:
    """Energy improvement and speedup (vs plain, lockstep) of uniform vs GTA per quality target."""
    plt = _figure()
    targets = [e["target"] for e in table4 if e["target"] <= 2]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    width = 0.35
    for ax, field, name, pkey in ((axes[0], "energy_plain_lockstep", "energy improvement vs plain (x)", "energy"),
                                  (axes[1], "speedup_plain_lockstep", "speedup vs plain (x)", "speedup")):
        for i, mode in enumerate(("uniform", "gta")):
            stats = [e[mode][field] for e in table4 if e["target"] <= 2]
            m, err = _err(stats)
            ax.bar(np.arange(len(targets)) + (i - 0.5) * width, m, width, yerr=err, capsize=3,
                   label=f"ours {mode.upper() if mode == 'gta' else mode}")
            _paper(ax, np.arange(len(targets)) + (i - 0.5) * width,
                   [(paper_points or {}).get((mode, t), {}).get(pkey) for t in targets],
                   "k*" if mode == "gta" else "kv", f"paper {mode.upper() if mode == 'gta' else mode}")
        ax.set_xticks(np.arange(len(targets)), [f"{t:g} pp" for t in targets])
        _finish(ax, "quality-loss target (training)", name, legend=7, grid="y")
    fig.suptitle(f"Fig. 5: uniform vs GTA training ({dataset})")
    _save(fig, path)


def plot_fig3(dataset: str, iterations: dict, title: str, path: Path) -> None:
    """Training batch error (running mean) with the GTA level on a second axis."""
    plt = _figure()
    err = np.asarray(iterations["batch_error"], dtype=float)
    level = np.asarray(iterations["level"])
    k = max(1, min(50, len(err) // 20))
    smooth = np.convolve(err, np.ones(k) / k, mode="valid")
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(np.arange(len(err)), 100 * err, color="0.8", lw=0.6, label="batch error")
    ax.plot(np.arange(k - 1, len(err)), 100 * smooth, color="C0", label=f"running mean ({k} iterations)")
    ax.set_xlabel("iteration (mini-batch SGD step)")
    ax.set_ylabel("training error (%)")
    ax2 = ax.twinx()
    ax2.step(np.arange(len(level)), np.where(level < 0, np.nan, level), where="post", color="C3",
             label="GTA level (tuning bits)")
    ax2.set_ylabel("tuning bits", color="C3")
    from matplotlib.ticker import MaxNLocator
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"Fig. 3: {title} ({dataset})")
    _save(fig, path)


def plot_fig6(dataset: str, fig6, paper_points, path: Path) -> None:
    """Energy improvement, speedup (vs plain, lockstep) and hit rate of layer-based vs uniform
    inference over the QoS range."""
    plt = _figure()
    qos = [e["qos"] for e in fig6]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, field, name, scale, pkey in (
            (axes[0], "energy_plain_lockstep", "energy improvement vs plain (x)", 1, "energy"),
            (axes[1], "speedup_plain_lockstep", "speedup vs plain (x)", 1, "speedup"),
            (axes[2], "hit_rate", "hit rate (%)", 100, None)):
        for mode, style in (("layer", "o-"), ("uniform", "s--")):
            m, e = _err([x[mode][field] for x in fig6])
            ax.errorbar(qos, scale * m, yerr=scale * e, fmt=style, capsize=3, label=f"ours {mode}")
            if pkey:
                _paper(ax, qos, [(paper_points or {}).get((mode, q), {}).get(pkey) for q in qos],
                       "k*" if mode == "layer" else "kv", f"paper {mode}")
        _finish(ax, "QoS: added test error allowed (pp)", name, legend=7)
    fig.suptitle(f"Fig. 6: layer-based vs uniform inference ({dataset})")
    _save(fig, path)


def write_plots(out: Path, dataset: str, tabs: dict, gta_iterations: dict | None, gta_title: str,
                paper_view: dict) -> list[Path]:
    """Every figure of one dataset into ``out``; returns the paths written."""
    out = Path(out)
    paths = []
    jobs = [(f"{dataset}-table1.png", lambda p: plot_table1(dataset, tabs["I"], paper_view.get("I"), p)),
            (f"{dataset}-fig5.png", lambda p: plot_fig5(dataset, tabs["IV"], paper_view.get("5"), p)),
            (f"{dataset}-fig6.png", lambda p: plot_fig6(dataset, tabs["6"], paper_view.get("6"), p))]
    if gta_iterations is not None:
        jobs.append((f"{dataset}-fig3.png", lambda p: plot_fig3(dataset, gta_iterations, gta_title, p)))
    for name, draw in jobs:
        draw(out / name)
        paths.append(out / name)
    return paths
