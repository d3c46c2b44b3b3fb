"""The retrain policy (`olist_ml.ml.policy`): due by data time, data revised, settings, monitoring; on a real
MLflow registry (sqlite) with versions registered the way training registers them."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from olist_ml.ml import policy, registry
from olist_ml.ml.problem import SETTINGS_TAG
from olist_ml.problems import get

END = dt.date(2018, 6, 1)


@pytest.fixture
def churn():
    return get("churn")


def _version(settings, problem, *, data_end=END, data_fp="fp-1", champion=True, **settings_rec) -> str:
    tags = {SETTINGS_TAG: json.dumps({**problem.settings_record(settings), **settings_rec})}
    if data_end is not None:
        tags[policy.DATA_END_TAG] = str(data_end)
    if data_fp is not None:
        tags[policy.DATA_FP_TAG] = data_fp
    settings.artifacts.mkdir(parents=True, exist_ok=True)
    mv = registry.register(settings, problem.name, str(settings.artifacts / "model"), None, tags)
    if champion:
        registry.record_decision(settings, problem.name, mv.version, registry.CHAMPION, "test")
    return str(mv.version)


def test_first_run_and_force_retrain(settings, churn):
    settings.home.mkdir(parents=True)
    assert policy.decide(churn, settings, END).due  # nothing registered yet
    _version(settings, churn)
    assert not policy.decide(churn, settings, END).due
    assert policy.decide(churn, settings, END, force=True).reason == "--retrain"


def test_due_counts_data_days_since_the_latest_version(settings, churn):
    settings.home.mkdir(parents=True)
    _version(settings, churn)
    n = churn.section(settings).retrain_every_days
    before = policy.decide(churn, settings, END + dt.timedelta(days=n - 1))
    assert not before.due and before.next_due == END + dt.timedelta(days=n) and "next retrain due on" in before.reason
    assert policy.decide(churn, settings, END + dt.timedelta(days=n)).due
    # the setting changes the cadence; 0 retrains every run
    assert policy.decide(churn, settings.with_(churn__retrain_every_days=3), END + dt.timedelta(days=3)).due
    assert policy.decide(churn, settings.with_(churn__retrain_every_days=0), END).due


def test_a_version_without_data_end_is_due_once(settings, churn):
    settings.home.mkdir(parents=True)
    _version(settings, churn, data_end=None)
    assert "records no data_end" in policy.decide(churn, settings, END).reason


def test_revised_data_and_changed_settings_make_it_due(settings, churn):
    settings.home.mkdir(parents=True)
    _version(settings, churn)
    same = policy.decide(churn, settings, END + dt.timedelta(days=1), asof=lambda d: "fp-1")
    assert not same.due
    revised = policy.decide(churn, settings, END + dt.timedelta(days=1), asof=lambda d: "fp-2")
    assert revised.due and "revised since" in revised.reason
    other = settings.with_(churn__horizon_days=30)  # the champion was trained with 45
    assert "settings changed" in policy.decide(churn, other, END + dt.timedelta(days=1)).reason


def test_monitoring_retrains_once_until_the_due_date(settings, churn):
    """A signal makes the champion's problem due, but only while the champion is the latest version:
    after a retrain on that evidence that did not beat it (a challenger), the next waits for the due date."""
    settings.home.mkdir(parents=True)
    _version(settings, churn)
    day = END + dt.timedelta(days=2)
    signal = ["realised ROC AUC below the baseline"]
    d = policy.decide(churn, settings, day, monitoring=signal)
    assert d.due and d.reason.startswith("monitoring: realised ROC AUC")
    _version(settings, churn, data_end=day, champion=False)  # the retrain: registered, not promoted
    after = policy.decide(churn, settings, day + dt.timedelta(days=1), monitoring=signal)
    assert not after.due and "next retrain due on" in after.reason


def test_monitoring_asks_once_even_when_the_retrain_finds_the_same_abt(settings, churn):
    """A signal that persists (the ABT has not changed, so the retrain found nothing new to learn) must
    not make every day due: the attempt is remembered on the champion."""
    settings.home.mkdir(parents=True)
    _version(settings, churn)
    day = END + dt.timedelta(days=2)
    signal = ["score PSI 0.3 of v1 between 2018-06-01 and 2018-06-03 above 0.25"]
    d = policy.decide(churn, settings, day, monitoring=signal)
    assert d.due
    policy.note_monitoring_attempt(settings, churn, d, day)  # what the daily run does when it acts on it
    later = policy.decide(churn, settings, day + dt.timedelta(days=1), monitoring=signal)
    assert not later.due and "next retrain due on" in later.reason
