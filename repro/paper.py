"""The paper's published numbers, typed in once, each with where the paper prints it.

Everything ``canna reproduce`` sets beside our results comes from here: Imani et al., "CANNA:
Neural Network Acceleration using Configurable Approximation on GPGPU". Plain data (dicts,
tuples, numbers, strings); the only code is :func:`table` and a few small look-ups.

What the paper calls each quantity, and how it maps to ours
-----------------------------------------------------------
* **Quality loss** (``Δe_train`` in Tables I and IV, ``Δe_test`` in Table II and Fig. 6): an
  *additive* classification error, ``e_approx - e_exact`` (Section IV-B1), printed in percent.
  Here: percentage points as a float (``0.9`` for the printed ``0.9%``); ours is the same
  difference of error rates, in percentage points.
* **Tuning bits** (``n`` in Section III, "k-bits" in the tables): how many mantissa bits after the
  first the CFPU checks before it keeps an approximate product. 0 tuning bits is the deepest
  approximation; more bits = more precise. ``Exact`` (Table I) is the plain 32-bit FPU, which has no
  tuning-bit count (``None`` here). **Apx_min** (Algorithm 1, Table IV) is GTA's *final*, most
  precise level, in tuning bits (GTA starts at 0 and climbs to it).
* **Hit rate** ("approximation hit rate", Section V-B): "the ratio of running FPUs in approximate
  mode to the total accesses", printed in percent; here 0..100 as printed. Ours: the share of
  multiplications the CFPU answers approximately (``hit_rate``; see docs/savings.md on the
  ``fast`` reading that counts zero-operand products too).
* **Normalised energy / execution time** (Table I): energy and time divided by those of the exact
  FPU ("Exact" column = 1). **Energy (efficiency) improvement / savings** and **speedup** (the text,
  Fig. 5, Fig. 6): exact / approximate, "normalized to GPGPU using exact 32-bit FPUs" (so
  improvement = 1 / normalised value). Ours: the same ratios against the exact ``plain`` array.
* **Sensitivity** (Tables II, V): the effect on accuracy of putting one layer at 0 tuning bits and
  the others exact, normalised so that the most sensitive layer is 1 (Section IV-C).

Our dataset names map to the paper's with :data:`DATASET_NAMES`. The paper's HAR has 12 outputs
(Table III), which is the class count of our ``hapt`` (HAPT), not of our ``har`` (UCI HAR, 6
classes, the data set the paper cites as [40]); the mapping below follows the brief
(``har`` -> HAR) and leaves that choice to the suite.

Figures 5 and 6 are images in the paper: their per-application bars are not available, only the
numbers the text states (recorded in :data:`FIG5` and :data:`FIG6`). Where the paper is
inconsistent with itself (text vs. table, a typo, a garbled cell) both readings are recorded and
the entry's ``notes`` say so; no number here is guessed: what the paper does not state is ``None``.

Each top-level dict has a ``source`` (e.g. ``"Table IV"``, ``"Section V-B text"``); every entry of
a text-derived list (``text``, ``entries``, ``claims``) has its own ``source``. Quotes are the
paper's sentences with the LaTeX removed (``$3.86 \\times$`` -> ``3.86x``); ``[...]`` marks an
elision, and the one sentence the markdown splits around Tables IV and V is joined (FIG6 notes).
"""
from __future__ import annotations

__all__ = ["DATASET_NAMES", "TARGETS", "TABLE_I", "TABLE_II", "TABLE_III", "TABLE_IV", "TABLE_V",
           "FIG5", "FIG6", "HEADLINE", "CLAIMS", "HYPERPARAMETERS", "GTA_PARAMETERS", "SETUP",
           "TABLES", "table", "paper_name", "table4_cell", "fig_value"]

#: Our dataset names (canna.nn.datasets.DATASETS) -> the paper's application names.
DATASET_NAMES = {"mnist": "MNIST", "isolet": "ISOLET", "hyper": "HYPER", "har": "HAR"}

#: The quality-loss targets of Table IV, in percentage points, in the table's order.
TARGETS = (0, 1, 2, 4)

