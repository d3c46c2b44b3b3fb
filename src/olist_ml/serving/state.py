"""What one serving process holds in memory: the champions and the latest feature rows.

* `ChampionSlot` keeps one problem's champion. A background poller asks the registry which
  version the `champion` alias points at (one cheap query) at most every `poll_seconds`;
  when it moved, the new version is loaded aside and swapped in (no restart, no request
  ever sees a half-loaded model). A version trained with other settings than the server's
  (churn horizon, feature windows: its `settings` tag) is refused: `/ready` is 503 naming both values.
* `FeatureSnapshot` holds the feature rows of the latest dt_ref, indexed by seller, and the
  churn champion's score of every seller (scored once per (model version, dt_ref), so a
  request is a dictionary lookup). The warehouse is opened read-only and only for the time of
  a refresh, so batch jobs can still write it; a refresh happens when the warehouse file
  changes (inode/mtime/size of the file and its WAL).
* Readiness follows the files: every poll stats the warehouse and the MLflow sqlite store (cheap)
  and reads them only when they changed (a changed warehouse once it is unchanged over one poll).
  A file that is gone, unreadable (garbage), or that no longer holds what serving needs (another
  warehouse without a feature store, a store without a registry) makes `/ready` 503 with the
  reason until it is fixed; the last good snapshot keeps answering requests meanwhile (responses
  name their model version and dt_ref). A warehouse locked by a writer (a batch job) is no fault:
  the snapshot stays and the next poll retries.
* `DelayContext` is what scoring an order needs, copied into an in-memory DuckDB at the same
  refresh: every order's own facts and timestamps (`order_delay.base_sql()`, the history the
  in-flight state and the route/state/market context aggregate), customers, sellers and zip
  coordinates, and the scoring date (`order_delay.default_scoring_date`, the date `olist-ml predict
  delay` scores by default). A request's feature row is computed by `order_delay.request_frame`
  (the ABT's own SQL) against it at that date, so the API's row equals the batch row of an order
  with the same attributes: an order in flight gets its row at the scoring date, a new one its row
  at approval.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Settings
from ..errors import MissingStepError, OlistMLError

log = logging.getLogger("olist_ml.serving")

CHURN = "seller_churn"
DELAY = "order_delay"
ALIAS = "champion"


# ---------------------------------------------------------------------------------------
# registry access
# ---------------------------------------------------------------------------------------
def _sqlite_store(settings: Settings) -> Path | None:
    uri = settings.mlflow_uri
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def _mlflow_store_missing(settings: Settings) -> str | None:
    p = _sqlite_store(settings)
    if p is not None and not p.exists():
        return f"no MLflow store at {p}: run `olist-ml train PROBLEM` first"
    return None


def _file_signature(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class _Transient(Exception):
    """A source is busy (locked by a writer, changed while read): keep the state, retry next poll."""


def check_registry_store(path: Path) -> str | None:
    """None when the sqlite file is an MLflow store with a model registry, else the reason (one line).
    Raises _Transient while a writer locks it."""
    try:
        con = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=2)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
        finally:
            con.close()
        n = len(tables & {"registered_models", "model_versions", "registered_model_aliases"})
    except sqlite3.OperationalError as e:
        if "locked" in str(e):
            raise _Transient(str(e)) from e
        return f"MLflow store {path} cannot be read ({e}): restore it or run `olist-ml train PROBLEM`"
    except sqlite3.Error as e:
        return f"MLflow store {path} cannot be read ({e}): restore it or run `olist-ml train PROBLEM`"
    if n < 3:
        return f"{path} is not an MLflow store with a model registry: restore it or run `olist-ml train PROBLEM`"
    if not _mlflow_schema_complete(tables):  # another process is creating it: opening it now would create it too
        raise _Transient(f"MLflow store {path} is being created")
    return None


def _mlflow_schema_complete(tables: set[str]) -> bool:
    """Every table of MLflow's schema exists (MLflow creates the missing ones when it opens a store, which
    races with the process creating it)."""
    try:
        from mlflow.store.db.base_sql_model import Base
    except ImportError:  # pragma: no cover - another MLflow layout: nothing to check
        return True
    return set(Base.metadata.tables) <= tables


def _forget_registry_connections(uri: str) -> None:
    """MLflow keeps one SQLAlchemy engine per store URI for the whole process (a class-level cache);
    after the sqlite file was replaced, its pooled connections would still read the old, unlinked
    file. Disposing the engine makes the next query open the file at the path again."""
    try:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
    except ImportError:  # pragma: no cover - another MLflow layout
        return
    for cls in (RegistryStore, TrackingStore):
        engine = getattr(cls, "_engine_map", {}).get(uri)
        if engine is not None:
            engine.dispose()


def alias_version(settings: Settings, model_name: str, client=None) -> str | None:
    """Version the `champion` alias points at, or None when there is none (cheap: one query).
    Other registry errors (an unreadable store) are raised."""
    from ..ml import registry

    if _mlflow_store_missing(settings):
        return None
    mv = registry.alias_version(settings, model_name, ALIAS, client=client, strict=True)
    return None if mv is None else str(mv.version)


def load_champion(settings: Settings, model_name: str):
    """The champion through the ml area's loader (`olist_ml.ml.registry.load_champion`)."""
    missing = _mlflow_store_missing(settings)
    if missing:
        raise MissingStepError(missing)
    from ..ml.registry import load_champion as _load

    return _load(settings, model_name)


