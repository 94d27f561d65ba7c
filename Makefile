# Two commands on a fresh machine:  `make demo`  and  `make test`  (each sets up first if needed).
PYTHON ?= python3
# Which detectron2 (tools/install_detectron2.py), each in its own venv:
#   (empty)  upstream git main built with its extension where reachable, else the registry's 0.6;
#   D2=0.6   the registry's 0.6 release, Python only;        venv .venv-0.6
#   D2=main  the snapshot of detectron2 main in third_party/, Python only;   venv .venv-main
D2 ?=
VENV := .venv$(if $(D2),-$(D2),)
D2_MAIN_SNAPSHOT := third_party/detectron2-main-02b5c4e.tar.gz
D2_INSTALL_ARGS_0.6 := --release
D2_INSTALL_ARGS_main := --source $(D2_MAIN_SNAPSHOT) --python-only
ifneq ($(D2),)
ifndef D2_INSTALL_ARGS_$(D2)
$(error D2=$(D2) is not a detectron2 this Makefile installs: use D2=0.6, D2=main or no D2)
endif
endif
# Every package the set-up installs is pinned (the versions tested); pip reads this for every install.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lt_det_installed

.PHONY: setup demo data bench test clean

setup: $(STAMP)

# The venv is rebuilt only when the install recipe changes.
$(STAMP): requirements.txt constraints.txt setup.py tools/install_detectron2.py $(D2_MAIN_SNAPSHOT)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	$(PY) tools/install_detectron2.py $(D2_INSTALL_ARGS_$(D2))
	$(PY) -m pip install --disable-pip-version-check -e ".[test]"
	touch $@

data: setup
	$(PY) datasets/prepare_synthetic_lt.py

# `make demo SHORT=1`: a first look, a quarter of the schedule (configs/demo/*_short.yaml). Both
# write to their config's OUTPUT_DIR (output/demo, output/demo_short).
DEMO_CONFIG := configs/demo/mask_rcnn_R_18_FPN_synthetic_lt$(if $(SHORT),_short,).yaml
demo: data
	$(PY) train_net.py --config-file $(DEMO_CONFIG)

# The benchmark (docs/benchmark.md): every method, 3 seeds; `make bench QUICK=1`: a few methods, one
# seed, a short schedule. Finished cells are cached in output/benchmark/cells: re-running resumes.
bench: setup
	$(PY) tools/benchmark.py $(if $(QUICK),--profile quick,)

# With D2 set, the suite also asserts that it runs on that detectron2 (tests/test_compat.py).
test: setup
	LT_DET_EXPECT_DETECTRON2=$(D2) $(PY) -m pytest -q tests

clean:
	rm -rf .venv .venv-0.6 .venv-main output datasets/synthetic_lt