# ---------------------------------------------------------------------------------------------
# Table I: MNIST, uniform approximation during training.
# ---------------------------------------------------------------------------------------------
TABLE_I = {
    "source": "Table I",
    "caption": ("Quality loss, normalized energy consumption and execution time of neural network "
                "running on GPGPU with different level of approximation (tuning bits)."),
    "application": "MNIST",
    "topology": (784, 500, 500, 10),  # Section IV-B1 text: "four fully connected layers with 784, 500, 500, and 10 neurons"
    "training": "uniform",  # the same tuning bits for the whole training run
    "normalised_to": "exact",  # the Exact column is 1 for energy and time
    "columns": ("level", "tuning_bits", "quality_loss_pct", "norm_energy", "norm_time"),
    "units": {"quality_loss_pct": "percentage points (printed 'x%'), Δe_train",
              "norm_energy": "energy / exact energy (row 'Norm.Energy')",
              "norm_time": "execution time / exact execution time (row 'Norm. Execution')"},
    # Decreasing tuning bits, Exact first, as printed (left to right).
    "rows": (
        {"level": "Exact", "tuning_bits": None, "quality_loss_pct": 0.0, "norm_energy": 1.0, "norm_time": 1.0},
        {"level": "4-bit", "tuning_bits": 4, "quality_loss_pct": 0.0, "norm_energy": 0.31, "norm_time": 0.45},
        {"level": "3-bit", "tuning_bits": 3, "quality_loss_pct": 0.9, "norm_energy": 0.25, "norm_time": 0.38},
        {"level": "2-bit", "tuning_bits": 2, "quality_loss_pct": 1.3, "norm_energy": 0.21, "norm_time": 0.34},
        {"level": "1-bit", "tuning_bits": 1, "quality_loss_pct": 1.7, "norm_energy": 0.18, "norm_time": 0.31},
        {"level": "0-bit", "tuning_bits": 0, "quality_loss_pct": 3.2, "norm_energy": 0.12, "norm_time": 0.19},
    ),
    # The cells exactly as printed, row label first (a transcription to check the numbers against).
    "printed": (
        ("Approximation", "Exact", "4-bit", "3-bit", "2-bit", "1-bit", "0-bit"),
        ("Quality loss (Δe_train)", "0%", "0%", "0.9%", "1.3%", "1.7%", "3.2%"),
        ("Norm.Energy", "1", "0.31", "0.25", "0.21", "0.18", "0.12"),
        ("Norm. Execution", "1", "0.45", "0.38", "0.34", "0.31", "0.19"),
    ),
    # What Section IV-B1 says about Table I. Improvements are exact / approximate.
    "text": (
        {"tuning_bits": 4, "quantity": "hit_rate_pct", "value": 33.0, "printed": "33% ... (Hit-rate=33%)",
         "source": "Section IV-B1 text"},
        {"tuning_bits": 4, "quantity": "speedup", "value": 2.2, "printed": "2.2x", "source": "Section IV-B1 text"},
        {"tuning_bits": 4, "quantity": "energy_improvement", "value": 3.2, "printed": "3.2x",
         "source": "Section IV-B1 text"},
        {"tuning_bits": 0, "quantity": "speedup", "value": 5.1, "printed": "5.1x", "source": "Section IV-B1 text"},
        {"tuning_bits": 0, "quantity": "energy_improvement", "value": 7.9, "printed": "7.9x",
         "source": "Section IV-B1 text"},
        {"tuning_bits": 0, "quantity": "quality_loss_pct", "value": 3.2, "printed": "3.2%",
         "source": "Section IV-B1 text"},
    ),
    "quotes": (
        "For example, for this network, our design works with the same accuracy as a full range "
        "32-bit FPU, even when it trains with only four configuration tuning bits. At this level of "
        "approximation the FPUs are running 33% of the time in approximate mode (Hit-rate=33%), "
        "resulting in a training speedup of 2.2x and energy efficiency improvement of 3.2x as "
        "compared to the hardware with full FPU precision. Increasing the level of approximation to "
        "no tuning bits further accelerates the training by 5.1x and results in 7.9x energy "
        "efficiency improvement with 3.2% quality loss.",
    ),
    "notes": (
        "Table I has no hit-rate row; the 33% at 4 bits is from the text (and equals Table IV's "
        "MNIST uniform 0% cell).",
        "At 4 bits the text agrees with the table (1/0.45 = 2.22x, 1/0.31 = 3.23x). At 0 bits it "
        "does not: the table gives 1/0.19 = 5.26x speedup and 1/0.12 = 8.33x energy, the text "
        "5.1x and 7.9x. Both are recorded as printed.",
        "Quality loss here is measured on training (Δe_train = e_Approx - e_FPU).",
    ),
}

