# CANNA: every target creates the virtual environment and installs the project (with its dev
# extras) on first use, so a fresh machine needs nothing but Python >= 3.11, gcc and make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CANNA  := $(VENV)/bin/canna
STAMP  := $(VENV)/.installed-stamp

.PHONY: all install test test-long test-rtl-long sim paper bench verilog synth activity fpga formal formal-long clean distclean help

all: test

help:
	@echo "make test       the regression suite (golden vs SoftFloat, matmul paths, CLI)"
	@echo "make test-long  the long regressions (>= 10M SoftFloat vectors)"
	@echo "make test-rtl-long  10M vectors through the Verilated CFPU (cocotb)"
	@echo "make sim        the main job: CFPU hit-rate table; exact / uniform / GTA training and"
	@echo "                layer-based inference on digits; inference on the RTL lane array with"
	@echo "                cycles and energy (makes build/synth and build/activity first if missing)"
	@echo "make paper      canna reproduce, quick profile: the paper's tables and figures beside ours on"
	@echo "                digits (and Fashion-MNIST when installed), 3 seeds; build/paper/report.md"
	@echo "make bench      fast approximate matmul vs native GEMM (ratios); MAC/s of every array backend;"
	@echo "                lane-array accounting vs the matmul it accounts; a Fashion-MNIST epoch with"
	@echo "                accounting vs without (needs apt-get install dataset-fashion-mnist)"
	@echo "make verilog    CFPU and exact multiplier Verilog under build/verilog, linted"
	@echo "make synth      Yosys synthesis: area, transistors, CFPU overhead (LIBERTY=file.lib)"
	@echo "make activity   switching activity per submodule, exact vs approximate operations"
	@echo "make fpga       ECP5 synthesis + place and route (nextpnr): LUT/FF/DSP, Fmax, measured exact_cycles"
	@echo "make formal     formal proofs (SymbiYosys): hit rule, stream protocol, lane counters (fast set)"
	@echo "make formal-long  every proof, all 47 configurations at full depth"
	@echo "make install    only create $(VENV) and install the project"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 needed, found " + sys.version)'
	@command -v g++ >/dev/null || { echo "g++ is needed for the Verilator builds (Debian: apt-get install g++)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-long: $(STAMP)
	CANNA_SOFTFLOAT_VECTORS=10000000 $(PY) -m pytest tests/sim/test_golden_exact.py

test-rtl-long: $(STAMP)
	CANNA_RTL_VECTORS=10000000 $(PY) -m pytest -s tests/sim/test_cosim_verilator.py -k regression

# The energy model reads the measured switching activity and the synthesized lane area; they are
# made once (and again when the RTL changes).
HW_SOURCES := $(wildcard spec/*.py hw/*.py)

build/synth/synth.json: $(STAMP) $(HW_SOURCES) scripts/synth.py sim/rtl_build.py
	$(PY) scripts/synth.py

build/activity/activity.json: $(STAMP) $(HW_SOURCES) scripts/activity.py sim/rtl_build.py
	$(PY) scripts/activity.py --streams mlp

sim: $(STAMP) build/synth/synth.json build/activity/activity.json
	$(CANNA) workload --json build/workload.json
	$(PY) -m canna.nn.main_job --quiet --out build/sim

# Fashion-MNIST joins when Debian's dataset-fashion-mnist is installed (apt-get install it).
FASHION_DIR := /usr/share/datasets/fashion-mnist
comma := ,
PAPER_DATASETS := digits$(if $(wildcard $(FASHION_DIR)/train-images-idx3-ubyte*),$(comma)fashion-mnist)

paper: $(STAMP) build/synth/synth.json build/activity/activity.json
	@test -n "$(wildcard $(FASHION_DIR)/train-images-idx3-ubyte*)" || echo "make paper: Fashion-MNIST not installed, digits only (apt-get install dataset-fashion-mnist)"
	$(CANNA) reproduce --dataset $(PAPER_DATASETS) --jobs 2 --out build/paper

bench: $(STAMP)
	$(PY) scripts/bench.py
	$(PY) scripts/bench_array.py
	$(PY) scripts/bench_accounting.py --json build/bench_accounting.json
	$(PY) scripts/bench_epoch.py --json build/bench_epoch.json
	$(PY) scripts/bench_step.py --json build/bench_step.json
	$(PY) scripts/bench_step_torch.py --epoch --json build/bench_step_torch.json

fpga: $(STAMP)
	$(PY) scripts/fpga.py

formal: $(STAMP)
	$(PY) -m canna.formal

formal-long: $(STAMP)
	$(PY) -m canna.formal --long

verilog: $(STAMP)
	$(PY) scripts/verilog.py

synth: $(STAMP)
	$(PY) scripts/synth.py $(if $(LIBERTY),--liberty $(LIBERTY))

activity: $(STAMP)
	$(PY) scripts/activity.py

clean:
	rm -rf build .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
