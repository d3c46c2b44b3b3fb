# olist-ml: everything installs through this file (uv, locked versions in uv.lock).
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON_DOWNLOADS := never
export MLFLOW_DISABLE_TELEMETRY := true
PYTEST_ARGS ?=

.PHONY: install browser run test bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# one environment for running and testing (uv sync is exact: same extras everywhere)
install: $(UV)
	$(UV) sync --frozen --python $(PYTHON) --all-extras

# the whole pipeline; synthetic data unless DATA=<folder or zip of the Olist CSVs>
run: install
	.venv/bin/olist-ml run $(if $(DATA),--data $(DATA))

# headless Chromium for the report-rendering test (Debian package; needs root/sudo, else that test skips)
browser:
	@bash scripts/install-browser.sh || echo "warning: chromium not installed: the report rendering test will skip"

# the default suite (the one .ci/run runs)
test: install browser
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# every benchmark (most need OLIST_DATA_DIR=<folder of the real Olist CSVs>)
bench: install
	@test -n "$(OLIST_DATA_DIR)" || { echo "set OLIST_DATA_DIR to the real Olist data folder"; exit 2; }
	for b in benchmarks/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .olist_ml .pytest_cache
