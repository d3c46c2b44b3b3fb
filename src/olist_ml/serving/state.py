"""What one serving process holds in memory: the champions and the latest feature rows.

* `ChampionSlot` keeps one problem's champion. A background poller asks the registry which
  version the `champion` alias points at (one cheap query) at most every `poll_seconds`;
  when it moved, the new version is loaded aside and swapped in (no restart, no request
  ever sees a half-loaded model).
* `FeatureSnapshot` holds the feature rows of the latest dt_ref, indexed by seller, and the
  churn champion's score of every seller (scored once per (model version, dt_ref), so a
  request is a dictionary lookup). The warehouse is opened read-only and only for the time of
  a refresh, so batch jobs can still write it; a refresh happens when the warehouse file
  changes (mtime/size of the file and its WAL).
* `DelayContext` is what scoring a NEW order needs, copied into an in-memory DuckDB at the same
  refresh: every order's own facts (`order_delay.base_sql()`, the history the route/state/market
  context aggregates), customers, sellers, zip coordinates and the feature store's rows at the
  latest dt_ref. A request's feature row is computed by `order_delay.request_frame` (the ABT's
  own SQL) against it, so the API's row equals the batch row of an order with the same attributes.
"""

from __future__ import annotations

import logging
import os
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
def _mlflow_store_missing(settings: Settings) -> str | None:
    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        p = Path(uri[len("sqlite:///"):])
        if not p.exists():
            return f"no MLflow store at {p}: run `olist-ml train PROBLEM` first"
    return None


def _client(settings: Settings):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.model_registry_uri)


def alias_version(settings: Settings, model_name: str, client=None) -> str | None:
    """Version the `champion` alias points at, or None when there is none (cheap: one query)."""
    if _mlflow_store_missing(settings):
        return None
    from mlflow.exceptions import MlflowException

    client = client or _client(settings)
    try:
        return str(client.get_model_version_by_alias(model_name, ALIAS).version)
    except MlflowException:
        return None


def load_champion(settings: Settings, model_name: str):
    """The champion through the ml area's loader (`olist_ml.ml.registry.load_champion`)."""
    missing = _mlflow_store_missing(settings)
    if missing:
        raise MissingStepError(missing)
    from ..ml.registry import load_champion as _load

    return _load(settings, model_name)


def positive_scores(champion, frame: pd.DataFrame) -> np.ndarray:
    """P(target = 1) for every row, whatever shape `predict_proba` returns."""
    p = np.asarray(champion.predict_proba(frame))
    if p.ndim == 2:
        p = p[:, -1]
    return p.astype(float)


@dataclass
class ChampionSlot:
    problem: str
    champion: Any = None
    version: str | None = None
    loaded_at: float | None = None
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.champion is not None

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
    p = settings.warehouse
    sig = []
    for f in (p, p.with_name(p.name + ".wal")):
        try:
            st = os.stat(f)
            sig.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            sig.append(None)
    return None if sig[0] is None else tuple(sig)


