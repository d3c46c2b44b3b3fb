"""Seeded synthetic Olist data: the exact Kaggle schema with behaviour calibrated on the real data.

The generator simulates a marketplace week by week:

* every seller has a latent *health* ``h`` (a slow random walk) that drives its order rate, its
  handling time (-> lateness), its cancellation rate and the review scores it gets, and the
  weekly hazard that it quits for good. Bad reviews and late deliveries seen in the seller's
  recent history (lagged two weeks, the time it takes for them to be known) raise the hazard
  and push health down, so the future of a seller depends on history a model can observe;
* orders per day follow the real monthly volume curve, day-of-week and hour-of-day mix and the
  2017-11-24 Black-Friday peak, and are shared among active sellers in proportion to their rate;
* delivery time depends on the seller -> customer distance (SP-centric geography), the season
  (Nov/Dec and Feb/Mar peaks) and seller handling; review scores fall sharply when late;
* marketing-funnel leads close into deals and, depending on their attributes, become sellers
  whose first sale comes after the won date.
"""

from __future__ import annotations

import gzip as _gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..geo import haversine_km
from ..schema import SOURCES_BY_KEY
from . import constants as K

DAY = 86_400
EPOCH0 = np.datetime64("2016-09-01T00:00:00", "s")
NAT = np.iinfo(np.int64).min  # int64 view of NaT


def _t(s: str) -> int:
    """Seconds of a date/time string since EPOCH0."""
    return int((np.datetime64(s, "s") - EPOCH0).astype(np.int64))


SNAPSHOT_S = _t(K.SNAPSHOT)
RATE_H = 1.0  # log order rate per unit of seller health
H_CENTER = 0.9  # order-weighted mean health: effects are centred on it
HOME_BIAS = 0.07  # share of orders where the customer is drawn from the seller's own state
SYNTH_EARTH_RADIUS_KM = 6371.0  # the radius the seeded data were drawn with (olist_ml.geo uses the IUGG mean)
LAST_MONTH = "2018-10"


# --------------------------------------------------------------------------------------------
# small vectorised helpers
# --------------------------------------------------------------------------------------------
_HEX = np.frombuffer(b"0123456789abcdef", dtype="S1")