def check_settings(model_name: str, champion, settings: Settings) -> None:
    """`SettingsMismatchError` (one line naming both values) when the champion was trained with other
    settings that shape its inputs (churn horizon, feature windows, ...) than this server's
    (`Problem.check_settings`); a name that is no declared problem is not checked."""
    from ..errors import UnknownNameError
    from ..problems import get as get_problem

    try:
        problem = get_problem(model_name)
    except UnknownNameError:
        return
    problem.check_champion(champion, settings)


def positive_scores(champion, frame: pd.DataFrame) -> np.ndarray:
    """P(target = 1) for every row, whatever shape `predict_proba` returns."""
    p = np.asarray(champion.predict_proba(frame))
    if p.ndim == 2:
        p = p[:, -1]
    return p.astype(float)


def feature_kinds(champion) -> dict[str, str]:
    """feature -> "number" | "category", as the champion's pipeline casts them (its FrameCaster step,
    `ml.candidates.FrameCaster`); empty when the model declares none."""
    model = getattr(champion, "model", None)
    cast = getattr(model, "named_steps", {}).get("cast") if hasattr(model, "named_steps") else None
    kinds = {str(c): "number" for c in (getattr(cast, "numeric", None) or [])}
    kinds.update({str(c): "category" for c in (getattr(cast, "categorical", None) or [])})
    return kinds


@dataclass
class ChampionSlot:
    problem: str
    champion: Any = None
    version: str | None = None
    loaded_at: float | None = None
    error: str | None = None
    fault: str | None = None  # the last poll could not confirm this champion against the registry

    @property
    def ready(self) -> bool:
        return self.champion is not None

    @functools.cached_property
    def feature_kinds(self) -> dict[str, str]:
        return feature_kinds(self.champion)

    def info(self) -> dict:
        c = self.champion
        return {
            "problem": self.problem,
            "loaded": self.ready,
            "model_name": getattr(c, "model_name", self.problem) if c is not None else self.problem,
            "model_version": self.version,
            "run_id": getattr(c, "run_id", None) if c is not None else None,
            "error": self.error,
        }