# ---------------------------------------------------------------------------------------------
# Table II: MNIST layer sensitivity and hardware configurations (inference).
# ---------------------------------------------------------------------------------------------
TABLE_II = {
    "source": "Table II",
    "caption": "Layer sensitivity and hardware configuration of neural network over MNIST dataset",
    "application": "MNIST",
    "layers": ("Layer 1", "Layer 2", "Layer 3", "Layer 4"),
    "sensitivity": (1.0, 0.52, 0.34, 0.89),
    "sensitivity_delta_e_test_pct": None,  # printed "_": the sensitivity row has no Δe_test
    # Tuning bits per layer; the rule (Section IV-C text) is m, m-1, m-2, m for layers 1..4.
    "configs": (
        {"name": "Config1", "tuning_bits": (6, 5, 4, 6), "delta_e_test_pct": 0.0, "m": 6},
        {"name": "Config2", "tuning_bits": (3, 2, 1, 3), "delta_e_test_pct": 0.9, "m": 3},
        {"name": "Config3", "tuning_bits": (2, 1, 0, 2), "delta_e_test_pct": 3.2, "m": 2},
    ),
    "config_rule": ("m", "m-1", "m-2", "m"),
    "printed": (
        ("", "Layer 1", "Layer 2", "Layer 3", "Layer 4", "Δe_test"),
        ("Sensitivity", "1", "0.52", "0.34", "0.89", "_"),
        ("Config1", "6-bits", "5-bits", "4-bits", "6-bits", "0%"),
        ("Config2", "3-bits", "2-bits", "1-bits", "3-bits", "0.9%"),
        ("Config3", "2-bits", "1-bit", "0-bits", "2-bits", "3.2%"),
    ),
    # What Section IV-C says about Table II (the m = 6 configuration, i.e. Config1).
    "text": (
        {"m": 6, "quantity": "hit_rate_pct", "value": 51.0, "printed": "51% of time in approximate mode",
         "source": "Section IV-C text"},
        {"m": 6, "quantity": "energy_improvement", "value": 4.4, "printed": "4.4x energy savings",
         "source": "Section IV-C text"},
        {"m": 6, "quantity": "speedup", "value": 2.9, "printed": "2.9x speedup", "source": "Section IV-C text"},
        {"m": 6, "quantity": "quality_loss_pct", "value": 0.0, "printed": "zero quality loss",
         "source": "Section IV-C text"},
        {"m": 6, "quantity": "energy_improvement_over_uniform", "value": 1.6, "printed": "1.6x ... higher",
         "source": "Section IV-C text"},
        {"m": 6, "quantity": "speedup_over_uniform", "value": 1.8, "printed": "1.8x higher",
         "source": "Section IV-C text"},
        {"m": None, "quantity": "hidden_layer_sensitivity_up_to_lower", "value": 3.0,
         "printed": "the hidden layers could have up to 3x lower sensitivity", "source": "Section IV-C text"},
    ),
    "quotes": (
        "This result shows that the first and the last layers have the highest sensitivity to "
        "approximation, while the hidden layers could have up to 3x lower sensitivity. The table "
        "also shows a few possible configurations that NN layers can take in approximate mode. When "
        "the first NN layer works with m-bit level approximation, the second to last NN layers need "
        "to be configured with m-1, m-2 and m tuning bits respectively. With m = 6, the network runs "
        "51% of time in approximate mode and provides 4.4x energy savings and 2.9x speedup, with zero "
        "quality loss compared to the NN runing on exact hardware. These improvements are "
        "respectively 1.6x and 1.8x higher than running NN with uniform approximation.",
    ),
    "notes": (
        "m = 6 for Config1 is stated in the text; m = 3 and m = 2 for Config2 / Config3 are read off "
        "their Layer 1 cells (all three rows follow the m, m-1, m-2, m rule exactly).",
        "The sensitivity row's Δe_test cell is printed '_' (empty), recorded as None.",
        "'1.6x and 1.8x higher than uniform' are energy and speedup respectively; the uniform "
        "values they imply (4.4/1.6, 2.9/1.8) are not printed and not recorded.",
        "Four layer columns, while Table III's MNIST topology (784, 500, 500, 10) has three weight "
        "matrices; the paper calls the four neuron layers 'four fully connected layers' (Section "
        "IV-B1) and does not say what the sensitivity of 'Layer 1' approximates. See TABLE_V.",
        "Config2's and Config3's Δe_test (0.9%, 3.2%) equal Table I's 3-bit and 0-bit Δe_train; "
        "recorded as printed.",
        "The sensitivities equal Table V's MNIST row.",
    ),
}

# ---------------------------------------------------------------------------------------------
# Table III: baseline networks and their exact train / test errors.
# ---------------------------------------------------------------------------------------------
TABLE_III = {
    "source": "Table III",
    "caption": "Baseline NN and the training and testing error over four applications",
    "columns": ("topology", "e_train_pct", "e_test_pct"),
    "units": {"topology": "neurons per layer (l0, l1, l2, l3): inputs, hidden, hidden, outputs",
              "e_train_pct": "classification error on training data, percent",
              "e_test_pct": "classification error on test data, percent"},
    "rows": {
        "MNIST": {"topology": (784, 500, 500, 10), "e_train_pct": 0.3, "e_test_pct": 2.4},
        "ISOLET": {"topology": (617, 500, 500, 26), "e_train_pct": 0.7, "e_test_pct": 4.4},
        "HYPER": {"topology": (200, 500, 500, 9), "e_train_pct": 0.9, "e_test_pct": 6.6},
        "HAR": {"topology": (561, 500, 500, 12), "e_train_pct": 0.2, "e_test_pct": 3.4},
    },
    "printed": (
        ("Application", "Network Topology (l0, l1, l2, l3)", "e_train (%)", "e_test (%)"),
        ("MNIST", "784, 500, 500, 10", "0.3", "2.4"),
        ("ISOLET", "617, 500, 500, 26", "0.7", "4.4"),
        ("HYPER", "200, 500, 500, 9", "0.9", "6.6"),
        ("HAR", "561, 500, 500, 12", "0.2", "3.4"),
    ),
    "notes": (
        "Every topology has four neuron layers, i.e. three weight matrices.",
        "HAR's 12 outputs are HAPT's 12 classes; the UCI HAR set cited as [40] has 6.",
        "HYPER's 200 inputs match Indian Pines (corrected, 200 bands); the paper names no scene. "
        "9 outputs: nine classes.",
    ),
}