def _hex_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random 32-hex lowercase ids (unicode array)."""
    b = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    nib = np.empty((n, 32), dtype=np.uint8)
    nib[:, 0::2] = b >> 4
    nib[:, 1::2] = b & 15
    return _HEX[nib].view("S32").ravel().astype("U32")


def _choice(rng: np.random.Generator, weights, n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return rng.choice(len(w), size=n, p=w / w.sum())


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _fmt_ts(sec: np.ndarray) -> np.ndarray:
    """seconds since EPOCH0 (NAT = missing) -> 'YYYY-MM-DD HH:MM:SS' / ''."""
    sec = np.asarray(sec, dtype=np.int64)
    miss = sec == NAT
    dt = EPOCH0 + np.where(miss, 0, sec).astype("timedelta64[s]")
    s = np.datetime_as_string(dt, unit="s").astype("U19")
    codes = s.view(np.uint32).reshape(-1, 19).copy()
    codes[:, 10] = ord(" ")
    out = codes.view("U19").ravel().astype(object)
    out[miss] = ""
    return out


def _fmt_date(sec: np.ndarray) -> np.ndarray:
    dt = EPOCH0 + np.asarray(sec, dtype=np.int64).astype("timedelta64[s]")
    return np.datetime_as_string(dt, unit="D").astype(object)


def _fmt_money(cents: np.ndarray) -> np.ndarray:
    c = np.asarray(cents, dtype=np.int64)
    return np.char.add(np.char.add((c // 100).astype("U12"), "."), np.char.zfill((c % 100).astype("U2"), 2)).astype(
        object
    )


def _month_start(ym: str) -> int:
    return _t(ym + "-01")


def _days_in_month(ym: str) -> int:
    y, m = map(int, ym.split("-"))
    nxt = f"{y + (m == 12)}-{(m % 12) + 1:02d}"
    return (_month_start(nxt) - _month_start(ym)) // DAY


# --------------------------------------------------------------------------------------------
# geography
# --------------------------------------------------------------------------------------------
@dataclass
class Geo:
    state: np.ndarray  # per prefix: state code
    prefix: np.ndarray  # int zip prefix
    lat: np.ndarray
    lng: np.ndarray
    city: np.ndarray
    cust_p: np.ndarray  # probability a customer lives in the prefix
    seller_p: np.ndarray
    state_code: np.ndarray | None = None  # per prefix: index of its state
    state_span: tuple[tuple[int, int], ...] = ()  # per state index: [lo, hi) prefix positions


def _geography(rng: np.random.Generator, scale: float) -> Geo:
    n_total = int(np.clip(15000 * scale**0.7, 200, 19000))
    states = list(K.STATES)
    mix = np.array([0.6 * K.STATES[s][0] + 0.4 * K.STATES[s][1] for s in states])
    counts = np.maximum(2, np.round(n_total * mix / mix.sum()).astype(int))
    st, pf, la, ln, ci, cw, sw = [], [], [], [], [], [], []
    for s, k in zip(states, counts, strict=False):
        c_share, s_share, (lo, hi), lat0, lng0, sdla, sdln, cities = K.STATES[s]
        k = min(k, hi - lo + 1)
        p = np.sort(rng.choice(hi - lo + 1, size=k, replace=False) + lo)
        # capital-like hub (low prefixes) is denser: city index grows with the prefix
        city_idx = np.minimum((np.arange(k) / k * len(cities) * rng.uniform(0.6, 1.0)).astype(int), len(cities) - 1)
        hub = city_idx == 0
        lat = lat0 + np.where(hub, 0.08, 0.6 * sdla) * rng.standard_normal(k)
        lng = lng0 + np.where(hub, 0.08, 0.6 * sdln) * rng.standard_normal(k)
        pop = rng.lognormal(0.0, 1.0, k) * np.where(hub, 2.5, 1.0)
        st.append(np.full(k, s, dtype=object))
        pf.append(p)
        la.append(lat)
        ln.append(lng)
        ci.append(np.array(cities, dtype=object)[city_idx])
        cw.append(c_share * pop / pop.sum())
        sw.append(s_share * pop / pop.sum())
    cust_p, seller_p = np.concatenate(cw), np.concatenate(sw)
    sizes = np.array([len(x) for x in pf])
    ends = np.cumsum(sizes)
    return Geo(
        state_code=np.repeat(np.arange(len(states)), sizes),
        state_span=tuple(zip((ends - sizes).tolist(), ends.tolist(), strict=False)),
        state=np.concatenate(st),
        prefix=np.concatenate(pf),
        lat=np.concatenate(la),
        lng=np.concatenate(ln),
        city=np.concatenate(ci),
        cust_p=cust_p / cust_p.sum(),
        seller_p=seller_p / seller_p.sum(),
    )


# --------------------------------------------------------------------------------------------
# calendar: expected orders per day
# --------------------------------------------------------------------------------------------
def _daily_expected(scale: float) -> np.ndarray:
    months = list(K.MONTHLY_ORDERS)
    n_days = (_month_start("2018-11") - _month_start(months[0])) // DAY
    exp_ = np.zeros(n_days)
    bf = _t(K.BLACK_FRIDAY) // DAY
    dow0 = (np.datetime64("2016-09-01").astype("datetime64[D]").astype(int) + 3) % 7  # 0 = Monday
    for ym in months:
        d0, nd = _month_start(ym) // DAY, _days_in_month(ym)
        idx = np.arange(d0, d0 + nd)
        w = np.asarray(K.DOW_WEIGHTS)[(idx + dow0) % 7].copy()
        if ym == "2016-09":
            w[:3] = 0  # the real data starts on 2016-09-04
        if d0 <= bf < d0 + nd:
            w[bf - d0] *= 6.3
            w[bf - d0 + 1 : bf - d0 + 4] *= 2.2
        exp_[idx] = K.MONTHLY_ORDERS[ym] * scale * w / w.sum()
    return exp_


def _season(n_days: int) -> np.ndarray:
    """Transit-time multiplier per purchase day (carrier congestion peaks)."""
    f = np.ones(n_days)
    for a, b, m in (
        ("2017-03-01", "2017-04-10", 1.25),
        ("2017-11-18", "2017-12-22", 1.5),
        ("2018-02-05", "2018-03-28", 1.6),
        ("2018-08-01", "2018-08-31", 1.25),
    ):
        f[_t(a) // DAY : _t(b) // DAY] = m
    return f


# --------------------------------------------------------------------------------------------
# marketing funnel
# --------------------------------------------------------------------------------------------
def _funnel(rng: np.random.Generator, scale: float) -> dict:
    n = max(20, int(round(8000 * scale)))
    months = list(K.MQL_MONTHLY)
    mi = _choice(rng, list(K.MQL_MONTHLY.values()), n)
    starts = np.array([_month_start(m) for m in months])
    ndays = np.array([_days_in_month(m) for m in months])
    first_contact = starts[mi] + rng.integers(0, ndays[mi]) * DAY
    order = np.argsort(first_contact, kind="stable")
    first_contact = first_contact[order]
    mql_id = _hex_ids(rng, n)
    n_lp = max(5, int(round(495 * scale**0.5)))
    lp_ids = _hex_ids(rng, n_lp)
    lp = lp_ids[_choice(rng, 1.0 / np.arange(1, n_lp + 1) ** 0.9, n)]
    origins = list(K.ORIGINS)
    oi = _choice(rng, [v[0] for v in K.ORIGINS.values()], n)
    origin = np.array(origins, dtype=object)[oi]
    close_p = np.array([v[1] for v in K.ORIGINS.values()])[oi] * 1.0
    closed = rng.random(n) < close_p
    di = np.flatnonzero(closed)
    m = len(di)
    # won date: median ~2 weeks after first contact, long tail; business hours
    lag_days = np.floor(rng.lognormal(np.log(14), 1.25, m)).clip(0, 420)
    won = first_contact[di] + (lag_days * DAY).astype(np.int64) + rng.integers(8 * 3600, 20 * 3600, m)
    won = np.minimum(won, _t("2018-11-29 18:00:00"))
    won = np.maximum(won, first_contact[di] + 3600)

    def pick(table: dict) -> tuple[np.ndarray, np.ndarray]:
        keys = list(table)
        idx = _choice(rng, [v[0] for v in table.values()], m)
        return np.array(keys, dtype=object)[idx], np.array([v[1] for v in table.values()])[idx]

    seg, e_seg = pick(K.SEGMENTS)
    lead, e_lead = pick(K.LEAD_TYPES)
    beh, e_beh = pick(K.BEHAVIOUR)
    btype, e_bt = pick(K.BUSINESS_TYPES)
    # the detailed questionnaire (company, gtin, stock, catalog size) is mostly filled for later deals
    filled = rng.random(m) < np.where(won >= _t("2018-06-01"), 0.22, 0.035)
    has_company = np.where(filled, np.where(rng.random(m) < 0.92, "True", "False"), "").astype(object)
    has_gtin = np.where(filled, np.where(rng.random(m) < 0.84, "True", "False"), "").astype(object)
    stock_keys = list(K.AVERAGE_STOCK)
    stock = np.where(filled, np.array(stock_keys, dtype=object)[_choice(rng, list(K.AVERAGE_STOCK.values()), m)], "")
    cat_size = np.where(
        filled & (rng.random(m) < 0.85), np.round(rng.lognormal(np.log(100), 1.1, m) / 10).clip(0.1, 200) * 10, np.nan
    )
    cat_size = np.where(cat_size < 10, 1.0 + np.floor(rng.random(m) * 9), cat_size)
    cat_size = np.where(np.isnan(np.where(filled, cat_size, np.nan)), np.nan, cat_size)
    revenue = np.where(
        rng.random(m) < 0.054, rng.choice([5000, 10000, 20000, 30000, 50000, 100000, 200000, 500000], m), 0
    ).astype(float)
    n_sdr, n_sr = 32, 22
    sdr_ids, sr_ids = _hex_ids(rng, n_sdr), _hex_ids(rng, n_sr)
    sdr_i = _choice(rng, rng.lognormal(0, 0.8, n_sdr), m)
    sr_i = _choice(rng, rng.lognormal(0, 0.8, n_sr), m)
    sdr_skill = rng.normal(0, 0.35, n_sdr)
    logit = (
        -0.25
        + e_seg
        + e_lead
        + e_beh
        + e_bt
        + 0.6 * (revenue > 0)
        + sdr_skill[sdr_i]
        + np.where(has_gtin == "True", 0.5, 0.0)
        + np.where(np.isnan(cat_size), 0.0, 0.25 * np.log1p(np.nan_to_num(cat_size)) - 1.0)
    )
    activates = rng.random(m) < _sigmoid(logit)
    # better leads also start faster; first sale at least 3 days after the won date
    delay_days = 3 + rng.gamma(2.0, 28.0, m) * np.exp(-0.45 * (logit - logit.mean()))
    first_sale = won + (delay_days * DAY).astype(np.int64) + rng.integers(0, DAY, m)
    return dict(
        mql_id=mql_id,
        first_contact=first_contact,
        landing_page_id=lp,
        origin=origin,
        deal_idx=di,
        seller_id=_hex_ids(rng, m),
        sdr_id=sdr_ids[sdr_i],
        sr_id=sr_ids[sr_i],
        won=won,
        segment=seg,
        lead_type=lead,
        behaviour=beh,
        has_company=has_company,
        has_gtin=has_gtin,
        stock=stock,
        business_type=btype,
        catalog_size=cat_size,
        revenue=revenue,
        activates=activates,
        first_sale=first_sale,
        quality=logit - logit.mean(),
    )


# --------------------------------------------------------------------------------------------
# the marketplace simulation
# --------------------------------------------------------------------------------------------
_PAY_TYPES = np.array(["credit_card", "boleto", "debit_card", "voucher"], dtype=object)
_STATUS = ["delivered", *K.STATUS_RATES]
_CUTS = np.array([-1.48, -1.30, -0.92, -0.30])  # ordinal score cut points (on-time, average seller)


def _simulate(rng: np.random.Generator, scale: float, geo: Geo, funnel: dict, progress: bool) -> dict:
    exp_day = _daily_expected(scale)
    n_days = len(exp_day)
    season = _season(n_days)
    n_weeks = (n_days + 6) // 7
    last_order_day = _t("2018-09-01") // DAY

    # ---- sellers: organic entrants + activated deal sellers ---------------------------------
    n_org = max(8, int(round(3150 * scale)))
    q_w = {
        "2016-09": 3,
        "2016-10": 142,
        "2017-01": 552,
        "2017-04": 316,
        "2017-07": 371,
        "2017-10": 427,
        "2018-01": 330,
        "2018-04": 400,
        "2018-07": 180,
    }
    q_keys = list(q_w)
    qi = _choice(rng, list(q_w.values()), n_org)
    q_start = np.array([_month_start(k) // DAY for k in q_keys])
    q_len = np.array([31 if k in ("2016-09", "2016-10") else 90 for k in q_keys])
    entry_day = q_start[qi] + rng.integers(0, q_len[qi])
    entry_day = np.maximum(entry_day, _t("2016-09-04") // DAY)
    org_week = entry_day // 7
    h_org = rng.standard_normal(n_org)

    act = np.flatnonzero(funnel["activates"] & (funnel["first_sale"] < last_order_day * DAY))
    n_deal = len(act)
    deal_first = funnel["first_sale"][act]
    h_deal = 0.85 * rng.standard_normal(n_deal) + 0.5 * funnel["quality"][act]
    n_s = n_org + n_deal
    h = np.concatenate([h_org, h_deal])
    eps = np.clip(rng.normal(0.0, 0.6, n_s), -1.2, 1.2)  # persistent rate idiosyncrasy
    start_week = np.concatenate([org_week, deal_first // DAY // 7 + 1])
    forced_week = np.full(n_s, -1)
    forced_week[n_org:] = deal_first // DAY // 7
    seller_pref = rng.choice(len(geo.prefix), size=n_s, p=geo.seller_p)
    s_lat, s_lng = geo.lat[seller_pref], geo.lng[seller_pref]
    alive = np.ones(n_s, dtype=bool)
    quit_week = np.full(n_s, 10**6)
    # lagged outcome memory (decayed counts)
    dn = np.zeros(n_s)
    dbad = np.zeros(n_s)
    dlate = np.zeros(n_s)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # outcomes not yet known

    cust_cum = np.cumsum(geo.cust_p)
    chunks: list[dict] = []

    weeks = range(n_weeks)
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("simulating weeks", total=n_weeks)
    for w in weeks:
        d0, d1 = 7 * w, min(7 * w + 7, n_days)
        day_counts = rng.poisson(exp_day[d0:d1])
        total = int(day_counts.sum())
        active = np.flatnonzero(alive & (start_week <= w))
        forced = np.flatnonzero(forced_week == w)
        if total and len(active):
            rate = np.exp(RATE_H * h[active] + eps[active])
            counts = rng.multinomial(total, rate / rate.sum())
            s_idx = np.repeat(active, counts)
            day = rng.permutation(np.repeat(np.arange(d0, d1), day_counts))
            t = day * DAY + _choice(rng, K.HOUR_WEIGHTS, total) * 3600 + rng.integers(0, 3600, total)
        else:
            s_idx, t = np.zeros(0, dtype=int), np.zeros(0, dtype=np.int64)
        if len(forced):
            s_idx = np.concatenate([s_idx, forced])
            t = np.concatenate([t, deal_first[forced - n_org]])
        n = len(s_idx)
        if n:
            chunk = _orders_of_week(rng, s_idx, t, h, geo, seller_pref, s_lat, s_lng, cust_cum, season, len(forced))
            chunks.append(chunk)
            week_n = np.bincount(s_idx, minlength=n_s).astype(float)
            week_bad = np.bincount(s_idx, weights=chunk["score"] <= 2, minlength=n_s)
            week_late = np.bincount(s_idx, weights=chunk["late"], minlength=n_s)
        else:
            week_n = week_bad = week_late = np.zeros(n_s)
        # outcomes become known ~2 weeks later (delivery + review): apply week w-2 to memory
        pending.append((week_n, week_bad, week_late))
        if len(pending) > 2:
            kn, kb, kl = pending.pop(0)
            dn, dbad, dlate = 0.9 * dn + kn, 0.9 * dbad + kb, 0.9 * dlate + kl
        # health random walk, pushed down by recent bad outcomes
        alive_started = alive & (start_week <= w)
        bad_rate = (dbad + 0.12 * 3) / (dn + 3)
        late_rate = (dlate + 0.07 * 3) / (dn + 3)
        h = np.where(
            alive_started, h + rng.normal(0, 0.06, n_s) - 0.25 * (bad_rate - 0.12) - 0.25 * (late_rate - 0.07), h
        )
        h = np.clip(h, -3.0, 2.3)
        age = w - start_week
        hazard = _sigmoid(-4.3 - 0.75 * h + 5.0 * (bad_rate - 0.12) + 5.0 * (late_rate - 0.07) + 0.7 * (age < 8))
        quits = alive_started & (rng.random(n_s) < hazard)
        alive &= ~quits
        quit_week[quits] = w
        if bar is not None:
            bar.advance(task)
    if bar is not None:
        bar.stop()
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return dict(orders=out, n_org=n_org, deal_seller_idx=act, seller_pref=seller_pref, h=h, quit_week=quit_week)


def _orders_of_week(rng, s_idx, t, h, geo, geo_seller_pref, s_lat, s_lng, cust_cum, season, n_forced) -> dict:
    n = len(s_idx)
    hs = h[s_idx]
    cp = np.minimum(np.searchsorted(cust_cum, rng.random(n) * cust_cum[-1]), len(cust_cum) - 1)
    home = rng.random(n) < HOME_BIAS
    if home.any():
        s_state = geo.state_code[geo_seller_pref[s_idx]]
        for code in np.unique(s_state[home]):
            sel = np.flatnonzero(home & (s_state == code))
            lo, hi = geo.state_span[code]
            cum = np.cumsum(geo.cust_p[lo:hi])
            cp[sel] = lo + np.minimum(np.searchsorted(cum, rng.random(len(sel)) * cum[-1]), hi - lo - 1)
    dist = haversine_km(s_lat[s_idx], s_lng[s_idx], geo.lat[cp], geo.lng[cp], radius_km=SYNTH_EARTH_RADIUS_KM)
    pay = _choice(rng, [0.765, 0.198, 0.015, 0.022], n)
    # status: cancellations / unavailability are more frequent at unhealthy sellers
    u = rng.random(n)
    status = np.zeros(n, dtype=np.int8)
    cum = np.zeros(n)
    bad_seller = np.exp(-0.6 * (hs - H_CENTER))
    for j, (name, rate) in enumerate(K.STATUS_RATES.items(), start=1):
        p = rate * (bad_seller if name in ("canceled", "unavailable") else 1.0)
        status[(u >= cum) & (u < cum + p)] = j
        cum = cum + p
    if n_forced:
        status[n - n_forced :] = 0  # a won deal's first sale is a real, delivered sale
    # approval: cards within minutes (sometimes hours), boleto 1-3 days
    fast = rng.random(n) < 0.75
    approve_h = np.where(
        pay == 1, 24 * (0.6 + rng.gamma(1.5, 0.6, n)), np.where(fast, rng.exponential(0.3, n), rng.exponential(14.0, n))
    )
    approved = t + (approve_h * 3600).astype(np.int64) + 60
    handling = (0.1 + rng.gamma(1.6, 1.7, n)) * np.exp(-0.35 * (hs - H_CENTER))
    carrier = approved + (handling * DAY).astype(np.int64)
    day = t // DAY
    base_transit = 3.6 + dist / 140.0
    transit = base_transit * season[np.minimum(day, len(season) - 1)] * rng.lognormal(0.0, 0.55, n)
    delivered = carrier + (transit * DAY).astype(np.int64)
    expected = 0.4 + 2.6 + base_transit
    est = (day + np.ceil(expected + 9.5 + rng.integers(0, 8, n))).astype(np.int64) * DAY
    is_deliv = status == 0
    late = is_deliv & (delivered > est)
    days_late = (delivered - est) / DAY
    z = 0.3 * (hs - H_CENTER) + 0.02 + rng.standard_normal(n)
    z -= np.where(late, np.where(days_late <= 3, 0.9, 1.75), 0.0)
    z -= np.where(is_deliv, 0.0, 1.9)
    score = 1 + (z[:, None] > _CUTS[None, :]).sum(axis=1)
    return dict(
        seller=s_idx,
        t=t,
        cp=cp,
        dist=dist,
        pay=pay,
        status=status,
        approved=approved,
        carrier=carrier,
        delivered=delivered,
        est=est,
        late=late,
        score=score.astype(np.int8),
    )


# --------------------------------------------------------------------------------------------
# from simulated events to the Olist tables
# --------------------------------------------------------------------------------------------
def _zip5(p: np.ndarray) -> np.ndarray:
    return np.char.zfill(np.asarray(p).astype("U5"), 5).astype(object)


def _assemble(rng: np.random.Generator, scale: float, geo: Geo, funnel: dict, sim: dict) -> dict[str, pd.DataFrame]:
    """The simulated orders -> the eleven Olist tables. The steps draw from `rng` in a fixed order
    (censoring, customers, basket, products, items, payments, reviews, geolocation): a seed gives
    the same files."""
    o = sim["orders"]
    order = np.argsort(o["t"], kind="stable")
    o = {k: v[order] for k, v in o.items()}
    t = o["t"]
    status, approved, carrier, delivered, is_, u = _censor(rng, o)
    cp = o["cp"]
    customer_id, uid = _customers(rng, t, cp)
    n_s = len(sim["h"])
    b = _basket(rng, o, is_, u, n_s)
    products, price_c, weight = _products(rng, n_s, b["n_prod"], b["prod_seller"])
    items, order_ids, seller_ids, item_price_c, freight_c = _items(rng, o, sim, funnel, b, products, price_c, weight)
    payments = _payments(rng, o, b["oi"], b["n_items"], item_price_c, freight_c, order_ids)
    reviews = _reviews(rng, o, delivered, order_ids)

    orders = pd.DataFrame(
        {
            "order_id": order_ids,
            "customer_id": customer_id,
            "order_status": status,
            "order_purchase_timestamp": _fmt_ts(t),
            "order_approved_at": _fmt_ts(approved),
            "order_delivered_carrier_date": _fmt_ts(carrier),
            "order_delivered_customer_date": _fmt_ts(delivered),
            "order_estimated_delivery_date": _fmt_ts(o["est"]),
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": customer_id,
            "customer_unique_id": uid,
            "customer_zip_code_prefix": _zip5(geo.prefix[cp]),
            "customer_city": geo.city[cp],
            "customer_state": geo.state[cp],
        }
    )
    sold = np.bincount(b["seller"], minlength=n_s) > 0
    sp = sim["seller_pref"][sold]
    sellers = pd.DataFrame(
        {
            "seller_id": seller_ids[sold],
            "seller_zip_code_prefix": _zip5(geo.prefix[sp]),
            "seller_city": geo.city[sp],
            "seller_state": geo.state[sp],
        }
    )
    translation = pd.DataFrame(
        [(pt, en) for pt, en, _ in K.CATEGORIES if en is not None],
        columns=["product_category_name", "product_category_name_english"],
    )
    mqls, deals = _funnel_tables(funnel)
    return {
        "orders": orders,
        "order_items": items,
        "order_payments": payments,
        "order_reviews": reviews,
        "customers": customers,
        "sellers": sellers,
        "products": products,
        "category_translation": translation,
        "geolocation": _geolocation(rng, geo),
        "marketing_qualified_leads": mqls,
        "closed_deals": deals,
    }


def _censor(rng: np.random.Generator, o: dict) -> tuple:
    """Censoring at the snapshot and the real data's ragged end: (status, approved, carrier,
    delivered, status masks, the uniforms drawn for it, reused by the basket)."""
    t = o["t"]
    N = len(t)
    status_names = np.array(_STATUS, dtype=object)
    status = status_names[o["status"]].copy()
    after_end = t >= _t("2018-09-01")
    status[after_end] = "canceled"
    deliv_after = (status == "delivered") & (o["delivered"] > SNAPSHOT_S)
    status[deliv_after & (o["carrier"] <= SNAPSHOT_S)] = "shipped"
    status[deliv_after & (o["carrier"] > SNAPSHOT_S)] = "invoiced"

    approved = o["approved"].copy()
    carrier = o["carrier"].copy()
    delivered = o["delivered"].copy()
    u = rng.random((N, 3))
    is_ = {s: status == s for s in _STATUS}
    appr_ok = ~is_["created"] & ~(is_["canceled"] & (u[:, 0] < 0.226)) & ~(is_["delivered"] & (u[:, 0] < 0.00015))
    carr_ok = is_["delivered"] | is_["shipped"] | (is_["canceled"] & appr_ok & (u[:, 1] < 0.155))
    deliv_ok = is_["delivered"] | (is_["canceled"] & carr_ok & (u[:, 2] < 0.08))
    approved[~appr_ok] = NAT
    carrier[~carr_ok] = NAT
    delivered[~deliv_ok] = NAT
    carrier[carr_ok & (carrier > SNAPSHOT_S)] = NAT
    delivered[deliv_ok & (delivered > SNAPSHOT_S)] = NAT
    return status, approved, carrier, delivered, is_, u


def _customers(rng: np.random.Generator, t: np.ndarray, cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(customer_id per order, customer_unique_id: a few customers of a zip prefix order again)."""
    N = len(t)
    customer_id = _hex_ids(rng, N)
    base_uid = _hex_ids(rng, N)
    srt = np.lexsort((t, cp))
    same_prev = np.r_[False, cp[srt][1:] == cp[srt][:-1]]
    repeat = same_prev & (rng.random(N) < 0.036)
    chain = np.cumsum(~repeat) - 1
    heads = np.flatnonzero(~repeat)
    uid = np.empty(N, dtype=object)
    uid[srt] = base_uid[srt][heads[chain]]
    return customer_id, uid


