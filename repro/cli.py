"""``canna reproduce``: regenerate the paper's tables and figures, beside the paper's numbers.

Examples::

    canna reproduce --dataset digits --out runs/paper                 # quick profile, 3 seeds
    canna reproduce --dataset digits,fashion-mnist --jobs 2 --out runs/paper
    canna reproduce --dataset mnist --data-dir ~/data/mnist --profile full --out runs/mnist
    canna reproduce ... --scheduler tcp://host:8786                    # on a Dask cluster

Writes ``OUT/report.md`` (every table, the claims' verdicts, the commands and versions),
``OUT/<dataset>-*.png`` and ``OUT/results.json`` (every number); the jobs' own results and files
live in ``OUT/sweep/`` (a rerun skips finished jobs: an interrupted reproduction continues
where it stopped). Options and output locations are checked before any job runs.
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

from canna.cli import CliError, path_arg

__all__ = ["register", "run_reproduce", "SECONDS_PER_TRAIN_JOB"]

#: Measured seconds of one train job per dataset and profile on the 2-core development machine
#: (one worker; docs/reproduce.md): what the up-front estimate multiplies.
SECONDS_PER_TRAIN_JOB = {("digits", "smoke"): 0.3, ("fashion-mnist", "smoke"): 0.5,
                         ("digits", "quick"): 0.7, ("digits", "full"): 0.7,
                         ("fashion-mnist", "quick"): 8.0, ("fashion-mnist", "full"): 130.0}
_DEFAULT_SECONDS = 130.0     # MNIST-sized, full training set, 10 epochs
#: Measured seconds of one inference search job (quick profile, both datasets' mean).
SECONDS_PER_INFER_JOB = 2.0


def register(sub) -> None:
    from canna.nn.cli import seed_arg, positive_int_arg
    from canna.nn.datasets import INPUT_SCALES
    from .experiments import PROFILES
    p = sub.add_parser("reproduce", help="regenerate the paper's tables and figures (sweeps, seeds, plots)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits",
                   help="dataset(s), comma-separated (default digits; fashion-mnist, mnist, isolet, har, "
                        "hapt, hyper read --data-dir)")
    p.add_argument("--data-dir", type=path_arg, help="directory with the dataset's files")
    p.add_argument("--profile", default="quick", choices=list(PROFILES),
                   help="quick (make paper's budget, default), full (whole training sets, more levels and "
                        "seeds) or smoke (seconds: a tiny network, for a first look)")
    p.add_argument("--seeds", type=positive_int_arg, help="seeds per configuration (default: the profile's)")
    p.add_argument("--split-seed", type=seed_arg, default=0, help="seed of the train/val/test split (default 0)")
    p.add_argument("--input-scale", default="standard", choices=INPUT_SCALES)
    p.add_argument("--preset", default="default", choices=["default", "paper"],
                   help="training hyper-parameters: ours (default) or the paper's (lr 0.001, momentum 0.1, "
                        "batch 10; slower to converge: give the full profile's epochs)")
    p.add_argument("--jobs", type=positive_int_arg, default=1, help="jobs in parallel (default 1)")
    p.add_argument("--scheduler", help="run the jobs on Dask: 'local' (a LocalCluster of --jobs workers) "
                                       "or a scheduler address tcp://host:port")
    p.add_argument("--out", type=path_arg, required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_reproduce)


def _datasets(text: str) -> list[str]:
    from canna.nn.datasets import DATASETS
    names = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in names if d not in DATASETS]
    if not names or bad:
        raise ValueError(f"--dataset: unknown dataset {', '.join(bad) or repr(text)}; known: {', '.join(DATASETS)}")
    return names


def _check_data(name: str, args) -> None:
    """Fail in one line before any job when a dataset cannot be loaded."""
    from canna.nn.datasets import DatasetError, load_dataset
    try:
        load_dataset(name, args.data_dir if name != "digits" else None, split_seed=args.split_seed,
                     input_scale=args.input_scale)
    except DatasetError as e:
        hint = " (Debian: apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
        raise ValueError(f"{e}{hint}") from None


def run_reproduce(args) -> int:
    from canna.files import atomic_write_bytes, check_output_dir, write_json
    from .experiments import plan
    from .jobs import JobStore, code_version
    from .report import collect, render_markdown, tables
    from .sweep import SweepError, run_sweep
    t0 = time.monotonic()
    try:
        names = _datasets(args.dataset)
        out = Path(args.out)
        check_output_dir(out, ["report.md", "results.json"])
        plans = []
        for name in names:
            _check_data(name, args)
            plans.append(plan(name, args.profile, seeds=args.seeds,
                              data_dir=args.data_dir if name != "digits" else None,
                              split_seed=args.split_seed, input_scale=args.input_scale, preset=args.preset))
    except (ValueError, OSError) as e:
        raise CliError(str(e)) from None
    store = JobStore(out / "sweep")
    jobs = [j for p in plans for j in p.jobs]
    todo = [j for j in jobs if not store.done(j)]
    estimate = sum(SECONDS_PER_TRAIN_JOB.get((p.dataset, args.profile), _DEFAULT_SECONDS) *
                   sum(1 for j in p.train.values() if not store.done(j))
                   + SECONDS_PER_INFER_JOB * sum(1 for j in p.infer.values() if not store.done(j))
                   for p in plans) / args.jobs
    print(f"canna reproduce: {', '.join(names)}, profile {args.profile}, {len(jobs)} jobs "
          f"({len(jobs) - len(todo)} finished before), estimated {estimate / 60:.1f} min on {args.jobs} "
          f"worker(s) {'on ' + args.scheduler if args.scheduler else 'locally'}", flush=True)
    try:
        rep = run_sweep(jobs, out / "sweep", workers=args.jobs, scheduler=args.scheduler,
                        progress=not args.quiet and sys.stderr.isatty())
    except SweepError as e:
        raise CliError(str(e)) from None
    sections, numbers, figures = [], {}, []
    for p in plans:
        data = collect(p, rep.results)
        tabs = tables(data)
        numbers[p.dataset] = data
        sections.append(render_markdown(data))
        figures += _plots(out, p, tabs, store)
    failed = [f"* {j.label}: {rep.failed[j.key]}" for j in jobs if j.key in rep.failed]
    header = ["# CANNA: the paper's tables regenerated", "",
              f"Command: `canna reproduce {' '.join(sys.argv[2:]) if sys.argv[1:2] == ['reproduce'] else ''}`".rstrip(),
              f"Code version (hash of the arithmetic and NN sources and the energy model's inputs): "
              f"`{code_version()[:16]}`; canna {_version('canna')}, NumPy {_version('numpy')}, Python "
              f"{platform.python_version()}, {platform.machine()}; "
              f"{len(jobs)} jobs ({rep.skipped} reused, {rep.ran} run, {len(rep.failed)} failed) in "
              f"{time.monotonic() - t0:.0f} s.", ""]
    if failed:
        header += ["## Failed jobs (their errors are in sweep/jobs/*/error.json)", "", *failed, ""]
    body = "\n".join(header) + "\n" + "\n".join(sections)
    body += "\n## Figures\n\n" + "\n".join(f"![{f.stem}]({f.name})" for f in figures) + "\n"
    atomic_write_bytes(out / "report.md", body.encode())
    write_json(out / "results.json", {"datasets": numbers, "failed": {j.label: rep.failed[j.key]
                                                                       for j in jobs if j.key in rep.failed},
                                      "code_version": code_version()})
    print(f"  report: {out / 'report.md'}   numbers: {out / 'results.json'}   figures: {len(figures)}")
    if failed:
        print(f"  {len(failed)} job(s) failed:", file=sys.stderr)
        for line in failed:
            print("  " + line, file=sys.stderr)
        return 1
    return 0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _plots(out: Path, p, tabs: dict, store) -> list:
    """The dataset's figures; Fig. 3 from the GTA run meeting the 0 pp target (seed 0)."""
    import numpy as np
    from .plots import write_plots
    from .report import paper_view
    t = next((e["gta"]["bits"] for e in tabs["IV"] if e["target"] == 0 and e["gta"]["bits"] is not None),
             max(p.levels))
    job = p.train.get(("gta", t, 0))
    iterations = None
    if job is not None and (store.workdir(job) / "iterations.npz").is_file():
        with np.load(store.workdir(job) / "iterations.npz") as z:
            iterations = {"batch_error": z["batch_error"], "level": z["level"]}
    return write_plots(out, p.dataset, tabs, iterations, f"GTA training, apx-min {t}, seed 0",
                       paper_view(p.dataset))