# ---------------------------------------------------------------------------------------------
# Table IV: training configurations, uniform vs GTA, per quality-loss target.
# ---------------------------------------------------------------------------------------------
def _t4(gta_bits, gta_hit, uni_bits, uni_hit):
    """One application's row of Table IV as {target: cell}, in TARGETS order (construction only)."""
    return {t: {"gta_apx_min": g, "gta_hit_rate_pct": gh, "uniform_tuning_bits": u, "uniform_hit_rate_pct": uh}
            for t, g, gh, u, uh in zip(TARGETS, gta_bits, gta_hit, uni_bits, uni_hit, strict=True)}


TABLE_IV = {
    "source": "Table IV",
    "caption": ("Configuration of different neural networks running on GPGPU with uniform and GTA "
                "approximation, providing different quality of service."),
    "targets_pct": TARGETS,  # "Training Error (Δe_train)": 0%, 1%, 2%, 4%
    "fields": {"gta_apx_min": "GTA's final level Apx_min, tuning bits (row 'GTA Apxmin')",
               "gta_hit_rate_pct": "GTA's approximation hit rate, percent",
               "uniform_tuning_bits": "uniform training's tuning bits (row 'Uniform Tuning bits')",
               "uniform_hit_rate_pct": "uniform training's approximation hit rate, percent"},
    # application -> target (percentage points) -> cell
    "rows": {
        "MNIST": _t4((5, 4, 1, 0), (56, 69, 88, 100), (4, 3, 1, 0), (33, 42, 54, 100)),
        "ISOLET": _t4((7, 4, 2, 1), (52, 60, 79, 92), (5, 3, 2, 1), (29, 38, 51, 83)),
        "HYPER": _t4((8, 6, 5, 3), (23, 44, 56, 82), (8, 5, 4, 3), (6, 14, 27, 37)),
        "HAR": _t4((8, 6, 3, 2), (38, 51, 72, 86), (6, 4, 2, 1), (11, 26, 47, 66)),
    },
    # The four data rows exactly as printed, 16 cells each (MNIST 0/1/2/4 %, ISOLET ..., HYPER ..., HAR ...).
    "printed_applications": ("MNIST", "ISOLET", "HYPER", "HAR"),
    "printed": {
        "GTA Apxmin": ("5-bits", "4-bits", "1-bits", "0-bits", "7-bits", "4-bits", "2-bits", "1-bit",
                       "8-bits", "6-bits", "5-bits", "3-bits", "8-bits", "6-bits", "3-bits", "2-bits"),
        "GTA Approx Hit Rate": ("56%", "69%", "88%", "100%", "52%", "60%", "79%", "92%",
                                "23%", "44%", "56%", "82%", "38%", "51%", "72%", "86%"),
        "Uniform Tuning bits": ("4-bits", "3-bits", "1-bit", "0-bits", "5-bits", "3-bits", "2-bits", "1-bit",
                                "8-bits", "5-bits", "4-bits", "3-bits", "6-bits", "4-bits", "2-bits", "1-bit"),
        "Uniform Approx Hit Rate": ("33%", "42%", "54%", "100%", "29%", "38%", "51%", "83%",
                                    "6%", "14%", "27%", "37%", "11%", "26%", "47%", "66%"),
    },
    # What Section V-B says about Table IV.
    "text": (
        {"application": "MNIST", "target_pct": 0, "quantity": "uniform_tuning_bits", "value": 4,
         "printed": "4 tuning bits", "source": "Section V-B text"},
        {"application": "MNIST", "target_pct": 0, "quantity": "uniform_hit_rate_pct", "value": 36.0,
         "printed": "a roughly 36% approximation hit rate", "source": "Section V-B text"},
        {"application": "MNIST", "target_pct": 0, "quantity": "gta_tuning_bits_range", "value": (0, 5),
         "printed": "changes the tuning bits from 0 to 5 bits", "source": "Section V-B text"},
        {"application": "MNIST", "target_pct": 0, "quantity": "gta_hit_rate_pct", "value": 70.0,
         "printed": "average 70% approximation hit rate", "source": "Section V-B text"},
    ),
    "quotes": (
        "For uniform approximation, the table shows the number of tuning bits in hardware which "
        "provides the desired accuracy. For GTA, the level approximation is set by defining the final "
        "level of hardware approximation. The table also shows the approximation hit rate, which is "
        "the ratio of running FPUs in approximate mode to the total accesses, for each configuration. "
        "For instance, for the MNIST application the uniform approximation provides 0% quality loss "
        "using 4 tuning bits which results in a roughly 36% approximation hit rate. For the same "
        "quality of service, GTA adaptively changes the tuning bits from 0 to 5 bits, resulting in "
        "average 70% approximation hit rate.",
    ),
    "notes": (
        "The second 'Uniform' row label is garbled in the markdown ('Chinomi'); it is the uniform "
        "hit-rate row (the table has one GTA and one Uniform block of two rows each).",
        "'1-bits' (MNIST GTA 2%) and '1-bit' are the same level, 1 tuning bit.",
        "Text vs. table, MNIST 0%: the text says uniform 'roughly 36%' and GTA 'average 70%'; the "
        "table prints 33% and 56%. Both are recorded (table in 'rows', text in 'text'); Section IV-B1 "
        "also says 33% at 4 bits.",
        "Each cell is one configuration per application and target; the paper gives no seeds or spread.",
    ),
}
del _t4

