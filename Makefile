# Two commands on a fresh machine:  `make demo`  and  `make test`  (each sets up first if needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lt_det_installed
DEMO_OUT ?= output/demo

.PHONY: setup demo data test clean

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

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) output datasets/synthetic_lt
