"""The serving tests' shared world, built once per test session: synthetic data -> ingest -> monthly
feature store -> churn and delay champions trained by the real machinery -> batch scores of both (what
`olist-ml predict` writes, reasons included). Tests that break files work on a copy."""

from __future__ import annotations

import pytest

from olist_ml.config import Settings
from support.serving_world import make_feature_store, train_champion


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory) -> Settings:
    from olist_ml.ml.scoring import predict
    from olist_ml.problems import get

    s = Settings(home=tmp_path_factory.mktemp("serving") / "home")
    make_feature_store(s)
    train_champion(s, "churn")
    train_champion(s, "delay")
    predict(get("churn"), s)
    predict(get("delay"), s)
    return s
