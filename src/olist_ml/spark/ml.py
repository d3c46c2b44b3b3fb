"""ABTs, training and batch scoring on the Spark engine.

What runs where:
- ABT: one Spark SQL query per problem over the lake's stg / feature tables (executors), written as
  a lake table; rebuilt only when its lineage changed (every stg table's content, the feature
  store's build log, the problem's settings and code: `olist_ml.lineage.problem_config_fp`).
- Training: on the DRIVER. The ABT is pulled to the driver as Arrow (or, above
  `Settings.spark_train_max_rows`, a time-stratified sample: in every period of the time column the
  same share of rows is kept, the rows with the smallest hash of the group column (seller) and the
  seed, so the same sellers are kept across periods and group-disjoint CV stays meaningful; the
  parent MLflow run is tagged `spark_abt_sample`). It is handed to the generic trainer
  (`olist_ml.ml.train.train`) unchanged, through a driver-local scratch DuckDB file holding only
  that ABT: tuning, MLflow tracking, registry and the champion rule are exactly the DuckDB path's.
- Scoring: on the EXECUTORS, with `mlflow.pyfunc.spark_udf` on `models:/<name>@champion` (the
  model is shipped to the executors by MLflow; they need the same Python packages). Scores are
  written to `scores_<name>` partitioned by (time column, model_version): idempotent per
  (date, version), like on DuckDB; a history: earlier dates are kept, each batch carrying `data_fp`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..config import Settings
from ..errors import InputError, MissingStepError
from ..lineage import AbtRefresh, _hex, problem_config_fp
from ..ml.problem import Problem
from . import lineage as L
from .features import read_build_log
from .problems import SparkEnv, spark_problem
from .warehouse import STG_TABLES, view_exists

SAMPLE_TAG = "spark_abt_sample"


# ---- ABT -------------------------------------------------------------------------------------------
def abt_inputs_fp(env: SparkEnv) -> str:
    """`lineage.abt_inputs_fp` on the lake: every stg table and the feature store's build log."""
    key = "_abt_inputs_fp"
    if key not in env.__dict__:
        stg = [t for t in STG_TABLES if view_exists(env.spark, t)]
        log = read_build_log(env.lake)
        digest = _hex(sorted(f"{r.table_name}|{r.dt_ref}|{r.data_fp}|{r.config_fp}" for r in log.itertuples()))
        env.__dict__[key] = _hex([L.data_fingerprint(env.spark, stg), f"{len(log)}|{digest}"])
    return env.__dict__[key]


def refresh_abt(env: SparkEnv, problem: Problem, settings: Settings, *, force: bool = False) -> AbtRefresh:
    """Build `problem`'s ABT in the lake unless it exists and its lineage is current."""
    sp = spark_problem(problem.name)
    if sp.needs_features:
        env.require_features()
    data_fp, cfg = abt_inputs_fp(env), problem_config_fp(problem, settings)
    why = L.whole_table_reason(env.lake, problem.abt_table, data_fp, cfg)
    if not why and not force and env.lake.exists(problem.abt_table):
        return AbtRefresh(problem.abt_table, None, "")
    env.lake.replace(sp.build_abt(env, settings), problem.abt_table)
    rows = env.lake.read(problem.abt_table).count()
    L.record(env.lake, problem.abt_table, {None: (data_fp, cfg)}, replace_all=True)
    reason = "forced" if force else ("not built yet" if why == "no lineage recorded" else why)
    return AbtRefresh(problem.abt_table, int(rows), reason)