# ---------------------------------------------------------------------------------------
# feature store access
# ---------------------------------------------------------------------------------------
def warehouse_signature(settings: Settings) -> tuple | None:
    """(inode, mtime, size) of the warehouse file and of its WAL; None when the file is gone."""
    p = settings.warehouse
    sig = tuple(_file_signature(f) for f in (p, p.with_name(p.name + ".wal")))
    return None if sig[0] is None else sig


def _locked(e: Exception) -> bool:
    """DuckDB's refusal to open a file another process holds for writing."""
    return "Could not set lock" in str(e) or "Conflicting lock" in str(e)


def latest_feature_frames(
    con, settings: Settings, problems: tuple[str, ...]
) -> tuple[date, pd.DataFrame, pd.DataFrame | None]:
    """(latest dt_ref, every seller's feature-store row at it, the churn population at it).

    The churn population is the churn problem's own scoring frame (eligible sellers, with the
    ABT's features); None when the churn problem is not served.
    """
    from ..features import FEATURE_TABLES, available_dt_refs, feature_frame_sql
    from ..warehouse import require_tables

    require_tables(con, list(FEATURE_TABLES), "features build")  # e.g. another warehouse, without a feature store
    refs = available_dt_refs(con)
    if not refs:
        raise MissingStepError("the feature store is empty: run `olist-ml features build` first")
    latest = refs[-1]
    if isinstance(latest, datetime):
        latest = latest.date()
    store = con.execute(f"SELECT * FROM ({feature_frame_sql()}) f WHERE dt_ref = ?", [latest]).df()
    churn = None
    if CHURN in problems:
        from ..problems import get as get_problem

        try:
            problem = get_problem(CHURN)
        except OlistMLError:
            problem = None
        churn = problem.scoring_frame(con, settings, latest) if problem is not None else store
    return latest, store, churn


def latest_actions(con, problems: tuple[str, ...]) -> dict:
    """problem -> the latest action list of `olist-ml actions` (`actions_<problem>`), for the served ones."""
    from .actions import read_latest

    return {p: read_latest(con, p) for p in problems if p in (CHURN, DELAY)}


