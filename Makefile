# olist-ml: everything installs through this file (uv, locked versions in uv.lock).
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON_DOWNLOADS := never
export MLFLOW_DISABLE_TELEMETRY := true
PYTEST_ARGS ?=

.PHONY: install install-run browser run lint test test-slow test-spark-cluster spark-jars bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# the development environment: the package, the `spark` extra (PySpark, ~490 MB) and the test tools;
# what `make test`, `make bench` and CI use (uv sync is exact: it removes what is not listed here)
install: $(UV)
	$(UV) sync --frozen --python $(PYTHON) --extra spark --extra dev

# the runtime only (no PySpark, no test tools): what `make run` installs in a fresh clone; --inexact keeps
# extras an existing development environment already has
install-run: $(UV)
	$(UV) sync --frozen --python $(PYTHON) --inexact

# the whole pipeline; synthetic data unless DATA=<folder or zip of the Olist CSVs>
run: install-run
	.venv/bin/olist-ml run $(if $(DATA),--data $(DATA))

# headless Chromium for the report-rendering test (Debian package; needs root/sudo, else that test skips)
browser:
	@bash scripts/install-browser.sh || echo "warning: chromium not installed: the report rendering test will skip"

# ruff: lint and format (line length 120, rules in pyproject.toml); `ruff format .` fixes the layout
lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# the default suite (the one .ci/run runs): lint, then every test not marked slow
test: install browser lint
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# the tests marked slow (Spark/DuckDB parity runs, clean environments built from a model's requirements)
test-slow: install
	.venv/bin/python -m pytest -m slow $(PYTEST_ARGS)

# the Spark tests once more with separate executor JVMs on this machine (local-cluster: 2 workers, 1 core,
# 1 GiB each; works with the pip PySpark; its workers log under the installed pyspark's work/ folder); not part
# of `make test` (it doubles the Spark tests' time)
test-spark-cluster: install
	SPARK_TEST_MASTER='local-cluster[2,1,1024]' .venv/bin/python -m pytest -m spark $(PYTEST_ARGS)

# the Delta Lake jars for the pinned PySpark and delta-spark (io.delta:delta-spark_4.2_2.13:4.4.0 and its own
# dependencies, 8 jars, 13 MB) fetched from Maven Central into Spark's Ivy cache (~/.ivy2.5.2) by the resolver the
# Spark session itself uses (spark.jars.packages), so later sessions start without downloading; the Spark tests
# (their session enables Delta) fetch them on first use otherwise. Not `mvn dependency:get`: Ivy reads ~/.m2
# first and fails on a POM there whose jar Maven did not download (a version Maven mediated away).
spark-jars: install
	.venv/bin/python -c "from olist_ml.config import Settings; from olist_ml.spark.session import get_spark, stop_spark; get_spark(Settings(spark_table_format='delta')); stop_spark()"

# every benchmark (most need OLIST_DATA_DIR=<folder of the real Olist CSVs>)
bench: install
	@test -n "$(OLIST_DATA_DIR)" || { echo "set OLIST_DATA_DIR to the real Olist data folder"; exit 2; }
	for b in benchmarks/bench_*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .olist_ml .pytest_cache