def latest_feature_frames(con, settings: Settings, problems: tuple[str, ...]) -> tuple[date, pd.DataFrame, pd.DataFrame | None]:
    """(latest dt_ref, every seller's feature-store row at it, the churn population at it).

    The churn population is the churn problem's own scoring frame (eligible sellers, with the
    ABT's features); None when the churn problem is not served.
    """
    from ..features import available_dt_refs, feature_frame_sql

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
        from ..features import FEATURE_TABLES
        from ..features.build import BUILD_LOG
        from ..problems import order_delay

        self.dt_ref = dt_ref
        self.settings = settings
        db = duckdb.connect(":memory:")
        try:
            db.execute("ATTACH '" + str(settings.warehouse).replace("'", "''") + "' AS wh (READ_ONLY)")
            try:
                have = {r[0] for r in db.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = 'wh' AND schema_name = 'main'"
                ).fetchall()}
                need = list(order_delay.STG_TABLES) + list(FEATURE_TABLES) + [BUILD_LOG]
                missing = [t for t in need if t not in have]
                if missing:
                    raise MissingStepError(f"warehouse has no table {', '.join(missing)}: run `olist-ml ingest SOURCE` "
                                           "and `olist-ml features build` first")
                for t in order_delay.STG_TABLES + (["stg_geolocation"] if "stg_geolocation" in have else []):
                    db.execute(f"CREATE TABLE main.{t} AS SELECT * FROM wh.main.{t}")
                if geo.GEO_TABLE in have:
                    db.execute(f"CREATE TABLE main.{geo.GEO_TABLE} AS SELECT * FROM wh.main.{geo.GEO_TABLE}")
                for t in FEATURE_TABLES:
                    db.execute(f"CREATE TABLE main.{t} AS SELECT * FROM wh.main.{t} WHERE dt_ref = ?", [dt_ref])
                db.execute(f"CREATE TABLE main.{BUILD_LOG} AS SELECT * FROM wh.main.{BUILD_LOG} WHERE dt_ref = ?",
                           [dt_ref])
            finally:
                db.execute("DETACH wh")
            if geo.GEO_TABLE not in have:
                geo.build_zip_coordinates(db)
            db.execute(f"CREATE TABLE {DELAY_HISTORY} AS {order_delay.base_sql()}")
            for t in ("stg_orders", "stg_order_items", "stg_products", "stg_order_payments", "stg_geolocation"):
                db.execute(f"DROP TABLE IF EXISTS {t}")  # folded into the history
        except BaseException:
            db.close()
            raise
        self.db = db

    def frame(self, orders: pd.DataFrame) -> pd.DataFrame:
        """The order_delay ABT row of each order; the seller's feature-store row is the one at
        dt_ref (what is known now: for an order bought at or after dt_ref this is exactly the
        ABT's as-of row)."""
        from ..problems import order_delay

        cur = self.db.cursor()  # one connection per call: requests run on several threads
        try:
            return order_delay.request_frame(cur, self.settings, orders, as_of=pd.Timestamp(self.dt_ref),
                                             history=DELAY_HISTORY)
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
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _client: Any = None

    def __post_init__(self) -> None:
        for p in self.problems:
            self.slots.setdefault(p, ChampionSlot(p))

    # ---- refresh -----------------------------------------------------------------------
    def refresh(self) -> None:
        """One poll: reload any champion whose alias moved, reload features if the store changed."""
        with self._lock:
            for name in self.problems:
                self._refresh_champion(name)
            self._refresh_features()

    def _registry_client(self):
        if self._client is None and not _mlflow_store_missing(self.settings):
            self._client = _client(self.settings)
        return self._client

    def _refresh_champion(self, name: str) -> None:
        slot = self.slots[name]
        try:
            missing = _mlflow_store_missing(self.settings)
            if missing:
                slot.error = missing
                return
            version = alias_version(self.settings, name, self._registry_client())
            if version is None:
                if slot.champion is None:
                    slot.error = f"no `{ALIAS}` alias on registered model {name}: run `olist-ml train {name}` first"
                return
            if version == slot.version and slot.champion is not None:
                return
            champ = load_champion(self.settings, name)
            new_version = str(getattr(champ, "version", version))
            self.slots[name] = ChampionSlot(name, champ, new_version, time.time(), None)
            log.info("loaded %s champion version %s", name, new_version)
        except OlistMLError as e:
            slot.error = str(e)
        except Exception as e:  # keep serving the old model; /ready shows why
            slot.error = f"{type(e).__name__}: {e}".splitlines()[0]
            log.exception("loading the %s champion failed", name)

    def _refresh_features(self) -> None:
        snap = self.features
        sig = warehouse_signature(self.settings)
        churn = self.slots.get(CHURN)
        churn_version = churn.version if churn and churn.ready else None
        if sig is None:
            snap.error = f"no warehouse at {self.settings.warehouse}: run `olist-ml ingest SOURCE` first"
            return
        if sig == snap.signature and snap.ready:
            if churn_version != snap.churn_version:
                self.features = self._score(snap, churn)
            return
        try:
            from .. import warehouse

            with warehouse.session(self.settings, read_only=True) as con:
                dt_ref, store, churn_frame = latest_feature_frames(con, self.settings, self.problems)
            frame = _by_seller(store)
            delay = DelayContext(self.settings, dt_ref) if DELAY in self.problems else None
            new = FeatureSnapshot(dt_ref=dt_ref, frame=frame, churn_frame=_by_seller(churn_frame), delay=delay,
                                  signature=sig, loaded_at=time.time())
            self.features = self._score(new, churn)
            log.info("loaded features at dt_ref %s (%d sellers)", dt_ref, len(frame))
        except OlistMLError as e:
            snap.error = str(e)
        except Exception as e:  # e.g. the warehouse is locked by a writer: keep the old snapshot
            snap.error = f"feature store unreachable: {type(e).__name__}: {e}".splitlines()[0]

    def _score(self, snap: FeatureSnapshot, churn: ChampionSlot | None) -> FeatureSnapshot:
        new = FeatureSnapshot(dt_ref=snap.dt_ref, frame=snap.frame, churn_frame=snap.churn_frame, delay=snap.delay,
                              signature=snap.signature, loaded_at=snap.loaded_at)
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
        except Exception as e:
            new.error = f"scoring the feature snapshot failed: {type(e).__name__}: {e}".splitlines()[0]
        return new

    # ---- background poller ---------------------------------------------------------------
    def start(self) -> None:
        self.refresh()
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="olist-ml-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # never let the poller die
                log.exception("serving refresh failed")

    # ---- readiness -------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, list[str]]:
        reasons = []
        for name in self.problems:
            slot = self.slots[name]
            if not slot.ready:
                reasons.append(f"{name}: {slot.error or 'champion not loaded'}")
        if not self.features.ready:
            reasons.append(f"features: {self.features.error or 'not loaded'}")
        return (not reasons), reasons
