"""The experiments of ``canna reproduce``: which training and inference jobs regenerate the
paper's tables and figures, per profile, and the two job kinds that run them.

A *train* job is one ``canna train`` run (:func:`canna.nn.train.train`, its files in the job's
work directory: ``model.npz``, ``iterations.npz``, ``results.json``; an interrupted job resumes
from its checkpoint); an *infer* job is one ``canna infer`` search
(:func:`canna.nn.layerwise.run_inference`) on the exact network a train job of the same seed
trained. Every job's parameters are complete (dataset, split, seed, preset, mode, bits, the
accounting options), so its key (:attr:`canna.repro.jobs.Job.key`) names exactly one result.

Profiles (per dataset; ``--seeds`` overrides the seed count):

=========  ===================================================================================
smoke      seconds: a 16-unit hidden layer, 1 epoch on 320 images, levels 0 and 2, 2 seeds (tests)
quick      ``make paper``: digits on 64-16-16-10 for 20 epochs (the main job's 500-500 separates
           nothing on digits); Fashion-MNIST (784-500-500-10) on 10 000 training images for 3
           epochs; 3 seeds; uniform and GTA
           levels 0..8 (digits) / 0..6 (Fashion-MNIST); inference QoS 0, 0.5, 1, 2, 3 pp.
full       the whole training set, 10 epochs (digits 20, on 16-16), levels 0..10, 5 seeds, the
           same QoS.
=========  ===================================================================================

Choices (documented in docs/reproduce.md): our default preset (lr 0.01, momentum 0.9, batch 32,
dropout 0.5; the paper's preset trains too slowly for these budgets), standardised features,
policy b, the default checked operands, 16 lanes, exact multiply 4 cycles. None of them is
chosen per result: they are the project's defaults.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from canna.spec.array import DEFAULT_EXACT_CYCLES, DEFAULT_LANES

from .jobs import Job, register_kind

__all__ = ["Profile", "PROFILES", "QOS", "Plan", "plan", "train_job", "infer_job",
           "run_train_job", "run_infer_job"]

#: QoS targets of the inference sweep (percentage points of added test error).
QOS = (0.0, 0.5, 1.0, 2.0, 3.0)
#: Quality-loss targets of Table IV and Fig. 5 (percentage points).
TARGETS = (0.0, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Profile:
    name: str
    seeds: int
    levels: tuple                # tuning bits of the uniform and GTA sweeps
    epochs: dict                 # dataset -> epochs
    train_limit: dict            # dataset -> training images (None: all)
    qos: tuple = QOS
    hidden: dict = None          # dataset -> hidden layer sizes, where not default_hidden
    default_hidden: tuple = (500, 500)   # the paper's (Table III)

    def network(self, dataset: str) -> tuple:
        return (self.hidden or {}).get(dataset, self.default_hidden)


PROFILES = {
    # Digits on 16-16: the main job's 500-500 separates nothing on digits (every level and both
    # inference methods within the seeds' spread of exact; docs/reproduce.md), 16-16 keeps the
    # paper's depth (three weight layers) and does separate them.
    "quick": Profile("quick", 3, tuple(range(0, 9)), {"digits": 20, "fashion-mnist": 3},
                     {"digits": None, "fashion-mnist": 10_000}, hidden={"digits": (16, 16)}),
    "full": Profile("full", 5, tuple(range(0, 11)), {"digits": 20, "fashion-mnist": 10},
                    {"digits": None, "fashion-mnist": None}, hidden={"digits": (16, 16)}),
    # A few seconds: the tests' and a first look's (a 16-unit network, 1 epoch on 320 images).
    "smoke": Profile("smoke", 2, (0, 2), {"digits": 1, "fashion-mnist": 1},
                     {"digits": 320, "fashion-mnist": 320}, qos=(0.0, 3.0), default_hidden=(16,)),
}
#: Fashion-MNIST's quick levels stop at 6: t > 6 gives no hits worth measuring at 3 epochs and
#: costs a third of the budget.
QUICK_LEVELS = {"fashion-mnist": tuple(range(0, 7))}


def _data(dataset: str, data_dir, split_seed: int, input_scale: str) -> dict:
    return {"dataset": dataset, "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
            "split_seed": split_seed, "input_scale": input_scale}


def train_job(data: dict, seed: int, mode: str, bits: int | None, epochs: int, train_limit,
              hidden=(500, 500), lanes: int = DEFAULT_LANES, exact_cycles: int = DEFAULT_EXACT_CYCLES,
              preset: str = "default") -> Job:
    """One training run: ``mode`` exact, uniform at ``bits`` or GTA with apx-min ``bits``."""
    from canna.nn.train import TrainConfig
    kw = {"uniform": {"tuning_bits": bits}, "gta": {"apx_min": bits}}.get(mode, {})
    cfg = TrainConfig.from_preset(preset, dataset=data["dataset"], mode=mode, epochs=epochs, seed=seed,
                                  train_limit=train_limit, input_scale=data["input_scale"], lanes=lanes,
                                  hidden=hidden,
                                  exact_cycles=exact_cycles, **kw)
    label = f"{data['dataset']} train {mode}{'' if bits is None else f' t={bits}'} seed {seed}"
    return Job("train", {"data": data, "config": cfg.as_dict()}, label=label)


def infer_job(model: Job, qos: float, metric: str = "kl") -> Job:
    """Layer-based and uniform inference search on the exact network ``model`` trained."""
    cfg = model.params["config"]
    params = {"data": model.params["data"], "qos": qos, "metric": metric, "spread": 3.0,
              "policy": cfg["policy"], "checked": cfg["checked"],
              "lanes": cfg["lanes"], "exact_cycles": cfg["exact_cycles"]}
    return Job("infer", params, deps=(model.key,),
               label=f"{model.params['data']['dataset']} infer QoS {qos} {metric} seed {cfg['seed']}")


@dataclass
class Plan:
    """The jobs of one dataset's reproduction and how the report finds them."""

    dataset: str
    profile: Profile
    levels: tuple
    seeds: tuple
    jobs: list
    train: dict                  # (mode, bits, seed) -> Job   (exact: bits None)
    infer: dict                  # (qos, metric, seed) -> Job


