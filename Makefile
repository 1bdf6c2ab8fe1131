# Two entry points, each self-installing into .venv (idempotent: a stamp per
# step, redone only when the requirement files it depends on change).
#   make demo   short MixedAE pre-training on Fashion-MNIST (CPU, ~16 min + first install ~15)
#   make test   the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# every install is constrained by the pinned runtime stack (numpy < 2, ...)
PIN := -c requirements/runtime.txt
DATA := data/fashion_mnist
DEMO_CONFIG := configs/mixedae/mixedae_vit-tiny-p4_1xb128-coslr-3e_fashion-mnist-32px.py
DEMO_WORK_DIR := work_dirs/demo

.PHONY: venv data test demo clean

venv: $(VENV)/.stamp-package

# 1. torch first, with the build tools mmcv's setup.py imports.
$(VENV)/.stamp-torch: requirements/build.txt requirements/runtime.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIN) -r requirements/build.txt
	touch $@

# 2. mmcv 2.1.0 with its ops, compiled against that torch (~10 min on 2
#    cores the first time; pip's wheel cache makes later installs instant).
$(VENV)/.stamp-mmcv: $(VENV)/.stamp-torch requirements/mminstall.txt
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install $(PIN) --no-build-isolation \
		"$$(grep -E '^mmcv==' requirements/mminstall.txt)"
	touch $@

# 3. the rest of the stack, then this package in editable mode.
$(VENV)/.stamp-package: $(VENV)/.stamp-mmcv requirements/mminstall.txt \
		requirements/runtime.txt requirements/tests.txt requirements/optional.txt setup.py
	$(PIP) install $(PIN) -r requirements/runtime.txt -r requirements/mminstall.txt \
		-r requirements/tests.txt -r requirements/optional.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

# Fashion-MNIST into $(DATA) (`make demo DATA=DIR` trains on DIR) from
# Debian's dataset-fashion-mnist (installed when missing and run as root),
# else an error saying how to get it. No stamp: the script checks the files
# on every run (four stat calls) and prepares only what is missing.
data: $(VENV)/.stamp-package
	$(PY) tools/dataset_converters/prepare_fashion_mnist.py --out-dir $(DATA)

test: venv data
	$(PY) -m pytest tests -q

demo: venv data
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR) \
		--cfg-options train_dataloader.dataset.data_root=$(DATA)
	$(PY) tools/analysis_tools/plot_training_curves.py \
		"$$(ls -t $(DEMO_WORK_DIR)/*/vis_data/scalars.json | head -n 1)" \
		--out $(DEMO_WORK_DIR)/training_curves.png --title 'make demo'
	$(PY) tools/visualization/vis_mixing.py $(DEMO_CONFIG) \
		"$$(cat $(DEMO_WORK_DIR)/last_checkpoint)" --out-dir $(DEMO_WORK_DIR)/vis_attention \
		--cfg-options train_dataloader.dataset.data_root=$(DATA)

# the default data folder only: `make clean DATA=...` must not delete a
# folder of the user's
clean:
	rm -rf $(VENV) data/fashion_mnist work_dirs
