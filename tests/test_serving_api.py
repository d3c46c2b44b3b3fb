"""The serving API under a real `olist-ml serve` process (uvicorn on a free loopback port)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from olist_ml.config import Settings
from test_serving_fixtures import (
    latest_frames,
    make_feature_store,
    register_churn_model,
    register_delay_model,
    running_server,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORDER = {"order_id": "o1", "seller_id": None, "customer_state": "SP", "order_value": 80.0, "freight_value": 25.0,
         "order_purchase_timestamp": "2018-08-01T10:00:00", "order_estimated_delivery_date": "2018-08-13T00:00:00"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One real small warehouse + feature store + registry and one server (with a token)."""
    home = tmp_path_factory.mktemp("serve") / "home"
    s = Settings(home=home)
    make_feature_store(s)
    register_churn_model(s)
    register_delay_model(s)
    dt_ref, store, churn = latest_frames(s)
    sellers = list(churn["seller_id"].astype(str))
    assert len(sellers) >= 3, "the synthetic churn population is too small for these tests"
    with running_server(s, token=TOKEN) as url:
        yield s, url, dt_ref, sellers, store


def _expected_churn(s: Settings, seller_id: str) -> float:
    """What the champion gives for the seller's row of the churn population, computed outside the server."""
    from olist_ml.ml.registry import load_champion

    _, _, churn = latest_frames(s)
    row = churn[churn["seller_id"] == seller_id]
    assert len(row) == 1
    champ = load_champion(s, "seller_churn")
    return float(np.asarray(champ.predict_proba(row[champ.feature_names])).ravel()[-1])


