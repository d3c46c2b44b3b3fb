"""Point-in-time-correct seller feature store: `fs_seller_*` tables at grain (dt_ref, seller_id).

Contract (docs: ../shared/DESIGN.md): a feature row for `dt_ref` only uses facts known strictly
before `dt_ref 00:00`; a fact is known at its own time (order at purchase, delivery at delivery,
hand-over at hand-over, a review's score and comment at its answer - `review_answer_timestamp`,
not the creation date, which is when the survey was sent - and "not delivered by the estimated
date" from the day after that date). `order_status` is a snapshot taken at extraction, never a
point-in-time fact: no feature reads it. Windows are half-open `[dt_ref - N days, dt_ref)`
with N in `Settings.feature_windows` (30/90/180), plus lifetime columns. tests/features/test_truncation.py
checks it the strong way: the data cut at a date as it looked then gives the same rows before the cut.

Rows: a seller has a row at dt_ref from the day after its first sale until it has been
inactive for longer than the longest window (180 days): exactly the (dt_ref, seller) pairs
with at least one order (any status) in `[dt_ref - 180d, dt_ref)`. A seller without recent
sales has no behaviour to describe in any window, so its absence *is* the signal; every table
shares this spine, so they join 1:1.

One `.sql` file per table (header `-- grain: (dt_ref, seller_id)`), a Jinja template portable
between DuckDB and Spark through `render` (window loops, the shared `running_sums` macro, DAYNUM /
EXPLODE_RANGE mapped per engine). `catalog()` documents every column; problems name columns
through the catalog's entries (`catalog.F`). Each query turns facts into +/- deltas per (seller,
day), takes running sums once per delta day and spreads each result over the dt_refs up to the
seller's next delta day; facts that cannot reach the requested dt_refs are pruned, so a one-day
incremental run stays small and gives the same bits as a full rebuild.
"""

from .build import (
    CADENCES,
    READS,
    BuildReport,
    TableBuild,
    check_cadence,
    compute,
    dt_ref_spine,
    prepare,
    resolve_tables,
)
from .catalog import FEATURE_TABLES, KEY_COLUMNS, F, Feature, FeatureDoc, catalog
from .render import ENGINES, render
from .retrieval import as_of, available_dt_refs, feature_columns, feature_frame_sql


def build(
    settings, *, start=None, end=None, cadence: str = "daily", tables=None, full: bool = False, progress: bool = False
) -> BuildReport:
    """Build the feature tables for every `cadence` dt_ref in [start, end] (default: the data's range),
    incrementally (`full=True` recomputes the range), on the engine `settings.engine` chooses: DuckDB
    (`features.build`) or Spark over the lake's tables (`olist_ml.spark.features`). The dispatch lives
    here, above both engines, so that neither imports the other."""
    from ..errors import UnknownNameError
    from .build import build as build_duckdb

    engine = (settings.engine or "duckdb").lower()
    if engine not in ENGINES:
        raise UnknownNameError(f"unknown engine {settings.engine!r}: valid engines are {', '.join(ENGINES)}")
    kw = dict(start=start, end=end, cadence=cadence, full=full, progress=progress)
    if engine == "spark":
        from ..spark.features import build_spark

        check_cadence(cadence)
        return build_spark(settings, tables=resolve_tables(tables), **kw)
    return build_duckdb(settings, tables=tables, **kw)


__all__ = [
    "CADENCES",
    "F",
    "FEATURE_TABLES",
    "KEY_COLUMNS",
    "READS",
    "BuildReport",
    "Feature",
    "FeatureDoc",
    "TableBuild",
    "as_of",
    "available_dt_refs",
    "build",
    "catalog",
    "compute",
    "dt_ref_spine",
    "feature_columns",
    "feature_frame_sql",
    "prepare",
    "render",
    "resolve_tables",
]