# ---------------------------------------------------------------------------------------------
# Table V: per-application layer sensitivity (networks trained exactly).
# ---------------------------------------------------------------------------------------------
TABLE_V = {
    "source": "Table V",
    "caption": "Sensitivity of each neural network layer to approximation using layer-based approach.",
    "layers": ("Layer 1", "Layer 2", "Layer 3", "Layer 4"),
    "rows": {
        "MNIST": (1.0, 0.52, 0.34, 0.89),
        "ISOLET": (1.0, 0.57, 0.65, 0.83),
        "HYPER": (0.92, 0.71, 0.59, 1.0),
        "HAR": (1.0, 0.48, 0.41, 0.92),
    },
    "n_columns": {"MNIST": 4, "ISOLET": 4, "HYPER": 4, "HAR": 4},
    "weight_matrices_per_table_iii": {"MNIST": 3, "ISOLET": 3, "HYPER": 3, "HAR": 3},
    "printed": (
        ("", "Layer 1", "Layer 2", "Layer 3", "Layer 4"),
        ("MNIST", "1", "0.52", "0.34", "0.89"),
        ("ISOLET", "1", "0.57", "0.65", "0.83"),
        ("HYPER", "0.92", "0.71", "0.59", "1"),
        ("HAR", "1", "0.48", "0.41", "0.92"),
    ),
    "notes": (
        "Every row has 4 columns, but every Table III topology has 4 neuron layers, i.e. 3 weight "
        "matrices (l0->l1, l1->l2, l2->l3). The paper does not say how four sensitivities map onto "
        "three matmuls; our networks (inputs, 500, 500, classes) have three. A comparison must pick "
        "a mapping and say so.",
        "Normalised so that each row's maximum is 1 (HYPER's is Layer 4).",
        "Section V-C: 'NNs are trained on exact GPGPU'.",
    ),
}

# ---------------------------------------------------------------------------------------------
# Fig. 5 (training) and Fig. 6 (inference): only the numbers the text states.
# ---------------------------------------------------------------------------------------------
FIG5 = {
    "source": "Section V-B text (Fig. 5 is an image; its per-application bars are not available)",
    "caption": ("Energy efficiency improvement and speedup of different NN applications training on "
                "GPGPU with uniform and GTA approximation."),
    "phase": "training",
    "designs": ("gta", "uniform"),
    "metrics": ("energy_improvement", "speedup"),
    "normalised_to": "GPGPU using exact 32-bit FPUs (values are exact / approximate)",
    "aggregation": None,  # the text does not say over what (all four applications? their mean?)
    "entries": (
        {"design": "gta", "metric": "energy_improvement", "target_pct": 0, "value": 3.86, "printed": "3.86x",
         "source": "Section V-B text"},
        {"design": "uniform", "metric": "energy_improvement", "target_pct": 0, "value": 2.26, "printed": "(2.26x)",
         "source": "Section V-B text"},
        {"design": "gta", "metric": "speedup", "target_pct": 0, "value": 2.62, "printed": "2.62x",
         "source": "Section V-B text"},
        {"design": "uniform", "metric": "speedup", "target_pct": 0, "value": 1.62, "printed": "(1.62x)",
         "source": "Section V-B text"},
        {"design": "gta", "metric": "energy_improvement", "target_pct": 1, "value": 4.84, "printed": "4.84x",
         "source": "Section V-B text"},
        {"design": "gta", "metric": "energy_improvement", "target_pct": 2, "value": 6.11, "printed": "6.11x",
         "source": "Section V-B text"},
        {"design": "uniform", "metric": "energy_improvement", "target_pct": 1, "value": 2.99, "printed": "(2.99%",
         "source": "Section V-B text",
         "note": "printed with a percent sign; read as 2.99x (the uniform energy improvement at 1%)"},
        {"design": "uniform", "metric": "energy_improvement", "target_pct": 2, "value": 4.04, "printed": "4.04%)",
         "source": "Section V-B text",
         "note": "printed with a percent sign; read as 4.04x (the uniform energy improvement at 2%)"},
        {"design": "gta", "metric": "speedup", "target_pct": 1, "value": 3.23, "printed": "3.23x",
         "source": "Section V-B text"},
        {"design": "gta", "metric": "speedup", "target_pct": 2, "value": 4.01, "printed": "4.01x",
         "source": "Section V-B text"},
        {"design": "uniform", "metric": "speedup", "target_pct": 1, "value": 2.07, "printed": "(2.07x",
         "source": "Section V-B text"},
        {"design": "uniform", "metric": "speedup", "target_pct": 2, "value": 2.37, "printed": "2.37x)",
         "source": "Section V-B text"},
    ),
    "quotes": (
        "The results are normalized to GPGPU using exact 32-bit FPUs. Our experimental results shows "
        "that at the same level of accuracy, the GTA always outperforms the efficiency of the uniform "
        "approximation.",
        "The result shows that ensuring 0% additive error, GTA (uniform) design can achieve 3.86x "
        "(2.26x) energy efficiency improvement and 2.62x (1.62x) speedup as compared to exact mode. "
        "For GTA (uniform) design, this improvement increases to 4.84x and 6.11x (2.99% and 4.04%) in "
        "energy efficiency and 3.23x and 4.01x (2.07x and 2.37x) in performance accepting 1% and 2% "
        "additive errors.",
    ),
    "notes": (
        "Typo: '6.11x (2.99% and 4.04%)' -- the parenthesised uniform energy figures are printed as "
        "percentages; by the sentence's pattern (GTA first, uniform in parentheses) they are 2.99x "
        "and 4.04x. Recorded as 2.99 and 4.04 with the printed text beside them.",
        "No number is stated for the 4% target (Table IV's fourth column); the figure may show it.",
        "Headline mismatch: the abstract gives GTA 'up to 4.84x ... and 3.22x speedup' at 0% and "
        "7.13x / 4.64x at 2%, while this paragraph gives 3.86x / 2.62x at 0% and 6.11x / 4.01x at 2% "
        "(its 4.84x / 3.23x are at 1%). The abstract's 'up to' may be the best application and this "
        "paragraph a summary over applications, but the paper does not say; see HEADLINE.",
    ),
}