def abt_to_driver(env: SparkEnv, problem: Problem, settings: Settings):
    """(Arrow table of the ABT or of its time-stratified sample, note or "")."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = env.lake.read(problem.abt_table, step=f"train {problem.name}")
    n = df.count()
    cap = int(settings.spark_train_max_rows)
    if n <= cap:
        return df.toArrow(), ""
    frac = cap / n
    t = problem.time_column
    group = [problem.group_column] if problem.group_column else [k for k in problem.key_columns if k != t]
    h = F.xxhash64(*[F.col(c).cast("string") for c in group], F.lit(int(settings.seed)))
    w = Window.partitionBy(t).orderBy(h, *[F.col(c) for c in group])
    keep = (
        df.withColumn("_rn", F.row_number().over(w))
        .withColumn("_n", F.count(F.lit(1)).over(Window.partitionBy(t)))
        .where(F.col("_rn") <= F.ceil(F.col("_n") * F.lit(frac)))
        .drop("_rn", "_n")
    )
    table = keep.toArrow()
    note = (
        f"ABT of {n:,} rows above spark_train_max_rows={cap:,}: trained on a time-stratified sample of "
        f"{table.num_rows:,} rows ({frac:.1%} of every {t}, chosen by a hash of {', '.join(group)})"
    )
    return table, note


@contextlib.contextmanager
def scratch_warehouse(settings: Settings, problem: Problem, table) -> Iterator[Settings]:
    """Settings whose warehouse is a driver-local DuckDB file holding only this ABT (removed after)."""
    import duckdb

    folder = Path(tempfile.mkdtemp(prefix="olist-ml-spark-train-"))
    try:
        s2 = settings.with_(warehouse_path=folder / "abt.duckdb", engine="duckdb")
        con = duckdb.connect(str(s2.warehouse))
        try:
            con.register("_olist_abt", table)
            con.execute(f"CREATE TABLE {problem.abt_table} AS SELECT * FROM _olist_abt")
            con.unregister("_olist_abt")
        finally:
            con.close()
        yield s2
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def abt_content_hash(env: SparkEnv, problem: Problem, settings: Settings) -> str:
    """The content hash the trainer will log for this ABT (`ml.data.content_hash` of `load_abt`)."""
    from ..ml.data import content_hash, load_abt
    from ..warehouse import session

    table, _ = abt_to_driver(env, problem, settings)
    with scratch_warehouse(settings, problem, table) as s2, session(s2, read_only=True) as con:
        return content_hash(load_abt(con, problem))


def train_spark(problem: Problem, settings: Settings, *, build_abt: bool = True, env: SparkEnv | None = None, **budget):
    """`olist_ml.ml.train.train` for the Spark engine (module docstring): the lake's ABT on the driver."""
    from ..ml import tracking
    from ..ml.train import train

    env = env or SparkEnv.open(settings, features=spark_problem(problem.name).needs_features)
    if build_abt or not env.lake.exists(problem.abt_table):
        refresh_abt(env, problem, settings, force=build_abt)
    table, note = abt_to_driver(env, problem, settings)
    with scratch_warehouse(settings, problem, table) as s2:
        res = train(problem, s2, build_abt=False, **budget)
        if problem.name == "seller_segments":
            _copy_segment_outputs(env, problem, s2, settings)
    if note:
        res.notes.append(note)
        if res.parent_run_id:
            tracking.client(settings).set_tag(res.parent_run_id, SAMPLE_TAG, note)
    return res


def _copy_segment_outputs(env: SparkEnv, problem: Problem, scratch: Settings, settings: Settings) -> None:
    """A segmentation that became champion wrote its assignments into the scratch warehouse: move them
    to the lake (the lineage of their date is recorded like `score` does)."""
    import duckdb

    from ..problems import segments
    from ..warehouse import table_exists

    con = duckdb.connect(str(scratch.warehouse), read_only=True)
    try:
        if not table_exists(con, segments.TABLE):
            return
        seg = con.sql(f"SELECT * FROM {segments.TABLE}").to_arrow_table()
        sc = (
            con.sql(f"SELECT * FROM {problem.scores_table}").to_arrow_table()
            if table_exists(con, problem.scores_table)
            else None
        )
    finally:
        con.close()
    spark = env.spark
    seg_df = spark.createDataFrame(seg.to_pandas())
    env.lake.overwrite_partitions(seg_df.repartition(1), segments.TABLE, ["dt_ref"])
    days = [r[0] for r in seg_df.select("dt_ref").distinct().collect()]
    if sc is not None and sc.num_rows:
        from pyspark.sql import functions as F

        sc_df = spark.createDataFrame(sc.to_pandas()).withColumn("scored_at", F.col("scored_at").cast("timestamp_ntz"))
        env.lake.overwrite_partitions(
            sc_df.repartition(1), problem.scores_table, [problem.time_column, "model_version"]
        )
    _record_parts(
        env, problem, settings, [pd.Timestamp(d).date() for d in days], [segments.TABLE, problem.scores_table]
    )


def _record_parts(
    env: SparkEnv,
    problem: Problem,
    settings: Settings,
    days: list[dt.date],
    tables: list[str],
    fps: dict[dt.date, str] | None = None,
) -> None:
    fps = (
        fps if fps is not None and all(d in fps for d in days) else L.asof_fingerprints(env.spark, days, problem.reads)
    )
    cfg = problem_config_fp(problem, settings)
    for t in tables:
        L.record(env.lake, t, {d: (fps[d], cfg) for d in days})


# ---- scoring ---------------------------------------------------------------------------------------
_MLFLOW_TO_SPARK = {
    "double": "double",
    "float": "float",
    "long": "bigint",
    "integer": "int",
    "string": "string",
    "boolean": "boolean",
    "datetime": "timestamp_ntz",
    "binary": "binary",
}


