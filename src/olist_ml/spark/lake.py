"""Lake tables for the Spark engine: one Parquet table per folder under a root URI.

The root (`Settings.lake_uri`) is a URI handed to Spark and Hadoop exactly as given: `file:///...`
(the default, `<home>/lake`), `s3a://bucket/prefix`, `abfss://container@account.dfs.core.windows.net/x`,
`dbfs:/olist`, `hdfs://...`. It is never turned into a local path; credentials and connectors
for remote schemes come from the Spark/Hadoop configuration (e.g. `spark.hadoop.fs.s3a.*`).

Table layout (readable by any Parquet reader, `spark.read.parquet(<root>/<table>)` included):
- whole tables (stg_*, abt_*, metadata such as `fs_build_log`, `olist_ml_lineage`, `ingest_runs`):
  written to `<root>/_staging/<table>-<id>` and renamed over `<root>/<table>` (`replace`). On file
  systems with atomic directory rename (local, HDFS, ADLS Gen2 / abfss) readers see the old table
  or the new one; on S3 a rename is a copy, so a reader can briefly see a partial table (Delta Lake
  would make this transactional; its jars come from Maven, which this project cannot assume).
- partitioned tables (fs_seller_*, scores_*): `partitionBy(...)` with dynamic partition overwrite
  (`overwrite_partitions`): a write replaces exactly the partitions present in the data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from ..errors import EnvironmentFault, MissingStepError

# partition columns whose type Spark's partition discovery would guess wrong (as the DuckDB tables type them)
_PARTITION_TYPES = {"model_version": "string"}


class Lake:
    """The tables of one lake root (see the module docstring)."""

    def __init__(self, spark, root: str):
        self.spark = spark
        self.root = str(root).rstrip("/")

    # ---- names ---------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    # ---- Hadoop file system ----------------------------------------------------------------
    def _path(self, uri: str):
        return self.spark._jvm.org.apache.hadoop.fs.Path(uri)

    def _fs(self, uri: str):
        conf = self.spark._jsc.hadoopConfiguration()
        try:
            return self._path(uri).getFileSystem(conf)
        except Exception as e:  # noqa: BLE001 - py4j wraps the Java exception
            raise _fs_error(self.root, e) from None

    def _call(self, uri: str, fn):
        fs = self._fs(uri)
        try:
            return fn(fs)
        except Exception as e:  # noqa: BLE001
            raise _fs_error(self.root, e) from None

    def exists(self, name: str) -> bool:
        uri = self.uri(name)
        return bool(self._call(uri, lambda fs: fs.exists(self._path(uri))))

    def require(self, names: Iterable[str], step: str) -> None:
        missing = [n for n in names if not self.exists(n)]
        if missing:
            raise MissingStepError(
                f"lake {self.root} has no table {', '.join(missing)}: run `olist-ml --engine spark {step}` first"
            )

    def _children(self, uri: str) -> list[str]:
        def ls(fs):
            p = self._path(uri)
            if not fs.exists(p):
                return []
            return [str(st.getPath().getName()) for st in fs.listStatus(p)]

        return self._call(uri, ls)

    def tables(self) -> list[str]:
        return sorted(n for n in self._children(self.root) if not n.startswith(("_", ".")))

    def partitions(self, name: str, column: str = "dt_ref") -> list[str]:
        """Values of the first-level partition column present in the table (as written: text)."""
        pre = column + "="
        return sorted(n[len(pre) :] for n in self._children(self.uri(name)) if n.startswith(pre))

    def drop_partitions(self, name: str, values: Iterable, column: str = "dt_ref") -> None:
        for v in values:
            uri = f"{self.uri(name)}/{column}={v}"
            self._call(uri, lambda fs, u=uri: fs.delete(self._path(u), True))

    def drop(self, name: str) -> None:
        uri = self.uri(name)
        self._call(uri, lambda fs: fs.delete(self._path(uri), True))

    # ---- reading ----------------------------------------------------------------------------
    def read(self, name: str, step: str | None = None):
        """The table as a DataFrame; MissingStepError naming `step` when it is not there."""
        if not self.exists(name):
            hint = f": run `olist-ml --engine spark {step}` first" if step else ""
            raise MissingStepError(f"lake {self.root} has no table {name}{hint}")
        df = self.spark.read.parquet(self.uri(name))
        for c, ty in _PARTITION_TYPES.items():  # partition discovery would infer model_version "1" as an int
            if c in df.columns:
                df = df.withColumn(c, df[c].cast(ty))
        return df

    def columns(self, name: str) -> list[str]:
        return list(self.read(name).columns)

    # ---- writing ----------------------------------------------------------------------------
    def replace(self, df, name: str, *, partition_by: list[str] | None = None, files: int | None = 1) -> None:
        """Write `df` as the whole table `name`: staged aside, then renamed over the old table."""
        self.swap(self.stage(df, name, partition_by=partition_by, files=files), name)

    def stage(self, df, name: str, *, partition_by: list[str] | None = None, files: int | None = 1) -> str:
        """Write `df` to a new staging table (a name under `_staging/`, readable with `read`); see `swap`."""
        stage = f"_staging/{name}-{uuid.uuid4().hex[:12]}"
        if files:
            df = df.coalesce(files)
        w = df.write.mode("error")
        if partition_by:
            w = w.partitionBy(*partition_by)
        w.parquet(self.uri(stage))
        return stage

    def swap(self, stage: str, name: str) -> None:
        """Rename the staged table `stage` over `name` (the old table moved aside, then deleted)."""
        target, staged = self.uri(name), self.uri(stage)

        def swap(fs):
            t, s = self._path(target), self._path(staged)
            old = None
            if fs.exists(t):
                old = self._path(f"{self.root}/_staging/{name}-{uuid.uuid4().hex[:12]}.old")
                if not fs.rename(t, old):
                    raise OSError(f"cannot move {target} aside")
            if not fs.rename(s, t):
                if old is not None:
                    fs.rename(old, t)
                raise OSError(f"cannot rename {staged} to {target}")
            if old is not None:
                fs.delete(old, True)

        self._call(target, swap)

    def overwrite_partitions(self, df, name: str, partition_by: list[str]) -> None:
        """Replace the partitions of `name` present in `df` (dynamic partition overwrite)."""
        df.write.mode("overwrite").partitionBy(*partition_by).parquet(self.uri(name))


def _fs_error(root: str, e: Exception) -> EnvironmentFault:
    text = str(e)
    first = next((ln.strip() for ln in text.splitlines() if "Exception" in ln or "Error" in ln), text.strip()[:300])
    first = " ".join(first.split()).lstrip(": ")
    missing_class = "ClassNotFoundException" in text and "FileSystem" in text
    if "No FileSystem for scheme" in text or "UnsupportedFileSystemException" in text or missing_class:
        scheme = root.split(":", 1)[0]
        return EnvironmentFault(
            f"lake {root}: Spark has no Hadoop file system for '{scheme}:' URIs; add its "
            f"connector and credentials to the Spark configuration (e.g. hadoop-aws and "
            f"spark.hadoop.fs.s3a.* for s3a) or use a file:// lake ({first[:200]})"
        )
    return EnvironmentFault(f"lake {root}: {first[:300]}")