def plan(dataset: str, profile: str = "quick", *, seeds: int | None = None, data_dir=None,
         split_seed: int = 0, input_scale: str = "standard", preset: str = "default") -> Plan:
    """Every job of ``dataset``'s reproduction under ``profile`` and the training ``preset``
    (:data:`canna.nn.train.PRESETS`: ours, or the paper's Section V-A hyper-parameters)."""
    if profile not in PROFILES:
        raise ValueError(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    prof = PROFILES[profile]
    n_seeds = prof.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {n_seeds}")
    levels = QUICK_LEVELS.get(dataset, prof.levels) if profile == "quick" else prof.levels
    epochs = prof.epochs.get(dataset, prof.epochs["fashion-mnist"])
    limit = prof.train_limit.get(dataset, prof.train_limit["fashion-mnist"])
    data = _data(dataset, data_dir, split_seed, input_scale)
    train, infer = {}, {}
    for seed in range(n_seeds):
        hidden = prof.network(dataset)
        train["exact", None, seed] = train_job(data, seed, "exact", None, epochs, limit, hidden, preset=preset)
        for t in levels:
            for mode in ("uniform", "gta"):
                train[mode, t, seed] = train_job(data, seed, mode, t, epochs, limit, hidden, preset=preset)
        model = train["exact", None, seed]
        for qos in prof.qos:
            infer[qos, "kl", seed] = infer_job(model, qos)
        for metric in ("loss", "error"):         # Table II / V: all three metrics
            infer[1.0, metric, seed] = infer_job(model, 1.0, metric)
    jobs = list(train.values()) + list(infer.values())
    return Plan(dataset, prof, tuple(levels), tuple(range(n_seeds)), jobs, train, infer)


# -- the job kinds ---------------------------------------------------------------------------

def _load(data: dict):
    from canna.nn.datasets import load_dataset
    return load_dataset(data["dataset"], data["data_dir"], split_seed=data["split_seed"],
                        input_scale=data["input_scale"])


def run_train_job(params: dict, workdir: Path, deps: dict) -> dict:
    """``canna train`` with the job's configuration, its files in ``workdir`` (resumed from the
    checkpoint an interrupted attempt left)."""
    from canna.nn.train import TrainConfig, train
    cfg = params["config"]
    cfg = TrainConfig(**{**cfg, "hidden": tuple(cfg["hidden"]), "phases": tuple(cfg["phases"])})
    res = train(_load(params["data"]), cfg, out_dir=workdir,
                resume=(Path(workdir) / "checkpoint.npz").is_file())
    res.pop("_model", None)
    return res


def run_infer_job(params: dict, workdir: Path, deps: dict) -> dict:
    """``canna infer`` on the model of the job's one dependency."""
    from canna.nn.layerwise import run_inference
    from canna.nn.train import load_model
    from canna.spec.array import ArrayGeometry
    (dep,) = deps.values()
    model, _ = load_model(Path(dep["workdir"]) / "model.npz")
    res = run_inference(model, _load(params["data"]), params["qos"] / 100.0, "golden-fast",
                        policy=params["policy"], checked=params["checked"], metric=params["metric"],
                        spread=params["spread"], geometry=ArrayGeometry(params["lanes"], params["exact_cycles"]))
    return res


register_kind("train", "canna.repro.experiments:run_train_job")
register_kind("infer", "canna.repro.experiments:run_infer_job")