def _by_seller(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    if frame is None or "seller_id" not in frame.columns:
        return frame
    frame = frame.drop_duplicates("seller_id", keep="last").set_index("seller_id", drop=False)
    frame.index.name = None
    return frame


DELAY_HISTORY = "order_delay_history"


class DelayContext:
    """In-memory copy of what `order_delay.request_frame` reads (see the module docstring)."""

    def __init__(self, settings: Settings, dt_ref: date):
        import duckdb

        from .. import geo
        from ..problems import order_delay

        self.dt_ref = dt_ref  # the feature store's date (seller_known)
        self.settings = settings
        db = duckdb.connect(":memory:")
        try:
            db.execute("ATTACH '" + str(settings.warehouse).replace("'", "''") + "' AS wh (READ_ONLY)")
            try:
                have = {
                    r[0]
                    for r in db.execute(
                        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'wh' AND schema_name = 'main'"
                    ).fetchall()
                }
                missing = [t for t in order_delay.STG_TABLES if t not in have]
                if missing:
                    raise MissingStepError(
                        f"warehouse has no table {', '.join(missing)}: run `olist-ml ingest SOURCE` first"
                    )
                for t in order_delay.STG_TABLES + (["stg_geolocation"] if "stg_geolocation" in have else []):
                    db.execute(f"CREATE TABLE main.{t} AS SELECT * FROM wh.main.{t}")
                if geo.GEO_TABLE in have:
                    db.execute(f"CREATE TABLE main.{geo.GEO_TABLE} AS SELECT * FROM wh.main.{geo.GEO_TABLE}")
            finally:
                db.execute("DETACH wh")
            if geo.GEO_TABLE not in have:
                geo.build_zip_coordinates(db)
            self.scoring_date: date = order_delay.default_scoring_date(db)
            db.execute(f"CREATE TABLE {DELAY_HISTORY} AS {order_delay.base_sql()}")
            for t in ("stg_orders", "stg_order_items", "stg_products", "stg_order_payments", "stg_geolocation"):
                db.execute(f"DROP TABLE IF EXISTS {t}")  # folded into the history
        except BaseException:
            db.close()
            raise
        self.db = db

    def frame(self, orders: pd.DataFrame) -> pd.DataFrame:
        """The order_delay ABT row of each order at the scoring date: in flight (bought before it) its
        row at that date, new (bought at or after it) its row at approval (`request_frame`)."""
        from ..problems import order_delay

        cur = self.db.cursor()  # one connection per call: requests run on several threads
        try:
            return order_delay.request_frame(cur, self.settings, orders, as_of=self.scoring_date, history=DELAY_HISTORY)
        finally:
            cur.close()

    def close(self) -> None:
        self.db.close()


@dataclass
class FeatureSnapshot:
    dt_ref: date | None = None
    frame: pd.DataFrame | None = None  # feature-store rows at dt_ref, index: seller_id
    churn_frame: pd.DataFrame | None = None  # the churn population at dt_ref, index: seller_id
    churn_scores: pd.Series | None = None  # index: seller_id
    churn_version: str | None = None
    churn_explanation: Any = None  # olist_ml_model.explain.Explanation of churn_frame (?explain=k)
    churn_rows: dict | None = None  # seller_id -> row of churn_explanation
    explain_error: str | None = None
    actions: dict | None = None  # problem -> its latest action list (`olist-ml actions`), None when absent
    delay: DelayContext | None = None  # what scoring a new order needs (when order_delay is served)
    signature: tuple | None = None
    loaded_at: float | None = None
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.frame is not None


# ---------------------------------------------------------------------------------------
# the process state
# ---------------------------------------------------------------------------------------
@dataclass
class ServingState:
    settings: Settings
    problems: tuple[str, ...] = (CHURN, DELAY)
    poll_seconds: float = 5.0
    slots: dict[str, ChampionSlot] = field(default_factory=dict)
    features: FeatureSnapshot = field(default_factory=FeatureSnapshot)
    features_fault: str | None = None  # the warehouse could not be read at the last change: why
    features_busy: str | None = None  # the last reload was put off (a writer holds the warehouse)
    _failed_signature: tuple | None = None  # the warehouse file that failed (not re-read until it changes)
    _seen_signature: tuple | None = None  # the warehouse file as the previous poll saw it
    _registry_signature: tuple | None = None
    _registry_fault: str | None = None
    _registry_inode: int | None = None  # the sqlite file MLflow's pooled connections point at
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _client: Any = None
    served: Any = None  # the log of every answer (`olist_ml.serving.served_log.ServedLog`), while started

    def __post_init__(self) -> None:
        for p in self.problems:
            self.slots.setdefault(p, ChampionSlot(p))

    # ---- refresh -----------------------------------------------------------------------
    def refresh(self) -> None:
        """One poll: reload any champion whose alias moved, reload features if the store changed."""
        with self._lock:
            fault = self._check_registry()
            for name in self.problems:
                self._refresh_champion(name, fault)
            self._refresh_features()

    def _check_registry(self) -> str | None:
        """Why the MLflow store cannot be read (None: it can). Stat per poll; read when it changed."""
        missing = _mlflow_store_missing(self.settings)
        if missing:
            self._registry_signature = None
            return missing
        path = _sqlite_store(self.settings)
        if path is None:
            return None  # a tracking server: the alias query below is the check
        sig = _file_signature(path)
        if sig is None:
            return f"no MLflow store at {path}: run `olist-ml train PROBLEM` first"
        if sig != self._registry_signature:
            try:
                self._registry_fault = check_registry_store(path)
            except _Transient:
                return self._registry_fault
            self._registry_signature = sig
            if self._registry_fault is None and sig[0] != self._registry_inode:
                if self._registry_inode is not None:
                    _forget_registry_connections(self.settings.mlflow_uri)  # the file was replaced
                self._registry_inode = sig[0]
        return self._registry_fault

    def _registry_client(self):
        if self._client is None and not _mlflow_store_missing(self.settings):
            from ..ml import tracking

            self._client = tracking.client(self.settings)
        return self._client

    def _refresh_champion(self, name: str, registry_fault: str | None = None) -> None:
        slot = self.slots[name]
        if registry_fault:
            slot.error = slot.fault = registry_fault
            return
        try:
            version = alias_version(self.settings, name, self._registry_client())
            if version is None:
                # no alias (any more): a loaded champion keeps serving, nothing to swap to
                if slot.champion is None:
                    slot.error = f"no `{ALIAS}` alias on registered model {name}: run `olist-ml train {name}` first"
                else:
                    slot.error = slot.fault = None
                return
            if version == slot.version and slot.champion is not None:
                slot.error = slot.fault = None
                return
            champ = load_champion(self.settings, name)
            check_settings(name, champ, self.settings)  # trained with other horizon / windows: not served
            new_version = str(getattr(champ, "version", version))
            self.slots[name] = ChampionSlot(name, champ, new_version, time.time(), None)
            log.info("loaded %s champion version %s", name, new_version)
        except OlistMLError as e:
            slot.error = slot.fault = str(e)
        except Exception as e:  # keep serving the old model; /ready shows why
            slot.error = slot.fault = f"{type(e).__name__}: {e}".splitlines()[0]
            log.exception("loading the %s champion failed", name)

    def _refresh_features(self) -> None:
        snap = self.features
        sig = warehouse_signature(self.settings)
        churn = self.slots.get(CHURN)
        churn_version = churn.version if churn and churn.ready else None
        if sig is None:
            self.features_fault = f"no warehouse at {self.settings.warehouse}: run `olist-ml ingest SOURCE` first"
            if not snap.ready:
                snap.error = self.features_fault
            return
        if sig == snap.signature and snap.ready:
            self.features_fault = self.features_busy = None  # the very file the snapshot was read from
            if churn_version != snap.churn_version:
                self.features = self._score(snap, churn)
            return
        if sig == self._failed_signature:
            return  # this file already failed to load: its fault stands until it changes
        if snap.ready and sig != self._seen_signature:
            # changed since the last poll: read it once it has settled (one poll later), so a
            # writer's sequence (ingest, then features build) does not find the file held by this read
            self._seen_signature = sig
            return
        delay, fault, busy = None, None, None
        try:
            from .. import warehouse

            with warehouse.session(self.settings, read_only=True) as con:
                dt_ref, store, churn_frame = latest_feature_frames(con, self.settings, self.problems)
                action_lists = latest_actions(con, self.problems)
            frame = _by_seller(store)
            delay = DelayContext(self.settings, dt_ref) if DELAY in self.problems else None
            if warehouse_signature(self.settings) != sig:  # replaced while read: the parts may not match
                raise _Transient("the warehouse changed while it was read")
            new = FeatureSnapshot(
                dt_ref=dt_ref,
                frame=frame,
                churn_frame=_by_seller(churn_frame),
                delay=delay,
                signature=sig,
                loaded_at=time.time(),
                actions=action_lists,
            )
            self.features = self._score(new, churn)
            self.features_fault = self.features_busy = self._failed_signature = None
            log.info("loaded features at dt_ref %s (%d sellers)", dt_ref, len(frame))
            return
        except _Transient as e:  # retry at the next poll, keep the state
            busy = f"feature store busy: {e}"
        except OlistMLError as e:
            fault = str(e)
        except Exception as e:  # noqa: BLE001 - the old snapshot keeps serving
            if _locked(e):  # a writer (batch job) holds the warehouse: keep the old snapshot, retry
                busy = f"feature store busy: {type(e).__name__}: {e}".splitlines()[0]
            else:
                fault = f"feature store unreadable: {type(e).__name__}: {e}".splitlines()[0]
        if delay is not None:
            delay.close()
        self.features_busy = busy
        if fault is not None:
            self.features_fault, self._failed_signature = fault, sig
            log.warning("features not reloaded: %s", fault)
        if not snap.ready:
            snap.error = fault or busy

    def _score(self, snap: FeatureSnapshot, churn: ChampionSlot | None) -> FeatureSnapshot:
        new = FeatureSnapshot(
            dt_ref=snap.dt_ref,
            frame=snap.frame,
            churn_frame=snap.churn_frame,
            delay=snap.delay,
            signature=snap.signature,
            loaded_at=snap.loaded_at,
            actions=snap.actions,
        )
        cf = snap.churn_frame
        if churn is None or not churn.ready or cf is None:
            return new
        try:
            names = list(churn.champion.feature_names)
            missing = [c for c in names if c not in cf.columns]
            if missing:
                new.error = f"the churn population lacks {', '.join(missing[:5])} needed by the {CHURN} champion"
                return new
            scores = positive_scores(churn.champion, cf[names]) if len(cf) else np.array([])
            new.churn_scores = pd.Series(scores, index=cf.index)
            new.churn_version = churn.version
        except Exception as e:  # noqa: BLE001 - the error is served by /ready
            new.error = f"scoring the feature snapshot failed: {type(e).__name__}: {e}".splitlines()[0]
            return new
        try:  # the reasons of every seller, once per (model version, dt_ref): a request reads one row
            from ..ml.explain import explain

            new.churn_explanation = explain(churn.champion, cf[names]) if len(cf) else None
            new.churn_rows = {sid: i for i, sid in enumerate(cf.index)}
        except Exception as e:  # noqa: BLE001 - scores still served; ?explain answers 503 with this
            new.explain_error = f"{type(e).__name__}: {e}".splitlines()[0]
        return new

    # ---- background poller ---------------------------------------------------------------
    def start(self) -> None:
        from .served_log import ServedLog

        if self.served is None:
            self.served = ServedLog(self.settings)
        self.refresh()
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="olist-ml-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.served is not None:
            self.served.close()
            self.served = None

    def log_served(self, problem: str, slot, dt_ref, keys: list[dict], features, scores, endpoint: str) -> None:
        """Append an answer to the served log (never blocks; nothing when the log is not started)."""
        if self.served is not None:
            self.served.record(
                problem,
                model_name=slot.info().get("model_name") or problem,
                model_version=slot.version,
                dt_ref=dt_ref,
                keys=keys,
                features=features,
                scores=scores,
                endpoint=endpoint,
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # never let the poller die
                log.exception("serving refresh failed")

    # ---- readiness -------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, list[str]]:
        """(ready, reasons): every served champion loaded and confirmed by the registry at the last
        poll, the feature snapshot loaded from the warehouse as it is now, and every endpoint's data
        (churn scores, the order context) built."""
        reasons = []
        for name in self.problems:
            slot = self.slots[name]
            if not slot.ready:
                reasons.append(f"{name}: {slot.error or 'champion not loaded'}")
            elif slot.fault:
                reasons.append(f"{name}: {slot.fault} (version {slot.version} still served from memory)")
        snap = self.features
        if not snap.ready:
            reasons.append(f"features: {snap.error or 'not loaded'}")
        else:
            if self.features_fault:
                reasons.append(f"features: {self.features_fault} (dt_ref {snap.dt_ref} still served from memory)")
            churn = self.slots.get(CHURN)
            if churn is not None and churn.ready and snap.churn_scores is None:
                reasons.append(f"{CHURN}: no scores at dt_ref {snap.dt_ref}: {snap.error or 'not scored yet'}")
            if DELAY in self.problems and snap.delay is None:
                reasons.append(f"{DELAY}: order context not loaded: {snap.error or 'loading'}")
        return (not reasons), reasons
