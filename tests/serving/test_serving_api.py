"""The serving API under a real `olist-ml serve` process (uvicorn on a free loopback port)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from olist_ml.config import Settings
from support.serving_world import (
    latest_frames,
    make_feature_store,
    promote,
    running_server,
    train_champion,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORDER = {
    "order_id": "o1",
    "seller_id": None,
    "customer_state": "SP",
    "order_value": 80.0,
    "freight_value": 25.0,
    "n_items": 1,
    "payment_type": "credit_card",
    "product_category": "health_beauty",
    "order_purchase_timestamp": "2018-08-01T10:00:00",
    "order_approved_at": "2018-08-01T10:30:00",
    "order_estimated_delivery_date": "2018-08-13T00:00:00",
}
# raw order attributes: the ABT's order columns a client sends as they are
RAW_ABT_COLUMNS = [
    "order_value",
    "freight_value",
    "n_items",
    "n_products",
    "n_sellers",
    "total_weight_g",
    "max_item_weight_g",
    "total_volume_cm3",
    "product_category",
    "payment_type",
    "payment_installments",
    "n_payments",
]


@pytest.fixture(scope="module")
def served(serving_home):
    """The session's real small warehouse + feature store, churn and delay champions trained by the real
    machinery, batch scores (tests/serving/conftest.py), and one server (with a token)."""
    s = serving_home
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


def _scoring_date(s: Settings):
    """The date the server scores orders at: the observed end of the warehouse (`predict delay`'s default)."""
    from olist_ml import warehouse
    from olist_ml.problems import order_delay

    with warehouse.session(s, read_only=True) as con:
        return order_delay.default_scoring_date(con)


def _order_at(s: Settings, days: int = 0, **kw) -> dict:
    """ORDER bought `days` days before the scoring date D (0: a new order bought on D, 10:00), promised
    12 days after its purchase."""
    p = pd.Timestamp(_scoring_date(s)) - pd.Timedelta(days=days) + pd.Timedelta(hours=10)
    return {
        **ORDER,
        "order_purchase_timestamp": p.isoformat(),
        "order_approved_at": (p + pd.Timedelta(minutes=30)).isoformat(),
        "order_estimated_delivery_date": (p.normalize() + pd.Timedelta(days=12)).isoformat(),
        **kw,
    }


def _expected_delay(s: Settings, dt_ref, orders: list[dict]) -> tuple[np.ndarray, pd.DataFrame]:
    """The delay champion on `order_delay.request_frame` computed on the warehouse itself, at the
    scoring date."""
    from olist_ml import warehouse
    from olist_ml.ml.registry import load_champion
    from olist_ml.problems import order_delay

    req = pd.DataFrame(orders)
    for c in req.columns:
        if c.endswith(("_timestamp", "_date", "_at")):
            req[c] = pd.to_datetime(req[c])
    with warehouse.session(s, read_only=True) as con:
        frame = order_delay.request_frame(con, s, req, as_of=order_delay.default_scoring_date(con))
    champ = load_champion(s, "order_delay")
    return champ.predict_proba(frame), frame


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
    s, url, dt_ref, sellers, store = served
    d = _scoring_date(s)
    ORDER = _order_at(s, 0, seller_id=sellers[2])  # a new order, bought on the scoring date
    r = httpx.post(url + "/orders/delay", json=ORDER, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["order_id"] == "o1" and body["seller_known"] is True and body["model_name"] == "order_delay"
    assert body["dt_ref"] == str(dt_ref)
    assert (body["check_point"], body["in_flight"], body["past_promise"]) == (str(d), False, False)
    # the server computed the whole ABT row (derived and context features) from the raw attributes
    expected, frame = _expected_delay(s, dt_ref, [ORDER])
    assert body["score"] == pytest.approx(float(expected[0]), abs=1e-9)
    row = frame.iloc[0]
    assert row["promised_days"] == 12 and row["approval_hours"] == 0.5
    assert row["purchase_weekday"] == (pd.Timestamp(d).dayofweek + 1) % 7  # DuckDB: Sunday 0
    assert row["days_in_flight"] == 0 and row["days_left"] == 12 and row["handed_to_carrier"] == 0
    assert row["freight_ratio"] == pytest.approx(25 / 80)
    assert pd.notna(row["market_pct_late_14d"]) and pd.notna(row["now_market_pct_late_14d"])
    assert isinstance(row["seller_state"], str) and len(row["seller_state"]) == 2  # from stg_sellers
    # attributes the order did not carry are listed (and left to the imputer)
    assert "total_weight_g" in body["imputed"] and "order_value" not in body["imputed"]
    # a field named like a feature overrides the computed value
    r = httpx.post(url + "/orders/delay", json={**ORDER, "distance_km": 2500.0, "total_weight_g": 800.0}, headers=AUTH)
    assert r.status_code == 200 and "total_weight_g" not in r.json()["imputed"]
    X = frame.copy()
    X["distance_km"], X["total_weight_g"] = 2500.0, 800.0
    from olist_ml.ml.registry import load_champion

    champ = load_champion(s, "order_delay")
    assert r.json()["score"] == pytest.approx(float(champ.predict_proba(X)[0]), abs=1e-9)

    # bad types / ranges -> 422 naming the field
    r = httpx.post(url + "/orders/delay", json={**ORDER, "order_value": -5}, headers=AUTH)
    assert r.status_code == 422 and "order_value" in r.json()["detail"]
    r = httpx.post(url + "/orders/delay", json={**ORDER, "freight_value": "lots"}, headers=AUTH)
    assert r.status_code == 422 and "freight_value" in r.json()["detail"]
    r = httpx.post(url + "/orders/delay", json={**ORDER, "order_purchase_timestamp": "yesterday"}, headers=AUTH)
    assert r.status_code == 422 and "order_purchase_timestamp" in r.json()["detail"]
    r = httpx.post(url + "/orders/delay", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    # strict: an own feature the request leaves NULL -> 422 listing it
    r = httpx.post(url + "/orders/delay?strict=true", json=ORDER, headers=AUTH)
    assert r.status_code == 422 and "total_weight_g" in r.json()["detail"], r.text
    # a seller without feature rows still gets a score, flagged
    r = httpx.post(url + "/orders/delay", json={**ORDER, "seller_id": "brand-new"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["seller_known"] is False


def test_order_in_flight_is_scored_by_its_state_now(served):
    """An order bought before the scoring date D is scored by its row at D: days in flight, handed to a
    carrier (a hand-over on/after D has not happened yet), days left; past its promise: 1.0."""
    s, url, dt_ref, sellers, _ = served
    d = _scoring_date(s)
    p = pd.Timestamp(d) - pd.Timedelta(days=5)  # bought D - 5 days, promised D + 7 days
    flying = _order_at(s, 5, seller_id=sellers[1], order_delivered_carrier_date=(p + pd.Timedelta(days=3)).isoformat())
    r = httpx.post(url + "/orders/delay", json=flying, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["check_point"], body["in_flight"], body["past_promise"]) == (str(d), True, False)
    expected, frame = _expected_delay(s, dt_ref, [flying])
    assert body["score"] == pytest.approx(float(expected[0]), abs=1e-9)
    row = frame.iloc[0]
    assert str(pd.Timestamp(row["dt_ref"]).date()) == str(d)
    assert (row["days_in_flight"], row["handed_to_carrier"], row["days_since_carrier"], row["days_left"]) == (
        5,
        1,
        2,
        7,
    )
    assert pd.notna(row["now_market_pct_overdue_45d"])
    # the same order not handed over yet (no carrier date, or one from D on: not happened at D)
    waiting = [
        {**flying, "order_id": "w1", "order_delivered_carrier_date": None},
        {
            **flying,
            "order_id": "w2",
            "order_delivered_carrier_date": (pd.Timestamp(d) + pd.Timedelta(hours=1)).isoformat(),
        },
    ]
    r = httpx.post(url + "/batch/delay", json={"orders": waiting}, headers=AUTH)
    assert r.status_code == 200, r.text
    w1, w2 = r.json()["results"]
    assert w1["score"] == pytest.approx(w2["score"], abs=1e-12) and w1["in_flight"] and w2["in_flight"]
    _, wf = _expected_delay(s, dt_ref, waiting)
    assert list(wf["handed_to_carrier"]) == [0, 0] and wf["days_since_carrier"].isna().all()
    # the state matters: the model does not give the handed-over order the score of the waiting one
    assert w1["score"] != body["score"]
    # past its promise and not delivered: late for certain
    late = _order_at(s, 20, seller_id=sellers[1], order_id="late")  # promised D - 8 days
    r = httpx.post(url + "/orders/delay", json=late, headers=AUTH).json()
    assert r["in_flight"] and r["past_promise"] and r["score"] == 1.0


def _open_orders_as_requests(s: Settings, n: int) -> tuple[list[dict], dict[str, float]]:
    """Orders of the batch scores (`scores_order_delay`: the orders in flight at the scoring date), as a
    client would send them: raw ids/dates from stg_orders/stg_order_items (the carrier hand-over too) and
    the summed item attributes; handed-over ones first."""
    from olist_ml import warehouse
    from olist_ml.problems import order_delay

    with warehouse.session(s, read_only=True) as con:
        scored = con.execute(
            "SELECT order_id, score FROM scores_order_delay s JOIN stg_orders o USING (order_id) "
            "ORDER BY o.order_delivered_carrier_date IS NULL, order_id"
        ).df()
        frame = con.execute(f"SELECT * FROM ({order_delay.orders_sql()}) o").df()
        raw = con.execute(
            "SELECT o.order_id, o.order_purchase_timestamp, o.order_approved_at, o.order_delivered_carrier_date, "
            "o.order_estimated_delivery_date, max(i.shipping_limit_date) AS shipping_limit_date "
            "FROM stg_orders o JOIN stg_order_items i USING (order_id) GROUP BY ALL"
        ).df()
    assert len(scored) >= n, f"only {len(scored)} batch-scored orders"
    scored = scored.head(n)
    rows = frame.merge(raw, on="order_id").set_index("order_id").loc[scored["order_id"]].reset_index()
    out = []
    for r in rows.to_dict("records"):
        d = {k: r[k] for k in ["order_id", "seller_id", "customer_id", *RAW_ABT_COLUMNS] if pd.notna(r[k])}
        for k in (
            "order_purchase_timestamp",
            "order_approved_at",
            "order_delivered_carrier_date",
            "order_estimated_delivery_date",
            "shipping_limit_date",
        ):
            if pd.notna(r[k]):
                d[k] = pd.Timestamp(r[k]).isoformat()
        out.append({k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()})
    return out, dict(zip(scored["order_id"], scored["score"].astype(float), strict=False))


def test_api_delay_score_equals_the_batch_score(served):
    """The same order scored by the API (raw attributes in the request) and by the batch job
    (`olist_ml.ml.scoring.predict` -> scores_order_delay, from the ABT SQL over the warehouse)."""
    s, url, dt_ref, _, _ = served
    orders, batch = _open_orders_as_requests(s, 8)
    r = httpx.post(url + "/batch/delay", json={"orders": orders}, headers=AUTH)
    assert r.status_code == 200, r.text
    got = {x["order_id"]: x["score"] for x in r.json()["results"]}
    assert got.keys() == batch.keys()
    for oid, score in batch.items():
        assert got[oid] == pytest.approx(score, abs=1e-6), oid
    one = httpx.post(url + "/orders/delay", json=orders[0], headers=AUTH).json()
    assert one["score"] == pytest.approx(batch[orders[0]["order_id"]], abs=1e-6)
    # in flight at the scoring date, and some already with a carrier
    d = str(_scoring_date(s))
    assert all(x["in_flight"] and x["check_point"] == d for x in r.json()["results"])
    assert "order_delivered_carrier_date" in orders[0]
    # the scores are not all equal (the row matters), and context features were not imputed
    assert len({round(v, 9) for v in got.values()}) > 1
    assert "route_pct_late_90d" not in one["imputed"] and "promise_slack_days" not in one["imputed"]


def test_batch_delay(served):
    s, url, _, sellers, _ = served
    ORDER = _order_at(s, 0, seller_id=sellers[0])
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
    r = httpx.post(url + "/batch/delay", json={"orders": [ORDER, ORDER]}, headers=AUTH)
    assert r.status_code == 422 and "o1" in r.json()["detail"]


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

        v1 = train_champion(s, "churn", ("logreg",))
        first = _wait_for_version(url, sid, v1)
        v2 = train_champion(s, "churn", ("lightgbm",))  # champion or challenger by the rule: promote it by hand
        assert v2 != v1
        promote(s, "churn", v2)
        second = _wait_for_version(url, sid, v2)
        assert second["score"] != pytest.approx(first["score"], abs=1e-9)
        assert second["score"] == pytest.approx(_expected_churn(s, sid), abs=1e-9)
        assert httpx.get(url + "/ready").json()["models"]["seller_churn"]["model_version"] == v2


def _wait_for_version(url: str, sid: str, version: str, timeout: float = 30.0) -> dict:
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
    train_champion(s, "churn")
    old = set(latest_frames(s)[2]["seller_id"].astype(str))
    with running_server(s, poll_seconds=0.3, extra_args=("--problem", "churn")) as url:
        make_feature_store(s, seed=2)
        new = list(set(latest_frames(s)[2]["seller_id"].astype(str)) - old)
        assert new, "the second synthetic data set has no new sellers"
        sid = new[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = httpx.get(url + f"/sellers/{sid}/churn")
            if r.status_code == 200:
                break
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        assert r.json()["score"] == pytest.approx(_expected_churn(s, sid), abs=1e-9)


def test_every_answer_is_logged_and_monitor_reads_the_log(served):
    """Served predictions are records too: each answer lands in <home>/served (request id, version, the
    features the model saw, the score) without blocking; `monitor` compares them with the batch scores."""
    import time

    import duckdb

    from olist_ml.problems import get
    from olist_ml.serving import served_log

    s, url, dt_ref, sellers, _ = served
    churn = httpx.get(url + f"/sellers/{sellers[0]}/churn", headers=AUTH).json()
    orders, batch = _open_orders_as_requests(s, 5)
    answered = {
        x["order_id"]: x["score"]
        for x in httpx.post(url + "/batch/delay", json={"orders": orders}, headers=AUTH).json()["results"]
    }
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the writer thread flushes each batch it drains
        log_c, log_d = served_log.read(s, "seller_churn"), served_log.read(s, "order_delay")
        if len(log_c) and len(log_d) >= len(orders):
            break
        time.sleep(0.2)
    row = log_c[log_c["key.seller_id"] == sellers[0]].iloc[-1]
    assert row["score"] == pytest.approx(churn["score"], abs=1e-12) and row["model_version"] == churn["model_version"]
    assert row["dt_ref"] == str(dt_ref) and len(row["request_id"]) == 32
    champ_features = [c for c in log_c.columns if c.startswith("features.")]
    assert len(champ_features) > 5  # the champion's inputs, as served
    d = (
        log_d[log_d["endpoint"] == "/batch/delay"]
        .drop_duplicates("key.order_id", keep="last")
        .set_index("key.order_id")
    )
    for oid, score in answered.items():
        assert d.loc[oid, "score"] == pytest.approx(score, abs=1e-12)
    # monitor's view: served vs batch scores of the same orders at the same scoring date
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        scores = con.execute("SELECT * FROM scores_order_delay").df()
    summary = served_log.summary(s, get("delay"), scores, scores.head(0), [])
    cmp = summary["served_vs_batch"]
    assert cmp["n_compared"] >= len(batch) and cmp["max_abs_diff"] < 1e-6, summary
    assert summary["requests"] >= 1 and summary["rows"] >= len(orders)