def _basket(rng: np.random.Generator, o: dict, is_: dict, u: np.ndarray, n_s: int) -> dict:
    """Items per order, their sellers and products (each seller's catalogue grows sub-linearly)."""
    N = len(o["t"])
    has_items = ~(is_["created"] | (is_["unavailable"] & (u[:, 0] < 0.99)) | (is_["canceled"] & (u[:, 1] < 0.26)))
    n_items = np.where(
        has_items, np.array(list(K.ITEMS_PER_ORDER))[_choice(rng, list(K.ITEMS_PER_ORDER.values()), N)], 0
    )
    multi_seller = has_items & (rng.random(N) < 0.0135)
    n_items = np.where(multi_seller, np.maximum(n_items, 2), n_items)
    oi = np.repeat(np.arange(N), n_items)
    first = np.r_[0, np.cumsum(n_items)[:-1]]
    item_no = np.arange(len(oi)) - first[oi] + 1
    seller = o["seller"][oi].copy()
    last_of_ms = multi_seller[oi] & (item_no == n_items[oi])
    near = np.clip(oi[last_of_ms] + rng.integers(-60, 61, last_of_ms.sum()), 0, N - 1)
    seller[last_of_ms] = o["seller"][near]
    # repeated product within an order (same seller): copy the first item's product
    same_prod_order = (n_items >= 2) & ~multi_seller & (rng.random(N) < 0.62)
    repeat_item = (item_no > 1) & (
        same_prod_order[oi] | (multi_seller[oi] & ~last_of_ms & (item_no > 1) & (rng.random(len(oi)) < 0.5))
    )
    slot = ~repeat_item
    # products: each seller's catalogue grows sub-linearly with its sales; a few best sellers
    si = np.flatnonzero(slot)
    by_seller = si[np.lexsort((oi[si], seller[si]))]
    ss = seller[by_seller]
    k_s = np.bincount(ss, minlength=n_s)
    start = np.r_[0, np.cumsum(k_s)[:-1]]
    rank = np.arange(len(by_seller)) - start[ss]
    m_s = np.where(k_s > 0, np.maximum(1, np.ceil(0.63 * k_s**0.84)), 0).astype(np.int64)
    local = np.where(rank < m_s[ss], rank, np.floor(m_s[ss] * rng.random(len(ss)) ** 8)).astype(np.int64)
    p_off = np.r_[0, np.cumsum(m_s)[:-1]]
    product = np.full(len(oi), -1, dtype=np.int64)
    product[by_seller] = p_off[ss] + local
    # fill repeats from the previous item (items of an order are consecutive)
    for _ in range(int(n_items.max(initial=1))):
        miss = product < 0
        if not miss.any():
            break
        idx = np.flatnonzero(miss)
        product[idx] = product[idx - 1]
    n_prod = int(m_s.sum())
    prod_seller = np.repeat(np.arange(n_s), m_s)
    return dict(
        n_items=n_items, oi=oi, item_no=item_no, seller=seller, product=product, n_prod=n_prod, prod_seller=prod_seller
    )