def _signature_columns(model_uri: str) -> list[tuple[str, str | None]]:
    """[(column, Spark type to cast to)] from the model's input signature."""
    from mlflow.models import get_model_info

    sig = get_model_info(model_uri).signature
    if sig is None or sig.inputs is None:
        raise MissingStepError(f"{model_uri} has no input signature: retrain it (`olist-ml train ...`)")
    out = []
    for spec in sig.inputs.inputs:
        ty = getattr(getattr(spec, "type", None), "name", None)
        out.append((spec.name, _MLFLOW_TO_SPARK.get(str(ty))))
    return out


def declares_explain(model_uri: str) -> bool:
    """True when the model's signature declares the `explain` parameter (binary models logged with reasons)."""
    from mlflow.models import get_model_info

    from olist_ml_model.pyfunc import EXPLAIN

    sig = get_model_info(model_uri).signature
    return bool(sig is not None and sig.params is not None and EXPLAIN in {p.name for p in sig.params.params})


REASON_COLUMNS = ("reason_1", "reason_2", "reason_3", "reasons")  # as `olist_ml.ml.explain.reason_columns`


def score_date(problem: Problem, frame, as_of: dt.date | None) -> dt.date:
    """`scoring.score_date` on a Spark frame: one scoring date, events strictly before it."""
    from pyspark.sql import functions as F

    t = problem.time_column
    dts = [r[0] for r in frame.select(F.col(t).cast("date")).distinct().limit(2).collect()]
    if len(dts) != 1:
        raise InputError(
            f"scoring frame of {problem.name} spans {len(dts)} values of {t}; by convention "
            "(Problem.time_column) it must hold the one scoring date on every row"
        )
    d = dts[0]
    if as_of is not None and d != pd.Timestamp(as_of).date():
        raise InputError(
            f"scoring frame of {problem.name} at {pd.Timestamp(as_of).date()} holds {t} {d}: by "
            "convention (Problem.time_column) it must hold the scoring date"
        )
    ev = problem.event_time_column
    if ev and ev in frame.columns:
        late = frame.where(F.col(ev) >= F.lit(d).cast("timestamp_ntz")).limit(1).collect()
        if late:
            row = late[0].asDict()
            raise InputError(
                f"scoring frame of {problem.name} at {d}: {ev} {row[ev]} of "
                f"{', '.join(f'{k}={row[k]}' for k in problem.key_columns if k != t)} is not before "
                "the scoring date"
            )
    return d


