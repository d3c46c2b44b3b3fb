"""Every failure of the serving API is one clear answer: non-finite numbers, body and batch limits,
clipped 422 echoes, typed feature overrides, generated ids, /ready that follows its files, and the
warning for a bind beyond loopback without a token.

The real app (FastAPI's TestClient over `create_app`) on a real warehouse + MLflow store built by the
real pipeline steps; the body limit also against a real `olist-ml serve` (uvicorn) process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from olist_ml.config import Settings
from olist_ml.serving.api import MAX_BATCH_ENV, MAX_BODY_ENV, TOKEN_ENV, create_app, exposure_warning, is_loopback
from support.serving_world import free_port, running_server

pytestmark = pytest.mark.timeout(300)

BODY_LIMIT = 20_000
BATCH_LIMIT = 5


@pytest.fixture(scope="module")
def home(serving_home) -> Settings:
    """The session's real small warehouse + feature store with churn and delay champions (real training)."""
    return serving_home


@pytest.fixture(scope="module")
def client(home):
    app = create_app(home, poll_seconds=0, token="", max_body_bytes=BODY_LIMIT, max_batch=BATCH_LIMIT)
    with TestClient(app) as c:
        assert c.get("/ready").status_code == 200, c.get("/ready").text
        yield c


def _sellers(c: TestClient) -> list[str]:
    """Sellers of the churn population at the served dt_ref (they have feature rows)."""
    return [str(x) for x in c.app.state.serving.features.churn_scores.index]


def _order(c: TestClient, **kw) -> dict:
    """A new order bought on the server's scoring date (scored at approval; not past its promise)."""
    d = pd.Timestamp(c.app.state.serving.features.delay.scoring_date)
    return {
        "seller_id": _sellers(c)[0],
        "customer_state": "SP",
        "order_value": 80.0,
        "freight_value": 25.0,
        "n_items": 1,
        "payment_type": "credit_card",
        "product_category": "health_beauty",
        "order_purchase_timestamp": (d + pd.Timedelta(hours=10)).isoformat(),
        "order_approved_at": (d + pd.Timedelta(hours=10, minutes=30)).isoformat(),
        "order_estimated_delivery_date": (d + pd.Timedelta(days=12)).isoformat(),
        **kw,
    }


def _post_raw(c: TestClient, path: str, text: str):
    return c.post(path, content=text.encode(), headers={"content-type": "application/json"})


def _strict(r) -> dict:
    """The response body parsed as strict JSON (no NaN/Infinity): what any client can read."""

    def refuse(token):
        raise AssertionError(f"non-JSON constant {token} in the response")

    return json.loads(r.content, parse_constant=refuse)