def test_health_is_open_and_ready_needs_token(served):
    _, url, dt_ref, _, _ = served
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert httpx.get(url + "/ready").status_code == 401
    assert httpx.get(url + "/ready", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = httpx.get(url + "/ready", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True and body["dt_ref"] == str(dt_ref)
    assert body["models"]["seller_churn"]["model_version"] == "1"


def test_token_required_on_scoring_endpoints(served):
    _, url, _, sellers, _ = served
    r = httpx.get(url + f"/sellers/{sellers[0]}/churn")
    assert r.status_code == 401 and "bearer" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    order = {**ORDER, "seller_id": sellers[0]}
    assert httpx.post(url + "/orders/delay", json=order, headers={"Authorization": "Basic abc"}).status_code == 401
    assert httpx.post(url + "/batch/churn", json={"seller_ids": sellers[:1]}).status_code == 401


def test_seller_churn_score_matches_the_champion(served):
    s, url, dt_ref, sellers, _ = served
    sid = sellers[len(sellers) // 2]
    r = httpx.get(url + f"/sellers/{sid}/churn", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seller_id"] == sid
    assert body["model_name"] == "seller_churn" and body["model_version"] == "1"
    assert body["dt_ref"] == str(dt_ref)
    assert body["score"] == pytest.approx(_expected_churn(s, sid), abs=1e-9)


def test_unknown_seller_is_404(served):
    _, url, _, _, _ = served
    r = httpx.get(url + "/sellers/not-a-seller/churn", headers=AUTH)
    assert r.status_code == 404
    assert "unknown seller not-a-seller" in r.json()["detail"]


def test_batch_churn(served):
    s, url, _, sellers, _ = served
    a, b = sellers[0], sellers[1]
    r = httpx.post(url + "/batch/churn", json={"seller_ids": [a, "ghost", b]}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["seller_id"] for x in body["results"]] == [a, b]
    assert body["unknown"] == ["ghost"]
    assert body["results"][1]["score"] == pytest.approx(_expected_churn(s, b), abs=1e-9)
    # validation: empty list and wrong type are 422 with a one-line reason
    r = httpx.post(url + "/batch/churn", json={"seller_ids": []}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"].startswith("invalid request: seller_ids")
    r = httpx.post(url + "/batch/churn", json={"sellers": [a]}, headers=AUTH)
    assert r.status_code == 422 and "seller_ids: Field required" in r.json()["detail"]


def test_order_delay_valid_and_invalid(served):
    s, url, _, sellers, store = served
    ORDER = {**globals()["ORDER"], "seller_id": sellers[2]}
    r = httpx.post(url + "/orders/delay", json=ORDER, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["order_id"] == "o1" and body["seller_known"] is True and body["model_name"] == "order_delay"
    assert body["imputed"] == ["route_pct_late_90d"]  # a context feature the request cannot carry
    # the score is the champion's on: the seller's store features (seller_ prefix) + the order's
    # attributes + promised_days derived from the two dates; the missing one left to the imputer
    from olist_ml.ml.registry import load_champion

    champ = load_champion(s, "order_delay")
    store_feature = champ.feature_names[0]
    assert store_feature.startswith("seller_")
    v = store.loc[store["seller_id"] == sellers[2], store_feature[len("seller_"):]].iloc[0]
    X = pd.DataFrame([{store_feature: v, "order_value": 80.0, "freight_value": 25.0,
                       "promised_days": 12.0, "route_pct_late_90d": np.nan}])
    assert body["score"] == pytest.approx(float(champ.predict_proba(X[champ.feature_names])[0]), abs=1e-9)
    # an extra field the champion needs is used as given
    r = httpx.post(url + "/orders/delay", json={**ORDER, "route_pct_late_90d": 0.9}, headers=AUTH)
    assert r.status_code == 200 and r.json()["imputed"] == []
    X["route_pct_late_90d"] = 0.9
    assert r.json()["score"] == pytest.approx(float(champ.predict_proba(X[champ.feature_names])[0]), abs=1e-9)

    # bad types / ranges -> 422 naming the field
    r = httpx.post(url + "/orders/delay", json={**ORDER, "order_value": -5}, headers=AUTH)
    assert r.status_code == 422 and "order_value" in r.json()["detail"]
    r = httpx.post(url + "/orders/delay", json={**ORDER, "freight_value": "lots"}, headers=AUTH)
    assert r.status_code == 422 and "freight_value" in r.json()["detail"]
    r = httpx.post(url + "/orders/delay", json={**ORDER, "order_purchase_timestamp": "yesterday"}, headers=AUTH)
    assert r.status_code == 422 and "order_purchase_timestamp" in r.json()["detail"]
    r = httpx.post(url + "/orders/delay", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    # strict: a feature neither sent nor derivable -> 422 listing it
    r = httpx.post(url + "/orders/delay?strict=true", json=ORDER, headers=AUTH)
    assert r.status_code == 422 and "route_pct_late_90d" in r.json()["detail"]
    # a seller without feature rows still gets a score (store features NULL), flagged
    r = httpx.post(url + "/orders/delay", json={**ORDER, "seller_id": "brand-new"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["seller_known"] is False


def test_batch_delay(served):
    _, url, _, sellers, _ = served
    ORDER = {**globals()["ORDER"], "seller_id": sellers[0]}
    orders = [ORDER, {**ORDER, "order_id": "o2", "freight_value": 90.0}]
    r = httpx.post(url + "/batch/delay", json={"orders": orders}, headers=AUTH)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["order_id"] for x in res] == ["o1", "o2"]
    single = httpx.post(url + "/orders/delay", json=ORDER, headers=AUTH).json()["score"]
    assert res[0]["score"] == pytest.approx(single, abs=1e-12)
    assert res[0]["score"] != res[1]["score"]
    r = httpx.post(url + "/batch/delay", json={"orders": [{"order_value": 1}]}, headers=AUTH)
    assert r.status_code == 422 and "orders.0.seller_id" in r.json()["detail"]


def test_openapi_docs(served):
    _, url, _, _, _ = served
    spec = httpx.get(url + "/openapi.json").json()
    for path in ("/health", "/ready", "/sellers/{seller_id}/churn", "/orders/delay", "/batch/churn", "/batch/delay"):
        assert path in spec["paths"], path
    assert "OrderIn" in spec["components"]["schemas"]
    assert httpx.get(url + "/docs").status_code == 200


def test_not_ready_without_champion_then_reload_on_alias_move(tmp_path: Path):
    """503 with the reason before any champion; then versions appear / the alias moves and the
    running server answers with the new version, no restart."""
    s = Settings(home=tmp_path / "home")
    make_feature_store(s)
    sid = str(latest_frames(s)[2]["seller_id"].iloc[0])
    with running_server(s, poll_seconds=0.3, extra_args=("--problem", "churn")) as url:
        r = httpx.get(url + "/ready")
        assert r.status_code == 503
        assert any("seller_churn" in x for x in r.json()["reasons"])
        assert httpx.get(url + f"/sellers/{sid}/churn").status_code == 503

        v1 = register_churn_model(s, coef_sign=1.0)
        first = _wait_for_version(url, sid, v1)
        v2 = register_churn_model(s, coef_sign=-1.0)  # a second version; _log_and_register moves the alias
        assert v2 != v1
        second = _wait_for_version(url, sid, v2)
        assert second["score"] != pytest.approx(first["score"])
        assert second["score"] == pytest.approx(_expected_churn(s, sid), abs=1e-9)
        assert httpx.get(url + "/ready").json()["models"]["seller_churn"]["model_version"] == v2


def _wait_for_version(url: str, sid: str, version: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = httpx.get(url + f"/sellers/{sid}/churn")
        last = r
        if r.status_code == 200 and r.json()["model_version"] == version:
            return r.json()
        time.sleep(0.2)
    raise AssertionError(f"server never answered with version {version}: {last.status_code} {last.text}")


def test_features_reload_when_the_store_changes(tmp_path: Path):
    """New data lands (re-ingest + features build while the server runs): the server picks up the
    new population without a restart."""
    s = Settings(home=tmp_path / "home")
    make_feature_store(s, seed=1)
    register_churn_model(s)
    old = set(latest_frames(s)[2]["seller_id"].astype(str))
    with running_server(s, poll_seconds=0.3, extra_args=("--problem", "churn")) as url:
        make_feature_store(s, seed=2)
        new = list(set(latest_frames(s)[2]["seller_id"].astype(str)) - old)
        assert new, "the second synthetic data set has no new sellers"
        sid = new[0]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = httpx.get(url + f"/sellers/{sid}/churn")
            if r.status_code == 200:
                break
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        assert r.json()["score"] == pytest.approx(_expected_churn(s, sid), abs=1e-9)
