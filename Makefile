# Two commands on a fresh machine:  `make demo`  and  `make test`  (each sets up first if needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lt_det_installed
DEMO_OUT ?= output/demo

.PHONY: setup demo data bench test clean

setup: $(STAMP)

# The venv is rebuilt only when the install recipe changes.
$(STAMP): requirements.txt setup.py tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	$(PY) tools/install_detectron2.py
	$(PY) -m pip install --disable-pip-version-check -e ".[test]"
	touch $@

data: setup
	$(PY) datasets/prepare_synthetic_lt.py

demo: data
	$(PY) train_net.py --config-file configs/demo/mask_rcnn_R_18_FPN_synthetic_lt.yaml \
		OUTPUT_DIR $(DEMO_OUT)

# The benchmark (docs/benchmark.md): every method, 3 seeds; `make bench QUICK=1`: a few methods, one
# seed, a short schedule. Finished cells are cached in output/benchmark/cells: re-running resumes.
bench: setup
	$(PY) tools/benchmark.py $(if $(QUICK),--profile quick,)

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) output datasets/synthetic_lt