def _products(rng: np.random.Generator, n_s: int, n_prod: int, prod_seller: np.ndarray) -> tuple:
    """(products table, price in cents, weight in g) of every product."""
    cats = [c[0] for c in K.CATEGORIES]
    cat_w = np.array([c[2] for c in K.CATEGORIES], dtype=float)
    main_cat = _choice(rng, cat_w, n_s)
    pcat = np.where(rng.random(n_prod) < 0.8, main_cat[prod_seller], _choice(rng, cat_w, n_prod))
    cat_price = np.array([K.CATEGORY_PRICE.get(c, K.DEFAULT_PRICE) for c in cats])
    cat_weight = np.array([K.CATEGORY_WEIGHT.get(c, K.DEFAULT_WEIGHT) for c in cats])
    price = rng.lognormal(np.log(cat_price[pcat]) - 0.12, 1.0)
    price = np.clip(price, 0.85, 6700)
    price_c = np.where(
        price > 15, np.round(price) * 100 - np.where(rng.random(n_prod) < 0.6, 10, 0), np.round(price * 100)
    ).astype(np.int64)
    weight = np.clip(np.round(rng.lognormal(np.log(cat_weight[pcat]), 0.95) / 25) * 25, 50, 40425)
    vol = weight * rng.lognormal(1.5, 0.45, n_prod)  # cm^3
    side = np.cbrt(vol)
    length = np.clip(np.round(side * rng.lognormal(0.35, 0.25, n_prod)), 7, 105)
    height = np.clip(np.round(side * rng.lognormal(-0.3, 0.35, n_prod)), 2, 105)
    width = np.clip(np.round(side * rng.lognormal(0.0, 0.25, n_prod)), 6, 118)
    no_cat = rng.random(n_prod) < 0.0185
    no_dim = rng.random(n_prod) < 0.0001

    def nint(x, miss):
        out = np.asarray(x).astype(np.int64).astype("U8").astype(object)
        out[miss] = ""
        return out

    products = pd.DataFrame(
        {
            "product_id": _hex_ids(rng, n_prod),
            "product_category_name": np.where(no_cat, "", np.array(cats, dtype=object)[pcat]),
            "product_name_lenght": nint(np.clip(rng.normal(48.5, 10, n_prod), 5, 76), no_cat),
            "product_description_lenght": nint(np.clip(rng.lognormal(6.35, 0.75, n_prod), 4, 3992), no_cat),
            "product_photos_qty": nint(
                np.clip(1 + rng.geometric(0.55, n_prod) - 1 + (rng.random(n_prod) < 0.1) * 3, 1, 20), no_cat
            ),
            "product_weight_g": nint(weight, no_dim),
            "product_length_cm": nint(length, no_dim),
            "product_height_cm": nint(height, no_dim),
            "product_width_cm": nint(width, no_dim),
        }
    )
    return products, price_c, weight