FIG6 = {
    "source": "Section V-C text (Fig. 6 is an image; its per-application bars are not available)",
    "caption": ("Energy efficiency improvement, speedup and approximation hit rate of different NN "
                "applications testing on GPGPU with uniform and layer-based approximation."),
    "phase": "inference",
    "designs": ("layer", "uniform"),
    "metrics": ("energy_improvement", "speedup"),
    "normalised_to": "traditional GPGPU using 32-bit FPU (values are exact / approximate)",
    "aggregation": None,  # not stated
    "entries": (
        {"design": "layer", "metric": "energy_improvement", "target_pct": 0, "value": 3.27, "printed": "3.27x",
         "source": "Section V-C text"},
        {"design": "uniform", "metric": "energy_improvement", "target_pct": 0, "value": 1.86, "printed": "(1.86x)",
         "source": "Section V-C text"},
        {"design": "layer", "metric": "speedup", "target_pct": 0, "value": 2.25, "printed": "2.25x",
         "source": "Section V-C text"},
        {"design": "uniform", "metric": "speedup", "target_pct": 0, "value": 1.38, "printed": "(1.38x)",
         "source": "Section V-C text"},
        {"design": "layer", "metric": "energy_improvement", "target_pct": 1, "value": 4.05, "printed": "4.05x",
         "source": "Section V-C text"},
        {"design": "layer", "metric": "speedup", "target_pct": 1, "value": 2.73, "printed": "2.73x",
         "source": "Section V-C text"},
        {"design": "layer", "metric": "energy_improvement", "target_pct": 2, "value": 5.25, "printed": "(5.25x",
         "source": "Section V-C text"},
        {"design": "layer", "metric": "speedup", "target_pct": 2, "value": 3.48, "printed": "3.48x)",
         "source": "Section V-C text"},
        {"design": "uniform", "metric": "energy_improvement", "target_pct": 1, "value": None, "printed": None,
         "source": "Section V-C text", "note": "not stated (only in the figure)"},
        {"design": "uniform", "metric": "speedup", "target_pct": 1, "value": None, "printed": None,
         "source": "Section V-C text", "note": "not stated (only in the figure)"},
        {"design": "uniform", "metric": "energy_improvement", "target_pct": 2, "value": None, "printed": None,
         "source": "Section V-C text", "note": "not stated (only in the figure)"},
        {"design": "uniform", "metric": "speedup", "target_pct": 2, "value": None, "printed": None,
         "source": "Section V-C text", "note": "not stated (only in the figure)"},
    ),
    "quotes": (
        "The x-axis shows the maximum acceptable test error (Δe_test) for each application. The "
        "results are normalized to the energy and performance of traditional GPGPU using 32-bit FPU.",
        "The experimental result shows that the layer-based (uniform) approximation could achieve "
        "3.27x (1.86x) higher energy efficiency and 2.25x (1.38x) speedup as compared to GPGPU "
        "architecture, while providing the same accuracy as exact GPGPU.",
        "Further relaxing the GPGPU computation significantly improves the energy and performance of "
        "GPGPU, specially in layer-based design. For example, accepting 1% (2%) quality loss, "
        "layer-based approximation could improve the energy efficiency and speedup of the GPGPU by "
        "4.05x and 2.73x (5.25x and 3.48x) respectively.",
    ),
    "notes": (
        "In the markdown the 0% sentence is split by Tables IV and V ('... as compared to GPGPU "
        "architecture,' [tables] 'while providing the same accuracy as exact GPGPU.'); joined here.",
        "The 0% case is stated as 'the same accuracy as exact GPGPU'; read as a 0% target.",
        "Fig. 6 also shows hit rates (caption); the text states none.",
        "Headline mismatch: the abstract gives layer-based inference 4.42x (6.06x) energy and 2.96x "
        "(3.98x) speedup at 0% (2%), this paragraph 3.27x / 2.25x at 0% and 5.25x / 3.48x at 2%. The "
        "abstract's 0% pair is close to Table II's MNIST m = 6 (4.4x, 2.9x), consistent with 'up to' "
        "being the best application, but the paper does not say; see HEADLINE.",
    ),
}

