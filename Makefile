# Two entry points a user needs: `make demo` (the main job) and `make test`.
# Both bootstrap .venv; CPU torch is installed first so nothing pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output
# The MONAI Deploy App SDK (about 1 GB with holoscan) lives in its own venv, so that neither the demo nor
# the core tests pay for it; `make test` still runs the deploy-app tests there.
DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed

.PHONY: venv demo test chromium test-deploy deploy-demo bench results lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,onnx,tracking,report]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/cxrkd demo --output_dir $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .

$(DEPLOY_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --upgrade pip
	$(DEPLOY_VENV)/bin/pip install --quiet torch==2.13.0
	$(DEPLOY_VENV)/bin/pip install --quiet -e ".[test,onnx,tracking,report,deploy]"
	touch $(DEPLOY_STAMP)

# The report's browser test renders in headless Chromium (Debian package); installed here where root and apt-get are
# available, quietly, and never failing the build: without it that test is skipped with its reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } \
		>/dev/null 2>&1; } || echo "Chromium not installed: the report's browser test will be skipped."

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -ra -n auto --dist loadfile --timeout=900 --durations=25
	$(MAKE) test-deploy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Real-data results (FracAtlas; writes docs/results.md; not part of `make test`): teacher, AALS and no-sharpening
# students and a peer image-level classifier, 3 seeds each, pretrained EfficientNet-Lite0 at 256 px, patient-level
# intervals; hours on 2 CPU cores (docs/results.md gives the last run's steps), resumable (run it again with the same RESULTS_DIR to continue).
# Extra options go in RESULTS_ARGS, e.g. RESULTS_ARGS="--single_seed_arms True" (symmetric and MIL students too),
# or VKD against its baseline on a paired image-report datalist:
# RESULTS_ARGS="--task vkd --datalist /data/openi/datalist_vkd.json".
RESULTS_DIR ?= runs/results
RESULTS_ARGS ?=
results: $(STAMP)
	$(BIN)/python -m cxrkd_monai.jobs.results --output_dir $(RESULTS_DIR) $(RESULTS_ARGS)

test-deploy: $(DEPLOY_STAMP)
	$(DEPLOY_VENV)/bin/python -m pytest -q -ra --timeout=900 tests/deploy/test_apps.py tests/deploy/test_structured_report.py \
		tests/deploy/test_app_requirements.py

# Optional, after `make demo`: both MONAI Deploy apps on the DICOM studies the demo wrote, with the bundles it
# exported; prints where each DICOM SR and JSON result is ($(DEMO_DIR)/deploy/) and the SR's findings.
deploy-demo: $(DEPLOY_STAMP)
	$(DEPLOY_VENV)/bin/python -m cxrkd_monai.deploy.demo_apps --demo_dir $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