def _items(
    rng: np.random.Generator,
    o: dict,
    sim: dict,
    funnel: dict,
    b: dict,
    products: pd.DataFrame,
    price_c: np.ndarray,
    weight: np.ndarray,
) -> tuple:
    """(order_items table, order ids, seller ids, item price and freight in cents)."""
    t = o["t"]
    N = len(t)
    oi, product, seller, item_no = b["oi"], b["product"], b["seller"], b["item_no"]
    dist_i = o["dist"][oi]
    pw = weight[product] / 1000.0
    freight = (10.0 + 0.008 * dist_i + 1.9 * np.minimum(pw, 30)) * rng.lognormal(0.0, 0.22, len(oi))
    freight_c = np.where(rng.random(len(oi)) < 0.0034, 0, np.round(freight * 100)).astype(np.int64)
    item_price_c = price_c[product]
    ship_base = np.where(o["approved"] != NAT, o["approved"], t)[oi]
    ship_lim = (ship_base // DAY + 4 + (rng.integers(0, 4, N))[oi]) * DAY + (t % DAY)[oi]

    seller_ids = np.concatenate([_hex_ids(rng, sim["n_org"]), funnel["seller_id"][sim["deal_seller_idx"]]])
    product_ids = products["product_id"].to_numpy()
    order_ids = _hex_ids(rng, N)
    items = pd.DataFrame(
        {
            "order_id": order_ids[oi],
            "order_item_id": item_no,
            "product_id": product_ids[product],
            "seller_id": seller_ids[seller],
            "shipping_limit_date": _fmt_ts(ship_lim),
            "price": _fmt_money(item_price_c),
            "freight_value": _fmt_money(freight_c),
        }
    )
    return items, order_ids, seller_ids, item_price_c, freight_c


def _payments(
    rng: np.random.Generator,
    o: dict,
    oi: np.ndarray,
    n_items: np.ndarray,
    item_price_c: np.ndarray,
    freight_c: np.ndarray,
    order_ids: np.ndarray,
) -> pd.DataFrame:
    N = len(o["t"])
    total_c = np.bincount(oi, weights=item_price_c + freight_c, minlength=N).astype(np.int64)
    no_item_total = np.round(rng.lognormal(np.log(110), 0.8, N) * 100).astype(np.int64)
    total_c = np.where(n_items > 0, total_c, no_item_total)
    pay = o["pay"]
    n_extra = np.where((pay != 3) & (rng.random(N) < 0.026), 1 + (rng.random(N) < 0.35) + (rng.random(N) < 0.1), 0)
    n_extra = np.where((pay == 3) & (rng.random(N) < 0.2), 1, n_extra)  # voucher-only orders split over vouchers
    n_extra = np.where(total_c < 300, 0, n_extra)
    n_rows = 1 + n_extra
    po = np.repeat(np.arange(N), n_rows)
    pfirst = np.r_[0, np.cumsum(n_rows)[:-1]]
    seq = np.arange(len(po)) - pfirst[po] + 1
    is_extra = seq > 1
    share = rng.uniform(0.03, 0.3, len(po))
    extra_c = np.where(is_extra, np.floor(total_c[po] * share), 0).astype(np.int64)
    extra_sum = np.bincount(po, weights=extra_c, minlength=N).astype(np.int64)
    value_c = np.where(is_extra, extra_c, total_c[po] - extra_sum[po])
    ptype = np.where(is_extra, "voucher", _PAY_TYPES[pay[po]])
    inst = np.array(list(K.CC_INSTALLMENTS))[_choice(rng, list(K.CC_INSTALLMENTS.values()), len(po))]
    inst = np.minimum(inst, np.maximum(1, value_c // 2500))
    inst = np.where(ptype == "credit_card", inst, 1)
    payments = pd.DataFrame(
        {
            "order_id": order_ids[po],
            "payment_sequential": seq,
            "payment_type": ptype,
            "payment_installments": inst,
            "payment_value": _fmt_money(value_c),
        }
    )
    return payments


def _reviews(rng: np.random.Generator, o: dict, delivered: np.ndarray, order_ids: np.ndarray) -> pd.DataFrame:
    t = o["t"]
    N = len(t)
    n_rev = _choice(rng, [0.0078, 0.9867, 0.0055], N)
    ro = np.repeat(np.arange(N), n_rev)
    rfirst = np.r_[0, np.cumsum(n_rev)[:-1]]
    rk = np.arange(len(ro)) - rfirst[ro]
    dday = np.where(o["delivered"][ro] != NAT, o["delivered"][ro] // DAY, -1)
    has_del = delivered[ro] != NAT
    extra_days = rng.geometric(0.8, len(ro)) - 1
    nd_day = np.maximum(t[ro] // DAY + 2, o["est"][ro] // DAY + rng.integers(-4, 3, len(ro)))
    created_day = np.where(has_del, dday + 1 + extra_days, nd_day) + rk * rng.integers(1, 25, len(ro))
    created = created_day.astype(np.int64) * DAY
    answer = created + (rng.lognormal(np.log(1.3), 0.9, len(ro)) * DAY).astype(np.int64) + 120
    score = o["score"][ro].astype(np.int64)
    score = np.where(rk > 0, np.clip(score + rng.integers(-1, 2, len(ro)), 1, 5), score)
    keep = created <= SNAPSHOT_S
    ro, created, answer, score = ro[keep], created[keep], answer[keep], score[keep]
    nr = len(ro)
    msg_p = np.array([0, 0.765, 0.68, 0.435, 0.31, 0.36])[score]
    title_p = np.array([0, 0.2, 0.17, 0.12, 0.1, 0.105])[score]
    has_msg = rng.random(nr) < msg_p
    has_title = rng.random(nr) < title_p
    titles = np.empty(nr, dtype=object)
    msgs = np.empty(nr, dtype=object)
    titles[:] = ""
    msgs[:] = ""
    for sc in range(1, 6):
        m = score == sc
        tp = np.array(K.REVIEW_TITLES[sc], dtype=object)
        mp = np.array(K.REVIEW_MESSAGES[sc], dtype=object)
        titles[m & has_title] = tp[rng.integers(0, len(tp), int((m & has_title).sum()))]
        msgs[m & has_msg] = mp[rng.integers(0, len(mp), int((m & has_msg).sum()))]
    multiline = has_msg & (rng.random(nr) < 0.03)
    msgs[multiline] = msgs[multiline] + "\r\n" + "Obrigado."
    reviews = pd.DataFrame(
        {
            "review_id": _hex_ids(rng, nr),
            "order_id": order_ids[ro],
            "review_score": score,
            "review_comment_title": titles,
            "review_comment_message": msgs,
            "review_creation_date": _fmt_ts(created),
            "review_answer_timestamp": _fmt_ts(answer),
        }
    )
    return reviews


def _geolocation(rng: np.random.Generator, geo: Geo) -> pd.DataFrame:
    """~20 points per zip prefix around its centre."""
    per = 1 + rng.poisson(19, len(geo.prefix))
    gi = np.repeat(np.arange(len(geo.prefix)), per)
    geolocation = pd.DataFrame(
        {
            "geolocation_zip_code_prefix": _zip5(geo.prefix[gi]),
            "geolocation_lat": geo.lat[gi] + rng.normal(0, 0.004, len(gi)),
            "geolocation_lng": geo.lng[gi] + rng.normal(0, 0.0045, len(gi)),
            "geolocation_city": geo.city[gi],
            "geolocation_state": geo.state[gi],
        }
    )
    return geolocation


def _funnel_tables(f: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(marketing_qualified_leads, closed_deals) of the simulated funnel."""
    mqls = pd.DataFrame(
        {
            "mql_id": f["mql_id"],
            "first_contact_date": _fmt_date(f["first_contact"]),
            "landing_page_id": f["landing_page_id"],
            "origin": f["origin"],
        }
    )

    def one_decimal(x):
        out = np.char.mod("%.1f", np.nan_to_num(x)).astype(object)
        out[np.isnan(x)] = ""
        return out

    deals = pd.DataFrame(
        {
            "mql_id": f["mql_id"][f["deal_idx"]],
            "seller_id": f["seller_id"],
            "sdr_id": f["sdr_id"],
            "sr_id": f["sr_id"],
            "won_date": _fmt_ts(f["won"]),
            "business_segment": f["segment"],
            "lead_type": f["lead_type"],
            "lead_behaviour_profile": f["behaviour"],
            "has_company": f["has_company"],
            "has_gtin": f["has_gtin"],
            "average_stock": f["stock"],
            "business_type": f["business_type"],
            "declared_product_catalog_size": one_decimal(f["catalog_size"]),
            "declared_monthly_revenue": one_decimal(f["revenue"]),
        }
    )
    return mqls, deals


def _write(df: pd.DataFrame, path: Path, *, gz: bool, crlf: bool = False, bom: bool = False) -> None:
    text = df.to_csv(index=False, lineterminator="\r\n" if crlf else "\n")
    data = (("\ufeff" if bom else "") + text).encode("utf-8")
    if gz:
        data = _gzip.compress(data, compresslevel=6, mtime=0)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def generate(
    out_dir: Path, *, seed: int = 42, scale: float = 1.0, gzip: bool = False, progress: bool = False
) -> dict[str, int]:
    """Write every Olist CSV (synthetic) into `out_dir`; return rows per file name.

    Same `seed` and `scale` give byte-identical files. `scale=1` is about the real size.
    """
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise InputError(f"synth: --scale must be a number, got {scale!r}") from None
    if not (0.005 <= scale <= 100):
        raise InputError(f"synth: --scale must be between 0.005 and 100, got {scale}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"synth: --seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"synth: output path {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(int(seed))
    geo = _geography(rng, scale)
    funnel = _funnel(rng, scale)
    sim = _simulate(rng, scale, geo, funnel, progress)
    tables = _assemble(rng, scale, geo, funnel, sim)

    rows: dict[str, int] = {}
    for key, df in tables.items():
        src = SOURCES_BY_KEY[key]
        assert list(df.columns) == src.source_names, key
        name = src.file + (".gz" if gzip else "")
        other = out_dir / (src.file if gzip else src.file + ".gz")
        if other.exists():  # never leave a stale twin that a reader could pick up instead
            other.unlink()
        is_tr = key == "category_translation"
        _write(df, out_dir / name, gz=gzip, crlf=is_tr, bom=is_tr)
        rows[name] = len(df)
    return rows