# ---------------------------------------------------------------------------------------------
# Headline numbers: abstract, introduction, Section V-D, conclusion.
# ---------------------------------------------------------------------------------------------
HEADLINE = {
    "source": "Abstract; Section I text; Section V-D text; Section VI text",
    "entries": (
        {"phase": "training", "design": "gta", "metric": "energy_improvement", "target_pct": 0, "value": 4.84,
         "printed": "up to 4.84x", "source": "Abstract; Section I text (twice)"},
        {"phase": "training", "design": "gta", "metric": "energy_improvement", "target_pct": 2, "value": 7.13,
         "printed": "(7.13x)", "source": "Abstract; Section I text (twice); Section V-D text; Section VI text"},
        {"phase": "training", "design": "gta", "metric": "speedup", "target_pct": 0, "value": 3.22,
         "printed": "3.22x", "source": "Abstract; Section I text (twice)"},
        {"phase": "training", "design": "gta", "metric": "speedup", "target_pct": 2, "value": 4.64,
         "printed": "(4.64x)", "source": "Abstract; Section I text (twice); Section V-D text; Section VI text"},
        {"phase": "inference", "design": "layer", "metric": "energy_improvement", "target_pct": 0, "value": 4.42,
         "printed": "4.42x", "source": "Abstract; Section I text (twice)"},
        {"phase": "inference", "design": "layer", "metric": "energy_improvement", "target_pct": 2, "value": 6.06,
         "printed": "(6.06x)", "source": "Abstract; Section I text (twice); Section VI text"},
        {"phase": "inference", "design": "layer", "metric": "speedup", "target_pct": 0, "value": 2.96,
         "printed": "2.96x", "source": "Abstract; Section I text (twice)"},
        {"phase": "inference", "design": "layer", "metric": "speedup", "target_pct": 2, "value": 3.98,
         "printed": "(3.98x)", "source": "Abstract; Section I text (twice); Section VI text"},
        {"phase": None, "design": None, "metric": "area_overhead_pct_max", "target_pct": None, "value": 2.6,
         "printed": "less than 2.6% area overhead", "source": "Section V-D text"},
    ),
    "quotes": (
        "CANNA achieves up to 4.84x (7.13x) energy savings and 3.22x (4.64x) speedup when training four "
        "different neural network applications with 0% (2%) quality loss as compared to the "
        "implementation on baseline GPU. During the inference phase, our layer-based approach improves "
        "the energy efficiency by 4.42x (6.06x) and results in 2.96x (3.98x) speedup while ensuring 0% "
        "(2%) quality loss.",
        "This area is negligible considering 7.13x energy savings and 4.64x speedup that CANNA can "
        "provide.",
        "Our experimental evaluation shows that CANNA can achieve up to 7.13x (6.06x) energy savings "
        "and 4.64x (3.98x) speedup training (testing) of four different neural network applications "
        "with less than 2% quality loss.",
    ),
    "notes": (
        "'up to': presumably a maximum over the four applications; not said. These do not match the "
        "Section V-B / V-C numbers at the same targets (see FIG5 and FIG6 notes).",
        "The abstract says 'CANNA achieves', Section I 'GTA achieves' for the training pair.",
        "The conclusion's pair is 'with less than 2% quality loss', read as the 2% target.",
    ),
}

# ---------------------------------------------------------------------------------------------
# The paper's four claims the suite tests.
# ---------------------------------------------------------------------------------------------
CLAIMS = {
    "a": {"claim": "Quality loss grows as the tuning bits shrink (uniform training): none down to 4 "
                   "bits, then 0.9, 1.3, 1.7, 3.2 % at 3, 2, 1, 0 bits.",
          "source": "Table I; Section IV-B1 text",
          "quote": "This result shows that increasing the level of hardware approximation does not "
                   "automatically imply a degradation in classification accuracy. [...] Increasing the "
                   "level of approximation to no tuning bits further accelerates the training by 5.1x and "
                   "results in 7.9x energy efficiency improvement with 3.2% quality loss."},
    "b": {"claim": "At equal quality loss, GTA reaches a higher approximation hit rate (and efficiency) "
                   "than uniform training approximation.",
          "source": "Section V-B text; Table IV; Fig. 5",
          "quote": "at the same level of accuracy, the GTA always outperforms the efficiency of the "
                   "uniform approximation. This higher efficiency of comes from GTA ability to put the "
                   "GPGPU in approximate mode for higher portion of time (as compared to uniform "
                   "approximation, as shown in Table IV)."},
    "c": {"claim": "The first and last layers are the most sensitive to approximation; hidden layers "
                   "up to 3x less.",
          "source": "Section IV-C text; Table II; Table V",
          "quote": "This result shows that the first and the last layers have the highest sensitivity "
                   "to approximation, while the hidden layers could have up to 3x lower sensitivity."},
    "d": {"claim": "At equal QoS, layer-based inference approximation beats uniform approximation in "
                   "energy and speedup.",
          "source": "Section IV-C text; Section V-C text; Fig. 6",
          "quote": "These improvements are respectively 1.6x and 1.8x higher than running NN with "
                   "uniform approximation. [...] the layer-based (uniform) approximation could achieve "
                   "3.27x (1.86x) higher energy efficiency and 2.25x (1.38x) speedup"},
}