# ---------------------------------------------------------------------------------------
# 1. non-finite numbers anywhere in a body
# ---------------------------------------------------------------------------------------
def test_non_finite_numbers_anywhere_are_a_clean_422(client):
    order = json.dumps(_order(client))
    cases = [
        ("/orders/delay", order[:-1] + ', "total_weight_g": NaN}', "NaN"),  # was a 500
        ("/orders/delay", order[:-1] + ', "route_pct_late_90d": Infinity}', "Infinity"),  # was scored
        ("/orders/delay", order[:-1] + ', "approval_hours": -Infinity}', "-Infinity"),
        ("/orders/delay", order[:-1] + ', "distance_km": 1e999}', "1e999"),  # parses to inf in Python
        ("/batch/churn", '{"seller_ids": ["a", NaN]}', "NaN"),  # was a 500
        ("/batch/delay", '{"orders": [' + order + ", " + order[:-1] + ', "route_pct_late_90d": NaN}]}', "NaN"),
    ]
    for path, text, token in cases:
        r = _post_raw(client, path, text)
        assert r.status_code == 422, (path, token, r.status_code, r.text[:300])
        body = _strict(r)
        assert token in body["detail"] and "finite" in body["detail"], body["detail"]
        assert body["detail"].startswith("invalid request: body: not valid JSON")
    # a string "NaN" is a string, and a finite number is fine
    r = client.post("/orders/delay", json=_order(client, order_id="NaN", distance_km=12345.5))
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------------------
# 2. body-size and batch-size limits
# ---------------------------------------------------------------------------------------
def _padded(body: dict, size: int) -> bytes:
    """`body` as JSON padded with trailing spaces to exactly `size` bytes (still valid JSON)."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def test_body_limit_is_413_and_the_limit_itself_passes(client):
    ids = _sellers(client)[:2]
    headers = {"content-type": "application/json"}
    r = client.post("/batch/churn", content=_padded({"seller_ids": ids}, BODY_LIMIT), headers=headers)
    assert r.status_code == 200, r.text
    r = client.post("/batch/churn", content=_padded({"seller_ids": ids}, BODY_LIMIT + 1), headers=headers)
    assert r.status_code == 413
    assert f"over {BODY_LIMIT} bytes" in r.json()["detail"] and MAX_BODY_ENV in r.json()["detail"]
    # a 50 MB order is refused, not scored
    r = client.post("/orders/delay", json=_order(client, product_category="x" * 50_000_000))
    assert r.status_code == 413


def test_batch_limit_is_422_naming_the_setting(client):
    ids = _sellers(client)
    assert len(ids) > BATCH_LIMIT
    assert client.post("/batch/churn", json={"seller_ids": ids[:BATCH_LIMIT]}).status_code == 200
    r = client.post("/batch/churn", json={"seller_ids": ids[: BATCH_LIMIT + 1]})
    assert r.status_code == 422
    assert f"at most {BATCH_LIMIT} items per batch" in r.json()["detail"] and MAX_BATCH_ENV in r.json()["detail"]
    r = client.post("/batch/delay", json={"orders": [_order(client, order_id=f"o{i}") for i in range(BATCH_LIMIT + 1)]})
    assert r.status_code == 422 and f"orders: at most {BATCH_LIMIT} items" in r.json()["detail"]


def test_limits_come_from_the_env(home, monkeypatch):
    """OLIST_ML_API_MAX_BATCH / OLIST_ML_API_MAX_BODY_BYTES (no lifespan: limits answer before any state)."""
    monkeypatch.setenv(MAX_BATCH_ENV, "3")
    monkeypatch.setenv(MAX_BODY_ENV, "1000")
    c = TestClient(create_app(home, poll_seconds=0, token=""))
    assert c.app.openapi()["components"]["schemas"]["BatchChurnIn"]["properties"]["seller_ids"]["maxItems"] == 3
    r = c.post("/batch/churn", json={"seller_ids": ["a", "b", "c", "d"]})
    assert r.status_code == 422 and "at most 3 items" in r.json()["detail"]
    r = c.post(
        "/batch/churn", content=_padded({"seller_ids": ["a"]}, 1001), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "over 1000 bytes" in r.json()["detail"]
    # defaults without the env
    monkeypatch.delenv(MAX_BATCH_ENV)
    monkeypatch.delenv(MAX_BODY_ENV)
    app = create_app(home, poll_seconds=0, token="")
    assert (app.state.max_batch, app.state.max_body_bytes) == (10_000, 10 * 1024 * 1024)
    monkeypatch.setenv(MAX_BATCH_ENV, "lots")
    from olist_ml.errors import InputError

    with pytest.raises(InputError, match="OLIST_ML_API_MAX_BATCH=lots"):
        create_app(home, poll_seconds=0, token="")


# ---------------------------------------------------------------------------------------
# 3. a 422 never echoes more than a short prefix of the input
# ---------------------------------------------------------------------------------------
def test_422_echoes_only_a_short_prefix(home):
    c = TestClient(create_app(home, poll_seconds=0, token=""))  # default limits; validation needs no state
    ids = [f"{i:032d}" for i in range(20_000)]  # 700 KB of ids, over the default batch limit
    r = c.post("/batch/churn", json={"seller_ids": ids})
    assert r.status_code == 422
    assert len(r.content) < 3_000, len(r.content)  # was the whole list echoed back
    body = _strict(r)
    assert "at most 10000 items per batch" in body["detail"]
    echo = body["errors"][0]["input"]
    assert isinstance(echo, str) and len(echo) <= 130 and ids[0] in echo
    # one long value: clipped
    r = c.post("/batch/churn", json={"seller_ids": ["y" * 5000]})
    assert r.status_code == 422
    assert len(r.json()["errors"][0]["input"]) <= 130
    # many bad items: a few listed, the count said
    promise = "2018-09-01T00:00:00"  # a valid promise: the one error per order is its seller id
    r = c.post(
        "/batch/delay",
        json={"orders": [{"seller_id": i, "order_estimated_delivery_date": promise} for i in range(3000)]},
    )
    assert r.status_code == 422 and len(r.content) < 5_000
    body = r.json()
    assert len(body["errors"]) == 10 and "(+2995 more)" in body["detail"]
    # a body that is not JSON at all: the bytes are not echoed
    r = c.post("/batch/churn", content=b"z" * 50_000, headers={"content-type": "application/json"})
    assert r.status_code == 422 and len(r.content) < 1_000


# ---------------------------------------------------------------------------------------
# 4. feature overrides are typed by the champion's feature list
# ---------------------------------------------------------------------------------------
def test_overrides_are_type_checked_and_unknown_fields_named(client):
    base = client.post("/orders/delay", json=_order(client))
    assert base.status_code == 200
    r = client.post("/orders/delay", json=_order(client, route_pct_late_90d="DROP TABLE"))
    assert r.status_code == 422, r.text  # was scored (the string became NaN and was imputed)
    assert r.json()["detail"] == (
        "invalid request: route_pct_late_90d: the feature route_pct_late_90d is numeric: "
        'expected a finite number, got a string "DROP TABLE"'
    )
    for bad, kind in ((True, "a boolean"), ([0.5], "a list"), ({"v": 1}, "an object"), (10**400, "a number")):
        r = client.post("/orders/delay", json=_order(client, route_pct_late_90d=bad))
        assert r.status_code == 422 and f"got {kind}" in r.json()["detail"], (bad, r.text)
    r = client.post("/orders/delay", json=_order(client, route_pct_lat_90d=0.5))  # a typo
    assert r.status_code == 422
    assert r.json()["detail"].startswith("invalid request: route_pct_lat_90d: unknown field")
    orders = [_order(client, order_id="a"), _order(client, order_id="b", zzz=1)]
    r = client.post("/batch/delay", json={"orders": orders})
    assert r.status_code == 422 and r.json()["detail"].startswith("invalid request: orders.1.zzz: unknown field")
    # a typed override is applied; null means "not given"
    r = client.post("/orders/delay", json=_order(client, route_pct_late_90d=0.99))
    assert r.status_code == 200 and r.json()["score"] != base.json()["score"]
    r = client.post("/orders/delay", json=_order(client, route_pct_late_90d=None))
    assert r.status_code == 200 and r.json()["score"] == base.json()["score"]
    # declared attributes keep their own validation (bounded integers: no 500 from an int64 overflow)
    r = client.post("/orders/delay", json=_order(client, n_items=10**30))
    assert r.status_code == 422 and "n_items" in r.json()["detail"]


# ---------------------------------------------------------------------------------------
# 5. generated ids never collide with client ids
# ---------------------------------------------------------------------------------------
def test_client_ids_never_collide_with_generated_ones(client):
    single = client.post("/orders/delay", json=_order(client)).json()["score"]
    orders = [_order(client), _order(client, order_id="request-0"), _order(client, order_id="request-1")]
    r = client.post("/batch/delay", json={"orders": orders})
    assert r.status_code == 200, r.text  # was 422 "order_id request-0 appears twice"
    res = r.json()["results"]
    assert [x["order_id"] for x in res] == [None, "request-0", "request-1"]
    assert all(x["score"] == pytest.approx(single, abs=1e-12) for x in res)


def test_request_frame_generated_ids_avoid_given_ones(home):
    """order_delay.request_frame names id-less orders itself: never with an id another row carries."""
    from olist_ml import warehouse
    from olist_ml.problems import order_delay

    sid = _any_seller(home)[0]
    req = pd.DataFrame(
        {
            "order_id": [None, "request-0", "_request-1"],
            "seller_id": [sid] * 3,
            "order_purchase_timestamp": pd.to_datetime(["2018-06-02 10:00"] * 3),
        }
    )
    with warehouse.session(home, read_only=True) as con:
        frame = order_delay.request_frame(con, home, req, as_of=pd.Timestamp("2018-06-01"))
    ids = list(frame["order_id"])
    assert ids[1:] == ["request-0", "_request-1"] and ids[0] not in ids[1:] and len(set(ids)) == 3


def _any_seller(s: Settings) -> list[str]:
    from olist_ml import warehouse

    with warehouse.session(s, read_only=True) as con:
        return [r[0] for r in con.execute("SELECT seller_id FROM stg_sellers ORDER BY seller_id LIMIT 1").fetchall()]


# ---------------------------------------------------------------------------------------
# 6. /ready follows the warehouse and the MLflow store
# ---------------------------------------------------------------------------------------
@pytest.fixture
def home_copy(home, tmp_path) -> Settings:
    """A copy of the module's home to break (the registry's artifacts stay where they are)."""
    dst = tmp_path / "home"
    shutil.copytree(home.home, dst, ignore=shutil.ignore_patterns("raw-*", "*.log"))
    return Settings(home=dst)


def _ready(c: TestClient) -> tuple[int, list[str]]:
    for _ in range(2):  # two polls, now (a changed warehouse is read once it has settled over one poll)
        c.app.state.serving.refresh()
    r = c.get("/ready")
    return r.status_code, r.json()["reasons"]


def test_ready_follows_the_warehouse_file(home_copy, tmp_path):
    s = home_copy
    wh = s.warehouse
    good = tmp_path / "good.duckdb"
    shutil.copy2(wh, good)
    with TestClient(create_app(s, poll_seconds=0, token="")) as c:
        sid = _sellers(c)[0]
        assert _ready(c) == (200, [])

        wh.unlink()  # deleted
        code, reasons = _ready(c)
        assert code == 503 and any(f"no warehouse at {wh}" in x for x in reasons), reasons
        # requests still answer from the last good snapshot meanwhile
        assert c.get(f"/sellers/{sid}/churn").status_code == 200
        shutil.copy(good, wh)
        assert _ready(c) == (200, [])

        wh.write_bytes(b"not a warehouse " * 4096)  # overwritten with garbage
        code, reasons = _ready(c)
        assert code == 503, reasons
        assert any("features: feature store unreadable" in x and "DuckDB" in x for x in reasons), reasons
        code2, reasons2 = _ready(c)  # the same bad file is not re-read at every poll, the answer stays
        assert (code2, reasons2) == (code, reasons)
        shutil.copy(good, wh)
        assert _ready(c) == (200, [])

        other = tmp_path / "other.duckdb"  # another warehouse: the data without its feature store
        shutil.copy(good, other)
        with duckdb.connect(str(other)) as con:
            for (t,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'fs_seller_%'"
            ).fetchall():
                con.execute(f"DROP TABLE {t}")
        os.replace(other, wh)
        code, reasons = _ready(c)
        assert code == 503 and any("features build" in x for x in reasons), reasons
        shutil.copy(good, wh)
        code, reasons = _ready(c)
        assert code == 200, reasons


def test_ready_follows_the_mlflow_store(home_copy, tmp_path):
    s = home_copy
    db = Path(s.mlflow_uri[len("sqlite:///") :])
    with TestClient(create_app(s, poll_seconds=0, token="")) as c:
        assert _ready(c) == (200, [])
        db.rename(tmp_path / "mlflow.db")  # gone
        code, reasons = _ready(c)
        assert code == 503 and any(x.startswith("seller_churn: no MLflow store at") for x in reasons), reasons
        assert any(x.startswith("order_delay: no MLflow store at") for x in reasons)
        (tmp_path / "mlflow.db").rename(db)
        assert _ready(c) == (200, [])

        shutil.copy2(db, tmp_path / "good.db")
        garbage = tmp_path / "garbage.db"
        garbage.write_bytes(b"garbage" * 4096)
        os.replace(garbage, db)  # replaced by garbage (MLflow's pooled connections still read the old file)
        code, reasons = _ready(c)
        assert code == 503 and any("cannot be read" in x for x in reasons), reasons
        shutil.copy(tmp_path / "good.db", db)
        assert _ready(c) == (200, [])


def test_a_writer_holding_the_warehouse_is_no_fault(home_copy):
    """A batch job holds the warehouse (DuckDB's write lock): the snapshot stays, /ready stays 200
    (the behaviour before this change, kept on purpose)."""
    s = home_copy
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
        "c.execute('CREATE TABLE writer_was_here AS SELECT 1 AS x'); print('held', flush=True); time.sleep(60)"
    )
    with TestClient(create_app(s, poll_seconds=0, token="")) as c:
        dt_ref = c.get("/ready").json()["dt_ref"]
        writer = subprocess.Popen([sys.executable, "-c", code, str(s.warehouse)], stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "held"
            status, reasons = _ready(c)
            assert status == 200, reasons
            assert "busy" in (c.app.state.serving.features_busy or "")
        finally:
            writer.kill()
            writer.wait()
        status, reasons = _ready(c)
        assert status == 200 and c.get("/ready").json()["dt_ref"] == dt_ref


# ---------------------------------------------------------------------------------------
# 7. the limits under a real uvicorn process
# ---------------------------------------------------------------------------------------
def _raw_http(port: int, head: str, chunks: list[bytes] = (), timeout: float = 20.0) -> bytes:
    """Send a request head (and body chunks) on a raw socket; return what the server answers before
    `timeout` (without sending the rest of the body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        for ch in chunks:
            sock.sendall(ch)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and b"\r\n\r\n" not in data:
            try:
                part = sock.recv(65536)
            except TimeoutError:
                break
            if not part:
                break
            data += part
        # the JSON body follows the head
        if b"\r\n\r\n" in data:
            head_, _, rest = data.partition(b"\r\n\r\n")
            n = next(
                (int(x.split(b":")[1]) for x in head_.split(b"\r\n") if x.lower().startswith(b"content-length")), 0
            )
            while len(rest) < n and time.monotonic() < deadline:
                part = sock.recv(65536)
                if not part:
                    break
                rest += part
            data = head_ + b"\r\n\r\n" + rest
        return data


@pytest.mark.server
def test_body_limit_under_uvicorn(home, monkeypatch):
    monkeypatch.setenv(MAX_BATCH_ENV, "2")  # the env var through the real CLI
    with running_server(home, extra_args=("--problem", "churn", "--max-body-bytes", "2000")) as url:
        port = int(url.rsplit(":", 1)[1])
        # 1. a declared 50 MB body: refused on its Content-Length, nothing sent after the head
        head = (
            "POST /batch/churn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 50000000\r\n\r\n"
        )
        answer = _raw_http(port, head)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"over 2000 bytes" in answer
        # 2. a chunked body: refused once the streamed bytes pass the limit, before its end
        head = (
            "POST /batch/churn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 1500
        answer = _raw_http(port, head, [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 2)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # 3. an ordinary client: over the limit 413, under it the batch limit from the env applies
        r = httpx.post(
            url + "/batch/churn",
            content=b'{"seller_ids": ["a"]}' + b" " * 2000,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        r = httpx.post(url + "/batch/churn", json={"seller_ids": ["a", "b", "c"]})
        assert r.status_code == 422 and "at most 2 items" in r.json()["detail"]
        r = httpx.post(url + "/batch/churn", json={"seller_ids": ["a", "b"]})
        assert r.status_code == 200 and r.json()["unknown"] == ["a", "b"]


# ---------------------------------------------------------------------------------------
# 8. a bind beyond loopback without a token warns
# ---------------------------------------------------------------------------------------
def test_exposure_warning_rule():
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"):
        assert is_loopback(host) and exposure_warning(host, 8000, None) is None, host
    for host in ("0.0.0.0", "::", "192.168.1.10", "myhost.example"):
        w = exposure_warning(host, 8000, None)
        assert w is not None and "\n" not in w and TOKEN_ENV in w and "anyone" in w, host
        assert exposure_warning(host, 8000, "secret") is None


def _serve_until_exit(tmp_path: Path, host: str, port: int, token: str | None) -> tuple[int, str]:
    """`olist-ml serve` on an empty home, on an address/port it cannot bind: it starts, then exits."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token:
        env[TOKEN_ENV] = token
    cmd = [
        sys.executable,
        "-m",
        "olist_ml",
        "--home",
        str(tmp_path / "home"),
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--poll-seconds",
        "0",
        "--problem",
        "churn",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


@pytest.mark.server
def test_serve_warns_on_a_non_loopback_bind_without_token(tmp_path):
    # 192.0.2.1 (TEST-NET-1) is on no interface: the bind fails after the start, nothing is exposed
    rc, err = _serve_until_exit(tmp_path, "192.0.2.1", free_port(), None)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err[-2000:]
    assert "192.0.2.1" in warnings[0] and "anyone" in warnings[0] and TOKEN_ENV in warnings[0]
    rc, err = _serve_until_exit(tmp_path, "192.0.2.1", free_port(), "s3cret")
    assert not [line for line in err.splitlines() if line.startswith("warning:")], err[-2000:]
    with socket.socket() as busy:  # loopback: no warning (the port is taken, so it exits)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        rc, err = _serve_until_exit(tmp_path, "127.0.0.1", busy.getsockname()[1], None)
    assert rc != 0 and not [line for line in err.splitlines() if line.startswith("warning:")], err[-2000:]
