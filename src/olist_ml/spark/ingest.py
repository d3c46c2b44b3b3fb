"""Validated ingestion with Spark: raw Olist CSVs -> `stg_*` lake tables, under the same contract as
the DuckDB ingest (`olist_ml.ingest`, `olist_ml.schema`).

Shared with the DuckDB ingest, not re-implemented: resolving SOURCE (folder, or a zip extracted on
the driver under the same size/ratio caps), the file pre-checks (header, encoding, binary/HTML,
gzip), the value rules and their reasons (`ingest.value_rules`: missing values, time zones, casts,
non-finite numbers, the bounds of `schema.py`, the date window from the orders' quartiles via
`ingest.window_from_quartiles`), the duplicate-key rule (first occurrence kept), the cross-table
checks (`ingest.cross_checks`), the content hash, the run record (`ingest.run_record`) and the report
types: only public names of `olist_ml.ingest` (docs/ingest.md).

Spark specifics:
- each file is read by one task (multi-line CSV, which the reviews' quoted newlines need, is not
  split), so record order is file order; the quarantine's `line` is the same 1-based physical line
  as on DuckDB (2 + record index + newlines inside quoted values before it);
- a record with too few or too many fields is "malformed CSV record: not N fields" (DuckDB names its
  own reader's error instead); a malformed record is quarantined once, like on DuckDB;
- casts follow DuckDB's where the two differ on plausible input: an integer column accepts "1.0"
  and "1e3" (rounded, as DuckDB does); "infinity" in a date column is a date outside the window;
- on a cluster (any master but local[...] / local-cluster[...]) the executors cannot read the
  driver's disk: the raw files are first copied to `<lake>/_staging/raw-<run>/` and removed afterwards;
- atomicity: every table is staged first; only when all of them (and --strict) pass are they
  renamed into place (per-table atomic renames; see `olist_ml.spark.lake`). Other lake tables
  (feature store, ABTs, scores) stay; their lineage tells the next steps what is stale.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from datetime import datetime
from pathlib import Path

import pandas as pd

from .. import ingest as I
from ..config import Settings
from ..errors import InputError
from ..schema import SOURCES, SOURCES_BY_KEY, Column, SourceTable
from .lake import Lake
from .session import get_spark
from .warehouse import read_meta, write_meta

QUARANTINE_SCHEMA = "file STRING, line BIGINT, column STRING, reason STRING, raw_value STRING"
RUNS_COLUMNS = list(I.RUN_COLUMNS)
RUNS_SCHEMA = (
    "run_id STRING, started_at TIMESTAMP, finished_at TIMESTAMP, source STRING, source_kind STRING, "
    "content_hash STRING, strict BOOLEAN, rows_loaded BIGINT, rows_quarantined BIGINT, table_counts STRING, "
    "checks STRING, warnings STRING, skipped STRING, olist_ml_version STRING"
)
_SPARK_TYPES = {
    "VARCHAR": "STRING",
    "INTEGER": "INT",
    "DOUBLE": "DOUBLE",
    "TIMESTAMP": "TIMESTAMP_NTZ",
    "DATE": "DATE",
    "BOOLEAN": "BOOLEAN",
}
_INF = {"infinity", "+infinity", "inf", "+inf"}
_NEG_INF = {"-infinity", "-inf"}


# ---- reading and typing ----------------------------------------------------------------------------
def _read(spark, uri: str, header: list[str]):
    """Every column as text, file order, one row per CSV record (malformed ones flagged in `_corrupt`)."""
    from pyspark.sql import functions as F

    schema = ", ".join(f"`{h}` STRING" for h in header) + ", _corrupt STRING"
    df = (
        spark.read.options(
            header=True,
            multiLine=True,
            quote='"',
            escape='"',
            mode="PERMISSIVE",
            columnNameOfCorruptRecord="_corrupt",
            encoding="UTF-8",
        )
        .schema(schema)
        .csv(uri)
    )
    # a multi-line CSV file is never split: one partition, so the ids are 0..n-1 in file order
    return df.withColumn("_rec", F.monotonically_increasing_id())


def _typed_column(c: Column):
    """(typed value, raw text, zone flag) columns for one schema column."""
    from pyspark.sql import functions as F

    raw = F.col(f"`{c.source}`")
    if c.type == "VARCHAR":
        return raw, raw, None
    if c.type == "INTEGER":  # DuckDB reads "1.0" and "1e3" as integers (rounding "3.5" to 4): so does this
        v = F.coalesce(
            F.expr(f"try_cast(`{c.source}` AS INT)"),
            F.expr(f"try_cast(round(try_cast(`{c.source}` AS DOUBLE)) AS INT)"),
        )
        return v, raw, None
    if c.type in ("DOUBLE", "BOOLEAN"):
        return F.expr(f"try_cast(`{c.source}` AS {_SPARK_TYPES[c.type]})"), raw, None
    # TIMESTAMP / DATE: a value with a zone is converted to LOCAL_TZ local time; "infinity" is far outside
    # the window (DuckDB types it and the window rule rejects it)
    ty = _SPARK_TYPES[c.type]
    zone = F.coalesce(raw.rlike(I.ZONE_RE), F.lit(False))
    zoned = F.expr(f"try_cast(regexp_replace(trim(`{c.source}`), '\\\\s+([+-][0-9])', '$1') AS TIMESTAMP_LTZ)")
    conv = F.from_utc_timestamp(zoned, I.LOCAL_TZ).cast("timestamp_ntz").cast(ty)
    low = F.lower(F.trim(raw))
    far = F.lit("9999-12-31 23:59:59.999999" if c.type == "TIMESTAMP" else "9999-12-31").cast(ty)
    near = F.lit("0001-01-01 00:00:00" if c.type == "TIMESTAMP" else "0001-01-01").cast(ty)
    v = (
        F.when(zone, conv)
        .when(low.isin(*_INF), far)
        .when(low.isin(*_NEG_INF), near)
        .otherwise(F.expr(f"try_cast(`{c.source}` AS {ty})"))
    )
    return v, raw, zone


def _typed(df, spec: SourceTable):
    """Typed view of every record, keeping the raw text of cast columns (names as in `olist_ml.ingest.load`)."""
    from pyspark.sql import functions as F

    cols = [F.col("_rec"), F.col("_corrupt")]
    for c in spec.columns:
        v, raw, zone = _typed_column(c)
        if c.type == "VARCHAR":
            cols.append(v.alias(c.name))
            continue
        cols.append(raw.alias(f"_raw_{c.name}"))
        if zone is not None:
            cols.append(zone.alias(f"_tz_{c.name}"))
            cols.append(F.lower(F.trim(raw)).isin(*(_INF | _NEG_INF)).alias(f"_inf_{c.name}"))
        cols.append(v.alias(c.name))
    # newlines this record adds to the file beyond its own line (quoted values; the raw text when malformed)
    texts = [
        F.coalesce(
            F.length(F.col(f"`{c.source}`")) - F.length(F.regexp_replace(F.col(f"`{c.source}`"), "\n", "")), F.lit(0)
        )
        for c in spec.columns
    ]
    nl_fields = texts[0]
    for t in texts[1:]:
        nl_fields = nl_fields + t
    nl_bad = F.length(F.col("_corrupt")) - F.length(F.regexp_replace(F.col("_corrupt"), "\n", ""))
    cols.append(F.when(F.col("_corrupt").isNotNull(), nl_bad).otherwise(nl_fields).alias("_nl"))
    return df.select(*cols)


def _date_window(typed, col: str) -> tuple[str, str] | None:
    """The DuckDB load's date window on Spark: quartiles (discrete, like DuckDB's quantile_disc) of the anchor."""
    from pyspark.sql import functions as F

    c = F.col(col)
    q = (
        typed.where(c.isNotNull() & ~F.col(f"_inf_{col}"))
        .select(F.unix_micros(c.cast("timestamp_ltz")).alias("u"))
        .selectExpr(
            "percentile_disc(0.25) WITHIN GROUP (ORDER BY u) AS q1",
            "percentile_disc(0.75) WITHIN GROUP (ORDER BY u) AS q3",
        )
        .collect()[0]
    )
    if q[0] is None:
        return None
    epoch = dt.datetime(1970, 1, 1)
    return I.window_from_quartiles(
        epoch + dt.timedelta(microseconds=int(q[0])), epoch + dt.timedelta(microseconds=int(q[1]))
    )


def _condition(c: Column, rule: I.ValueRule):
    from pyspark.sql import functions as F

    v = F.col(c.name)
    raw = v if c.type == "VARCHAR" else F.col(f"_raw_{c.name}")
    cast_fail = raw.isNotNull() & v.isNull()
    if rule.kind == "missing":
        return raw.isNull()
    if rule.kind == "zone":
        return cast_fail & F.col(f"_tz_{c.name}")
    if rule.kind == "cast":
        return cast_fail
    if rule.kind == "nonfinite":
        return F.isnan(v) | (F.abs(v) == float("inf"))
    if rule.kind == "min":
        return v < F.lit(rule.bound)
    if rule.kind == "max":
        return v > F.lit(rule.bound)
    lo, hi = rule.bound
    return (v < F.lit(lo).cast("date")) | (v >= F.date_add(F.lit(hi).cast("date"), 1))


def _bad_values(typed, spec: SourceTable, window):
    """(_rec, col, reason, raw_value, ref_rec) per bad value (the DuckDB load's bad values, shared rules), in
    one pass over the rows: each row yields the failing columns of its own, exploded."""
    from pyspark.sql import functions as F

    checks = []
    for c in spec.columns:
        rules = I.value_rules(c, window)
        if not rules:
            continue
        conds = [_condition(c, r) for r in rules]
        reason = F.when(conds[0], F.lit(rules[0].reason))
        for cond, r in zip(conds[1:], rules[1:], strict=False):
            reason = reason.when(cond, F.lit(r.reason))
        raw = F.col(c.name) if c.type == "VARCHAR" else F.col(f"_raw_{c.name}")
        checks.append(
            F.when(
                reason.isNotNull(), F.struct(F.lit(c.name).alias("col"), reason.alias("reason"), raw.alias("raw_value"))
            )
        )
    malformed = F.struct(
        F.lit("").alias("col"),
        F.lit(f"malformed CSV record: not {len(spec.columns)} fields").alias("reason"),
        F.col("_corrupt").alias("raw_value"),
    )
    found = F.when(F.col("_corrupt").isNotNull(), F.array(malformed)).otherwise(
        F.filter(F.array(*checks), lambda x: x.isNotNull()) if checks else F.array().cast(F.array(malformed).dataType)
    )
    return typed.select("_rec", F.explode(found).alias("b")).select(
        "_rec", "b.col", "b.reason", "b.raw_value", F.lit(None).cast("bigint").alias("ref_rec")
    )


def _duplicates(typed, bad, spec: SourceTable):
    """Primary-key duplicates among the clean rows: first kept, later ones quarantined (`ref_rec` = first)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = list(spec.primary_key)
    if not key:
        return None
    names = ",".join(key)
    w = Window.partitionBy(*key).orderBy("_rec")
    clean = typed.join(bad.select("_rec").distinct(), "_rec", "left_anti")
    text = F.concat_ws(",", *[F.col(k).cast("string") for k in key])
    return (
        clean.select(
            "_rec",
            text.alias("raw_value"),
            F.row_number().over(w).alias("rn"),
            F.min("_rec").over(Window.partitionBy(*key)).alias("ref_rec"),
        )
        .where("rn > 1")
        .select(
            "_rec",
            F.lit(names).alias("col"),
            F.lit(f"duplicate primary key ({names})").alias("reason"),
            "raw_value",
            "ref_rec",
        )
    )


def _with_lines(typed, bad):
    """Physical line numbers for the quarantined records (and the first occurrence a duplicate names)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.orderBy("_rec").rowsBetween(Window.unboundedPreceding, -1)
    lines = typed.select("_rec", (F.lit(2) + F.col("_rec") + F.coalesce(F.sum("_nl").over(w), F.lit(0))).alias("line"))
    wanted = (
        bad.select("_rec").union(bad.where("ref_rec IS NOT NULL").select(F.col("ref_rec").alias("_rec"))).distinct()
    )
    lines = lines.join(F.broadcast(wanted), "_rec")
    out = bad.join(lines, "_rec", "left").join(
        lines.select(F.col("_rec").alias("ref_rec"), F.col("line").alias("ref_line")), "ref_rec", "left"
    )
    reason = F.when(
        F.col("ref_line").isNotNull(),
        F.concat(F.col("reason"), F.lit(" first seen at line "), F.col("ref_line").cast("string")),
    ).otherwise(F.col("reason"))
    return out.select("_rec", "line", "col", reason.alias("reason"), "raw_value")


def _missing(v) -> bool:
    """None or a pandas missing value (a null string can come back from toPandas as NaN)."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


# ---- one table ---------------------------------------------------------------------------------
class _TableLoad:
    """One table: read, typed, checked; its clean rows staged as a lake table."""

    def __init__(self, lake: Lake, spec: SourceTable, uri: str, header: list[str], shown: str, rep: I.TableReport):
        self.lake, self.spec, self.uri, self.header, self.shown, self.rep = lake, spec, uri, header, shown, rep
        self.stage: str | None = None  # the staged stg table (see Lake.stage)
        self.quarantine = None  # pandas: file, line, column, reason, raw_value

    def load(self, rules: I.Rules, translation=None) -> None:
        """`translation`: the staged translation table (DataFrame) that stg_products joins.

        Few Spark jobs per table (each costs a scheduling round trip): the date window (orders only),
        the bad values collected to the driver (this fills the cache), their line numbers (only when
        there are any), the row and time-zone counts (one aggregate over the cached rows) and the staged
        write."""
        from pyspark.sql import functions as F

        spark = self.lake.spark
        typed = _typed(_read(spark, self.uri, self.header), self.spec).cache()
        try:
            dates = [c.name for c in self.spec.columns if c.type in ("TIMESTAMP", "DATE")]
            if self.spec.key == I.DATE_ANCHOR[0]:
                rules.window = _date_window(typed, I.DATE_ANCHOR[1])
            bad = _bad_values(typed, self.spec, rules.window)
            dup = _duplicates(typed, bad, self.spec)
            if dup is not None:
                bad = bad.unionByName(dup)
            try:
                q = bad.toPandas()
            except Exception as e:  # noqa: BLE001 - a file Spark cannot read at all: one line
                raise InputError(f"{self.shown}: cannot read as CSV ({I.first_line(e)[:300]})") from None
            recs = sorted(set(q["_rec"].astype(int)))
            if recs:  # line numbers: one window over the file, only when something is quarantined
                rows = [
                    (int(r[0]), r[1], r[2], None if _missing(r[3]) else str(r[3]), None if pd.isna(r[4]) else int(r[4]))
                    for r in q[["_rec", "col", "reason", "raw_value", "ref_rec"]].itertuples(index=False)
                ]
                small = spark.createDataFrame(
                    rows, "_rec BIGINT, col STRING, reason STRING, raw_value STRING, ref_rec BIGINT"
                )
                q = _with_lines(typed, small).toPandas()
                q = q.sort_values(["line", "col"], kind="stable")
            self.rep.quarantined = len(recs)
            # the rows and the converted time zones: one aggregate over the cached rows (not an Observation on
            # the write: PySpark 4.2 adds the sort's sampling job to an observation, counting every row twice)
            agg = typed.agg(
                F.count(F.lit(1)).alias("_n"),
                *[F.sum((F.col(f"_tz_{c}") & F.col(c).isNotNull()).cast("int")).alias(c) for c in dates],
            ).collect()[0]
            if recs:
                gone = spark.createDataFrame([(r,) for r in recs], "_rec BIGINT")
                clean = typed.join(F.broadcast(gone), "_rec", "left_anti")
            else:
                clean = typed
            self.stage = self.lake.stage(
                self._stg_frame(clean, translation).orderBy("_rec").drop("_rec"), self.spec.stg
            )
            self.rep.loaded = int(agg["_n"]) - len(recs)
            self._require_rows(q)
            self.quarantine = pd.DataFrame(
                {
                    "file": self.rep.file,
                    "line": q["line"].astype("Int64") if recs else pd.Series(dtype="Int64"),
                    "column": q["col"],
                    "reason": q["reason"],
                    "raw_value": q["raw_value"].map(lambda v: None if _missing(v) else str(v)[: I.MAX_RAW]),
                }
            )
            if recs:  # as DuckDB words it: malformed records first, then the other quarantined rows
                mal = q["reason"].str.startswith("malformed")
                if mal.any():
                    self.rep.warnings.append(
                        f"{self.shown}: {int(mal.sum())} malformed CSV record(s) quarantined "
                        f"(first at line {int(q.loc[mal, 'line'].min())})"
                    )
                rest = q[~mal]
                if len(rest):
                    first = rest.iloc[0]
                    n = len(set(recs) - set(q.loc[mal, "_rec"].astype(int)))
                    self.rep.warnings.append(
                        f"{self.shown}: {n} row(s) quarantined (first: line "
                        f"{int(first['line'])}, column {first['col']}: {first['reason']})"
                    )
            hit = [(c, int(agg[c] or 0)) for c in dates if agg[c]]
            if hit:
                self.rep.warnings.append(
                    f"{self.shown}: {sum(n for _, n in hit)} timestamp(s) with a UTC offset converted to "
                    f"{I.LOCAL_TZ} local time ({', '.join(f'{c}: {n}' for c, n in hit)})"
                )
        finally:
            typed.unpersist()

    def _stg_frame(self, clean, translation):
        from pyspark.sql import functions as F

        cols = [F.col(c.name) for c in self.spec.columns]
        if not self.spec.extra.get("translated"):
            return clean.select("_rec", *cols)
        if translation is None:
            return clean.select("_rec", *cols, F.lit(None).cast("string").alias("product_category_name_english"))
        tr = translation.select("product_category_name", "product_category_name_english")
        return clean.join(F.broadcast(tr), "product_category_name", "left").select(
            "_rec", *cols, "product_category_name_english"
        )

    def _require_rows(self, q: pd.DataFrame) -> None:
        rep, spec, shown = self.rep, self.spec, self.shown
        if rep.loaded:
            return
        if not spec.nonempty:
            if rep.quarantined == 0:
                rep.warnings.append(f"{shown}: header only, no data rows")
            return
        if rep.quarantined == 0:
            raise InputError(f"{shown}: no data rows (header only); {spec.stg} must not be empty (lake unchanged)")
        first = q.iloc[0]
        raise InputError(
            f"{shown}: all {rep.quarantined} row(s) quarantined (first: line {int(first['line'])}, "
            f"column {first['col']}: {first['reason']}); {spec.stg} must not be empty (lake unchanged)"
        )


# ---- the raw files where the executors can read them --------------------------------------------
def _raw_uris(lake: Lake, settings: Settings, files: dict[str, Path], run: str) -> tuple[dict[str, str], str | None]:
    """{table key: URI the executors can read}; the staging folder to remove afterwards (or None)."""
    if lake.spark.sparkContext.master.startswith("local"):  # local[*] / local-cluster: executors share this disk
        return {k: p.absolute().as_uri() for k, p in files.items()}, None
    folder = f"{lake.root}/_staging/raw-{run}"
    out = {}
    for k, p in files.items():
        dest = f"{folder}/{p.name}"
        lake._call(
            dest,
            lambda fs, s=p, d=dest: fs.copyFromLocalFile(False, True, lake._path(s.absolute().as_uri()), lake._path(d)),
        )
        out[k] = dest
    return out, folder


# ---- ingest ----------------------------------------------------------------------------------------
def ingest_spark(source: Path, settings: Settings, *, strict: bool = False, progress: bool = False) -> I.IngestReport:
    """`olist_ml.ingest.ingest` on Spark: SOURCE (folder or zip) -> stg_* tables of the lake."""
    t0 = time.perf_counter()
    started = datetime.now(dt.UTC).replace(tzinfo=None)
    source = Path(source)
    run = uuid.uuid4().hex[:12]
    with I.resolve_source(source) as src:
        plan = I.precheck(src)
        digests = I.start_digests(src, plan.order)
        lake = Lake(get_spark(settings), settings.lake_uri)
        spark = lake.spark
        uris, raw_folder = _raw_uris(lake, settings, src.files, run)
        loads: list[_TableLoad] = []
        _translation = SOURCES_BY_KEY["category_translation"].stg
        for spec in SOURCES:  # temp views of an earlier ingest in this session must not leak into this one
            spark.catalog.dropTempView(spec.stg)
        try:
            rules = I.Rules(tz_ok=True)
            with I.progress_bar(progress, len(plan.order) + 1) as bar:
                task = bar.add_task("ingest (spark)", total=len(plan.order) + 1) if bar else None
                for spec in plan.order:
                    if bar:
                        bar.update(task, description=f"loading {spec.stg}")
                    ld = _TableLoad(
                        lake, spec, uris[spec.key], plan.headers[spec.key], src.display[spec.key], plan.reps[spec.key]
                    )
                    loads.append(ld)
                    translation = spark.table(_translation) if spark.catalog.tableExists(_translation) else None
                    ld.load(rules, translation)
                    lake.read(ld.stage).createOrReplaceTempView(spec.stg)
                    if bar:
                        bar.advance(task)
                checks = _cross_checks(spark, plan.reps)
            content_hash = I.content_hash(plan.reps, digests)
            quarantine = pd.concat([ld.quarantine for ld in loads], ignore_index=True)
            if strict and len(quarantine):
                first = quarantine.sort_values(["file", "line"]).iloc[0]
                raise InputError(
                    f"--strict: {sum(r.quarantined for r in plan.reps.values())} row(s) would be "
                    f"quarantined; first: {first['file']} line {first['line']}, column {first['column']}: "
                    f"{first['reason']} (lake unchanged)"
                )
            reps = plan.reps
            report = I.IngestReport(
                source=str(source.absolute()),
                source_kind=src.kind,
                warehouse=lake.root,
                content_hash=content_hash,
                run_id=uuid.uuid4().hex,
                tables=[reps[s.key] for s in SOURCES if s.key in reps],
                checks=checks,
                warnings=plan.notes + [w for s in SOURCES if s.key in reps for w in reps[s.key].warnings],
                groups_loaded=sorted({s.group for s in plan.order}),
                skipped=plan.skipped,
                kept_tables=[t for t in lake.tables() if not t.startswith("stg_") and t != I.QUARANTINE_TABLE],
                strict=strict,
                date_window=list(rules.window or ()),
            )
            # ---- swap in: every staged stg table, then the quarantine and the run record ----
            for ld in loads:
                lake.swap(ld.stage, ld.spec.stg)
            for spec in SOURCES:  # an optional table this source does not have: not left from an older ingest
                if spec.key not in src.files and lake.exists(spec.stg):
                    lake.drop(spec.stg)
            qdf = spark.createDataFrame(
                [tuple(_py(v) for v in r) for r in quarantine.itertuples(index=False)], QUARANTINE_SCHEMA
            )
            lake.replace(qdf, I.QUARANTINE_TABLE)
            report.elapsed_s = round(time.perf_counter() - t0, 3)
            _record_run(lake, report, started)
        finally:
            for ld in loads:
                if ld.stage and lake.exists(ld.stage):
                    lake.drop(ld.stage)
            if raw_folder:
                lake._call(raw_folder, lambda fs: fs.delete(lake._path(raw_folder), True))
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    return report


def _cross_checks(spark, reps: dict[str, I.TableReport]) -> dict[str, int]:
    """`ingest.cross_checks` with every count in ONE Spark query (a dry run collects the queries)."""
    queries: list[str] = []
    I.cross_checks(
        lambda sql: queries.append(sql.replace('"', "`")) or 0,
        {k: _Sink(v) for k, v in reps.items()},
        anti="LEFT ANTI JOIN",
    )
    if not queries:
        return {}
    row = spark.sql("SELECT " + ", ".join(f"({q}) AS c{i}" for i, q in enumerate(queries))).collect()[0]
    it = iter([int(v) for v in row])
    return I.cross_checks(lambda sql: next(it), reps, anti="LEFT ANTI JOIN")


class _Sink:
    """A TableReport stand-in for the dry run: warnings are dropped."""

    def __init__(self, rep: I.TableReport):
        self.file, self.warnings = rep.file, []


def _py(v):
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _record_run(lake: Lake, rep: I.IngestReport, started: datetime) -> None:
    runs = read_meta(lake, I.RUNS_TABLE, RUNS_COLUMNS)
    new = pd.DataFrame([I.run_record(rep, started)], columns=RUNS_COLUMNS)
    out = pd.concat([runs, new], ignore_index=True) if len(runs) else new
    write_meta(lake, I.RUNS_TABLE, out, RUNS_SCHEMA)


def last_run(settings: Settings) -> dict | None:
    """The latest `ingest_runs` row of the lake, or None."""
    lake = Lake(get_spark(settings), settings.lake_uri)
    runs = read_meta(lake, I.RUNS_TABLE, RUNS_COLUMNS)
    if runs.empty:
        return None
    return runs.sort_values("finished_at").iloc[-1].to_dict()