# ---------------------------------------------------------------------------------------------
# Hyper-parameters and setup.
# ---------------------------------------------------------------------------------------------
#: Section V-A. Keys as canna.nn.train.PRESETS (lr, momentum, batch_size, dropout) plus the rest.
HYPERPARAMETERS = {
    "optimizer": "SGD with momentum",  # [41]
    "lr": 0.001,
    "momentum": 0.1,
    "batch_size": 10,
    "dropout": 0.5,  # "applied to hidden layers"
    "activation": "ReLU",
    "relu_clamp": 6.0,  # "Rectified Linear Unit clamped at 6"
    "output": "softmax",  # "applied to the output layer"
    "epochs": None,  # not stated
}
HYPERPARAMETERS_INFO = {
    "source": "Section V-A text",
    "values": HYPERPARAMETERS,
    "quote": ("Stochastic gradient descent with momentum [41] is used for training. The momentum is "
              "set to 0.1, the learning rate is set to 0.001, and a batch size of 10 is used. Dropout "
              "[42] with drop rate of 0.5 is applied to hidden layers to avoid over-fitting. The "
              "activation functions are set to \"Rectified Linear Unit\" clamped at 6. A \"Softmax\" "
              "function is applied to the output layer."),
    "notes": ("The number of epochs / iterations, the initialisation and the loss are not stated "
              "(Fig. 3a shows 1000 training iterations of MNIST).",),
}

#: Section IV-B2 (GTA) values the paper states; THR's formula is not given.
GTA_PARAMETERS = {
    "start_tuning_bits": 0,  # "starts the training from the hardware with maximum level of approximation (zero tuning bits)"
    "slope_window_iterations": 50,  # "measuring the slope of classification accuracy over last 50 iterations"
    "step_tuning_bits": 1,  # "reduces the level of approximation by a single step"
}
GTA_PARAMETERS_INFO = {
    "source": "Section IV-B2 text",
    "values": GTA_PARAMETERS,
    "notes": ("THR's update from (iter, iter_max, δ, Apx_min) is described, not given as a formula.",),
}

#: Section III and V-A: the evaluated hardware, for the record (not compared against).
SETUP = {
    "source": "Section III text; Section V-A text",
    "gpu": "AMD Southern Islands, Radeon HD 7970",
    "streaming_cores": 2048,
    "compute_units": 32,
    "simd_per_cu": 4,
    "lanes_per_simd": 16,
    "simulator": "multi2sim (cycle accurate)",
    "technology_nm": 45,
    "max_error_pct_first_bit_unused": 100,  # Section III: selecting one mantissa: "maximum possible error ... 100%"
    "max_error_pct_first_bit_used": 50,  # "... with a maximum error of 50%"
}

# ---------------------------------------------------------------------------------------------
# Accessors.
# ---------------------------------------------------------------------------------------------
TABLES = {
    "table1": TABLE_I, "table2": TABLE_II, "table3": TABLE_III, "table4": TABLE_IV, "table5": TABLE_V,
    "fig5": FIG5, "fig6": FIG6, "headline": HEADLINE,
    "claims": {"source": "Section IV-B1 text; Section IV-C text; Section V-B text; Section V-C text",
               "claims": CLAIMS},
    "hyperparameters": HYPERPARAMETERS_INFO, "gta": GTA_PARAMETERS_INFO, "setup": SETUP,
}

_ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5"}


def table(name: str) -> dict:
    """One of :data:`TABLES` by name: ``"table4"``, ``"Table IV"``, ``"IV"``, ``"4"``, ``"fig5"``,
    ``"Fig. 5"``, ``"headline"``, ``"claims"``, ``"hyperparameters"``, ``"gta"``, ``"setup"``."""
    key = str(name).strip().lower().replace(" ", "").replace(".", "").replace("_", "")
    if key.startswith("figure"):
        key = "fig" + key[len("figure"):]
    if key.startswith("table"):
        key = key[len("table"):]
    key = _ROMAN.get(key, key)
    if key.isdigit():
        key = "table" + key
    if key not in TABLES:
        raise KeyError(f"unknown paper table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[key]


def paper_name(dataset: str) -> str:
    """The paper's name of our dataset ``dataset`` (KeyError if the paper has no such application)."""
    return DATASET_NAMES[dataset]


def table4_cell(application: str, target_pct: int) -> dict:
    """Table IV's cell for an application (ours, e.g. ``"mnist"``, or the paper's ``"MNIST"``)."""
    return TABLE_IV["rows"][DATASET_NAMES.get(application, application)][target_pct]


def fig_value(fig: str, design: str, metric: str, target_pct: int):
    """The number the text states for Fig. 5 / 6 (``fig`` ``"fig5"`` or ``"fig6"``), or None."""
    for e in table(fig)["entries"]:
        if (e["design"], e["metric"], e["target_pct"]) == (design, metric, target_pct):
            return e["value"]
    return None