def predict_spark(
    problem: Problem, settings: Settings, as_of: dt.date | None = None, *, top_n: int = 10, env: SparkEnv | None = None
):
    """`olist_ml.ml.scoring.predict` on Spark: the champion as a `spark_udf` over the scoring frame."""
    import mlflow.pyfunc
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from ..ml import registry, scoring, tracking

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    t0 = time.perf_counter()
    sp = spark_problem(problem.name)
    env = env or SparkEnv.open(settings, features=sp.needs_features)
    mv = registry.alias_version(settings, problem.name, registry.CHAMPION)
    if mv is None:
        raise registry._missing(settings, problem.name, registry.CHAMPION)
    tracking.configure(settings)
    frame = sp.scoring_frame(env, settings, as_of)
    t = problem.time_column
    if not frame.limit(1).collect():
        raise MissingStepError(
            f"nothing to score for {problem.name} at {as_of or 'the default scoring date'}: "
            f"run `olist-ml --engine spark {problem.build_step}` for that date"
        )
    d = score_date(problem, frame, as_of)
    # predictions are records (olist_ml.records): earlier dates are never purged; a batch carries the
    # fingerprint of the data it was computed from
    fps = L.asof_fingerprints(env.spark, [d], problem.reads)
    uri = f"models:/{problem.name}@{registry.CHAMPION}"
    cols = _signature_columns(uri)
    missing = [c for c, _ in cols if c not in frame.columns]
    if missing:
        raise MissingStepError(
            f"the scoring frame lacks {', '.join(missing[:3])} used by {problem.name} "
            f"v{mv.version}: run `olist-ml --engine spark train {problem.name}` again"
        )
    binary = problem.kind == "binary"
    explain = binary and declares_explain(uri)
    args = F.struct(*[(F.col(c).cast(ty) if ty else F.col(c)).alias(c) for c, ty in cols])
    if explain:  # the score and its top-3 reasons (the columns `olist-ml predict` writes on DuckDB)
        rtype = "score double, " + ", ".join(f"{c} string" for c in REASON_COLUMNS)
        udf = mlflow.pyfunc.spark_udf(env.spark, uri, result_type=rtype, env_manager="local", params={"explain": 3})
        pred = udf(args)
        score, reasons = pred["score"], [pred[c].alias(c) for c in REASON_COLUMNS]
    else:
        # the champion (olist_ml_model.ChampionModel) returns one score per row: P(class 1) or the cluster id
        udf = mlflow.pyfunc.spark_udf(env.spark, uri, result_type="double" if binary else "long", env_manager="local")
        pred = udf(args)
        score, reasons = (pred if binary else pred.cast("int")), []
    keys = [k for k in problem.key_columns if k != t]
    gate = problem.quality_gate
    # the gate's rule beside every score (`scoring.baseline_scores` on DuckDB; NULL without one)
    rule = F.expr(gate.sql) if gate is not None and gate.sql else F.lit(None)
    baseline = [rule.cast("double").alias("baseline_score")]
    scored = frame.select(
        *[F.col(k) for k in keys],
        F.lit(d).cast("date").alias(t),
        score.alias("score"),
        *baseline,
        *reasons,
        *[F.expr(e).alias(f"_o{i}") for i, e in enumerate(sp.frame_order)],
    ).cache()
    try:
        n = scored.count()
        order = [F.col("score").desc()] + [F.col(f"_o{i}") for i in range(len(sp.frame_order))]
        rank = F.row_number().over(Window.orderBy(*order)) - 1
        decile = (F.floor(rank * 10 / F.lit(n)) + 1).cast("int") if binary else F.lit(None).cast("int")
        out = scored.select(
            *[F.col(k) for k in problem.key_columns],
            "score",
            decile.alias("decile"),
            F.lit(problem.name).alias("model_name"),
            F.lit(str(mv.version)).alias("model_version"),
            F.lit(mv.run_id or "").alias("run_id"),
            F.lit(scoring.now_utc()).cast("timestamp_ntz").alias("scored_at"),
            "baseline_score",
            *([F.col(c) for c in REASON_COLUMNS] if explain else []),
            F.lit(fps[d]).alias("data_fp"),
            F.lit(None).cast("timestamp_ntz").alias("data_revised_at"),
        )
        names = {}
        if problem.name == "seller_segments":
            raw = (mv.tags or {}).get("segment_names")
            names = {int(k): v for k, v in json.loads(raw).items()} if raw else {}
            mapping = F.create_map(*[x for k, v in names.items() for x in (F.lit(k), F.lit(v))]) if names else None
            seg_name = (
                F.coalesce(mapping[F.col("score")], F.concat(F.lit("segment "), F.col("score").cast("string")))
                if mapping is not None
                else F.concat(F.lit("segment "), F.col("score").cast("string"))
            )
            out = out.withColumn("segment_name", seg_name)
        out = out.orderBy(F.col("score").desc(), *[F.col(k) for k in keys]).cache()
        env.lake.overwrite_partitions(out.coalesce(1), problem.scores_table, [t, "model_version"])
        tables = [problem.scores_table]
        if problem.name == "seller_segments":
            from ..problems import segments

            seg = out.select(
                t,
                "seller_id",
                F.col("score").alias("segment"),
                "segment_name",
                "model_version",
                "run_id",
                "scored_at",
                "data_fp",
                "data_revised_at",
            )
            env.lake.overwrite_partitions(seg.coalesce(1), segments.TABLE, [t])
            tables.append(segments.TABLE)
        _record_parts(env, problem, settings, [d], tables, fps)
        dist, top = _summary(problem, out, keys, top_n, names)
    finally:
        scored.unpersist()
    return scoring.ScoreReport(
        problem=problem.name,
        table=problem.scores_table,
        dt_ref=d,
        n_scored=int(n),
        model_name=problem.name,
        model_version=str(mv.version),
        run_id=mv.run_id or "",
        distribution=dist,
        top=top,
        seconds=time.perf_counter() - t0,
    )


def _summary(problem: Problem, out, keys: list[str], top_n: int, names: dict[int, str]):
    """`scoring.distribution` and the report's top rows, computed by Spark."""
    from pyspark.sql import functions as F

    s = F.col("score").cast("double")
    r = out.agg(
        F.avg(s),
        F.min(s),
        F.expr("percentile(CAST(score AS DOUBLE), array(0.1, 0.5, 0.9))"),
        F.max(s),
        F.avg((s >= 0.5).cast("double")),
    ).collect()[0]
    dist = {
        "mean": float(r[0]),
        "min": float(r[1]),
        "p10": float(r[2][0]),
        "p50": float(r[2][1]),
        "p90": float(r[2][2]),
        "max": float(r[3]),
    }
    if problem.kind == "binary":
        dist["share_ge_0.5"] = float(r[4])
        top = (
            out.orderBy(F.col("score").desc(), *[F.col(k) for k in keys])
            .limit(top_n)
            .select(*problem.key_columns, "score", "decile")
            .toPandas()
            .to_dict("records")
        )
        return dist, top
    counts = {int(k): int(v) for k, v in out.groupBy("score").count().collect()}
    total = sum(counts.values())
    dist.update({f"cluster_{k}": counts[k] / total for k in sorted(counts)})
    top = [
        {"segment": k, "segment_name": names.get(k, f"segment {k}"), "n_sellers": c}
        for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
    ]
    return dist, top
