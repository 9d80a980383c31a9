# kiridashi — the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CI installs every optional extra (torch, segment-anything, ultralytics, ray, the server's
# FastAPI stack and playwright) so their tests run.
EXTRAS ?= $(if $(CI),dev$(comma)all,dev)
comma  := ,
# the default run skips tests marked slow; CI runs them too (it has 90 minutes)
PYTEST_ARGS ?= $(if $(CI),,-m "not slow")

.PHONY: venv demo test test-all lint format params bench clean-outputs release

$(BIN)/.installed-$(subst $(comma),-,$(EXTRAS)): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	# ultralytics pulls the plain opencv-python wheel; the contrib build must own cv2
	$(BIN)/python -m pip install -q --force-reinstall --no-deps "opencv-contrib-python>=4.8,<5"
	touch $@

venv: $(BIN)/.installed-$(subst $(comma),-,$(EXTRAS))

# 1) Build the demo dataset and run the whole DVC pipeline on it.
demo: venv
	$(BIN)/kiridashi demo data/input
	@git rev-parse --verify -q HEAD >/dev/null || { echo "dvc needs a git commit: run from a clone"; exit 1; }
	# track the input folder with DVC: experiments queued with `dvc exp run --queue` run in
	# temporary copies of the repo that only hold what git or DVC tracks
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc add -q data/input
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo
	@echo "crops:       data/output/crops/"
	@echo "masks:       data/output/masks/"
	@echo "results:     data/output/extraction_results.json"
	@echo "metrics:     reports/metrics.json"
	@echo "report:      data/eval/unified_quality_report.json"
	@echo "dashboard:   data/eval/dashboard.html"

# 2) The test suite (CI: `bash .ci/run` calls exactly this).
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: venv
	$(BIN)/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# Recompose params.yaml from conf/ (the source of truth).
params: venv
	$(BIN)/kiridashi params

bench: venv
	$(BIN)/python -m bench.run_all

# A release: `make release VERSION=x.y.z` checks a clean tree (and no image under data/ in git),
# measures the pipeline on the demo set, writes the version, prepends its CHANGELOG.md entry,
# commits and tags vX.Y.Z (see kiridashi/release.py). Run `make venv` first.
RELEASE_DEMO_N ?= 16
release:
	$(BIN)/python -m kiridashi.release "$(VERSION)" --demo-n $(RELEASE_DEMO_N) --repo "$(CURDIR)"

clean-outputs:
	rm -rf data/work data/output data/eval
