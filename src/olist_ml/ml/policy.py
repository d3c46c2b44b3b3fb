"""When the daily run retrains a problem: on a policy, not whenever its ABT changed.

The ABT changes every day (labels mature every day); that is no reason to retrain. A problem is
retrained when one of these holds, checked in this order:

1. `--retrain` (or `force`) was given;
2. no version of it was ever registered;
3. it is DUE: the data has grown `<problem>.retrain_every_days` days (data time: the observed end of
   the data, `olist_ml.warehouse.observed_end`, so a replay of old extracts behaves like the live
   schedule) since the data the latest registered version was trained on ended (its `data_end`
   tag); a version without that tag (trained before the policy) is due once;
4. the data the latest version was trained on was revised since: the fingerprint of the facts its
   problem reads as known at its `data_end` (`olist_ml.lineage.asof_fingerprints`, tag `data_fp`) is
   not what it was (history rewritten: other prices, another data set). A daily extract never
   changes it: its new facts are all known after that day;
5. the champion was trained with other settings than the current ones (it could not score);
6. monitoring says so (`monitoring`: realised performance below the quality gate, or score drift
   above `monitoring.drift_psi`), ONCE per champion: while the champion is the latest version and no
   retrain was tried on such evidence for it (tag `monitoring_retrain_on`, set by the daily run when it
   acts on it, whether the attempt registered a version or found the same ABT it was trained on); after
   that, the next retrain waits for the due date.

Otherwise the champion scores and the run says `next retrain due on D (...)`. A retrain goes through
the whole protocol, gate and champion rule (`olist_ml.ml.train`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..config import Settings
from ..errors import SettingsMismatchError
from . import registry, tracking
from .problem import SETTINGS_TAG, Problem

DATA_END_TAG = "data_end"  # on every registered version: the exclusive end of the data it was trained on
DATA_FP_TAG = "data_fp"  # ... and the fingerprint of the facts its problem reads as known then
MONITORING_TAG = "monitoring_retrain_on"  # the day a retrain was tried on monitoring's evidence for this version
MONITORING = "monitoring: "  # the reason's prefix of a retrain monitoring asked for


@dataclass(frozen=True)
class RetrainDecision:
    due: bool
    reason: str  # why it retrains now, or when it will
    next_due: dt.date | None = None
    latest_version: str | None = None


def note_monitoring_attempt(settings: Settings, problem: Problem, decision: RetrainDecision, today: dt.date) -> None:
    """Remember on the version monitoring asked to replace that a retrain was tried (rule 6: once)."""
    if decision.reason.startswith(MONITORING) and decision.latest_version is not None:
        registry.set_version_tag(settings, problem.name, decision.latest_version, MONITORING_TAG, str(today))


def every_days(problem: Problem, settings: Settings) -> int:
    sec = problem.section(settings)
    return int(getattr(sec, "retrain_every_days", 0) or 0) if sec is not None else 0


def latest_version(settings: Settings, name: str):
    """The most recently registered ModelVersion of `name` (any decision), or None."""
    from mlflow.exceptions import MlflowException

    try:
        versions = tracking.client(settings).search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version)) if versions else None


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(text)[:10]) if text else None
    except ValueError:
        return None


def decide(
    problem: Problem,
    settings: Settings,
    today: dt.date,
    *,
    force: bool = False,
    monitoring: Iterable[str] = (),
    asof: Callable[[dt.date], str] | None = None,
) -> RetrainDecision:
    """Whether the daily run retrains `problem` on data that ends (exclusively) on `today` (module doc).
    `asof(day)`: the fingerprint of the problem's facts as known at `day` now (rule 4; None: not checked)."""
    if force:
        return RetrainDecision(True, "--retrain")
    latest = latest_version(settings, problem.name)
    if latest is None:
        return RetrainDecision(True, "no version registered yet")
    v = str(latest.version)
    end = _date((latest.tags or {}).get(DATA_END_TAG))
    if end is None:
        return RetrainDecision(True, f"v{v} records no {DATA_END_TAG} (trained before the retrain policy)", None, v)
    n = every_days(problem, settings)
    next_due = end + dt.timedelta(days=n)
    if today >= next_due:
        return RetrainDecision(
            True, f"due: the data grew {(today - end).days} days since v{v}'s ended on {end} (every {n})", next_due, v
        )
    recorded = (latest.tags or {}).get(DATA_FP_TAG)
    if asof is not None and recorded and asof(end) != recorded:
        return RetrainDecision(True, f"the data v{v} was trained on (until {end}) was revised since", next_due, v)
    champion = registry.alias_version(settings, problem.name)
    if champion is not None:
        try:
            problem.check_settings((champion.tags or {}).get(SETTINGS_TAG), settings, champion.version)
        except SettingsMismatchError as e:
            return RetrainDecision(True, f"settings changed ({e})", next_due, v)
        signals = list(monitoring)
        tried = (champion.tags or {}).get(MONITORING_TAG)
        if signals and str(champion.version) == v and not tried:
            return RetrainDecision(True, MONITORING + "; ".join(signals), next_due, v)
    return RetrainDecision(
        False, f"next retrain due on {next_due} (every {n} days; v{v}'s data ended on {end})", next_due, v
    )
