-- order_delay_orders: order-level facts and features, known when the order is approved.
-- grain: (order_id) -- every order that has at least one item (any status)
-- reads: stg_orders, stg_order_items, stg_products, stg_customers, stg_sellers, stg_order_payments,
--        geo_zip_coordinates (olist_ml.geo.build_zip_coordinates)
--
-- Point in time: order features use only the order itself (items, products, payment, promise),
-- which exist at approval. Context features ("route_*", "cstate_*", "market_*") aggregate
-- deliveries whose delivered_customer_date is strictly before the purchase DATE 00:00
-- (the same `< dt_ref` rule as the feature store), over half-open windows [d - N days, d).
-- Nowcast columns (*_pct_delivered_{7,10}d_recent) use cohorts bought on day p with p + k days
-- <= d, so "delivered within k days of p" is settled before d (market: the 7 cohorts
-- [d - k - 7, d - k); destination state: the 14 cohorts [d - 24, d - 10)).
-- Promise-vs-history columns (*_pct_slower_than_promise_*) compare THIS order's promised days with
-- the delivery times of orders delivered before d (the share that took longer: what the promise
-- would have missed lately); the Kaplan-Meier one uses the cohorts bought in [d - 60, d), each
-- observed up to d (delivered before d: an event at its age; else censored), so fresh cohorts
-- inform the short ages. Open-due columns: of the orders bought before d whose estimate falls in
-- [d, d + 7), the share not delivered before d. These use no order_status (an extract snapshot).
-- Calendar (order_delay_calendar.sql: Brazilian national holidays and each state's own, from the
-- maintained `holidays` package) gives the business days (Mon-Fri, not a holiday) in [purchase date,
-- estimated date) and the holidays in [purchase date, estimated date], nationally and in the
-- customer's state (national + state holidays): a fixed public calendar, known in advance.
-- No feature-store columns: the order, its route and the market only (see order_delay.py).
--
-- Main seller: the seller with the largest item value in the order (ties: more items, then
-- seller_id), so a multi-seller order (~1%) takes its dominant seller's route and history.
-- Main product category: the category of the most expensive item (ties: lowest order_item_id).
--
-- Two inputs (olist_ml.problems.order_delay.orders_sql): `base` = every order with items, the
-- history the context features aggregate (order_delay_base.sql); `target` = the orders to
-- compute features for, with base's columns (default: base itself; a request's new orders in
-- order_delay.request_frame). An order's context only uses facts before its purchase date, so
-- the order itself never contributes to its own row.
WITH base AS (
{{ base }}
),
target AS (
{{ target }}
),
{{ calendar }},
-- deliveries per day and route, the facts behind the context features
deliveries AS (
    SELECT CAST(delivered_at AS DATE) AS day, customer_state, seller_state,
           count(*) AS n,
           sum(CASE WHEN CAST(delivered_at AS DATE) > CAST(estimated_at AS DATE) THEN 1 ELSE 0 END) AS n_late,
           sum(DATEDIFF_DAYS(purchase_date, CAST(delivered_at AS DATE))) AS sum_days
    FROM base
    WHERE delivered_at IS NOT NULL
    GROUP BY ALL
),
route_keys AS (SELECT DISTINCT purchase_date, customer_state, seller_state FROM target),
route_ctx AS (
    SELECT k.purchase_date, k.customer_state, k.seller_state,
           coalesce(sum(d.n), 0) AS route_n_delivered_90d,
           sum(d.n_late) / nullif(sum(d.n), 0) AS route_pct_late_90d,
           sum(d.sum_days) / nullif(sum(d.n), 0) AS route_avg_delivery_days_90d
    FROM route_keys k
    LEFT JOIN deliveries d
           ON d.customer_state = k.customer_state AND d.seller_state = k.seller_state
          AND d.day >= k.purchase_date - INTERVAL 90 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
cstate_keys AS (SELECT DISTINCT purchase_date, customer_state FROM target),
cstate_ctx AS (
    SELECT k.purchase_date, k.customer_state,
           sum(d.n_late) / nullif(sum(d.n), 0) AS cstate_pct_late_30d,
           sum(d.sum_days) / nullif(sum(d.n), 0) AS cstate_avg_delivery_days_30d
    FROM cstate_keys k
    LEFT JOIN deliveries d
           ON d.customer_state = k.customer_state
          AND d.day >= k.purchase_date - INTERVAL 30 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
day_keys AS (SELECT DISTINCT purchase_date FROM target),
market_ctx AS (
    SELECT k.purchase_date,
           sum(d.n_late) / nullif(sum(d.n), 0) AS market_pct_late_14d,
           sum(d.sum_days) / nullif(sum(d.n), 0) AS market_avg_delivery_days_14d,
           coalesce(sum(d.n), 0) AS market_n_delivered_14d
    FROM day_keys k
    LEFT JOIN deliveries d ON d.day >= k.purchase_date - INTERVAL 14 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
-- orders due (estimated date) per day: an order due on day e is known to be overdue at d > e
-- when it was not delivered by the end of e (still open at d, or delivered after e). Every order
-- counts, whatever its status: order_status is the extract's snapshot (an order canceled after d
-- was open at d), so filtering on it would let later facts in.
dues AS (
    SELECT CAST(estimated_at AS DATE) AS day, customer_state, seller_state, seller_id,
           count(*) AS n,
           sum(CASE WHEN delivered_at IS NULL OR CAST(delivered_at AS DATE) > CAST(estimated_at AS DATE)
                    THEN 1 ELSE 0 END) AS n_overdue
    FROM base
    GROUP BY ALL
),
due_route AS (
    SELECT k.purchase_date, k.customer_state, k.seller_state,
           sum(d.n_overdue) / nullif(sum(d.n), 0) AS route_pct_overdue_30d
    FROM route_keys k
    LEFT JOIN dues d
           ON d.customer_state = k.customer_state AND d.seller_state = k.seller_state
          AND d.day >= k.purchase_date - INTERVAL 30 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
due_cstate AS (
    SELECT k.purchase_date, k.customer_state,
           sum(d.n_overdue) / nullif(sum(d.n), 0) AS cstate_pct_overdue_14d
    FROM cstate_keys k
    LEFT JOIN dues d
           ON d.customer_state = k.customer_state
          AND d.day >= k.purchase_date - INTERVAL 14 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
due_market AS (
    SELECT k.purchase_date,
           sum(d.n_overdue) / nullif(sum(d.n), 0) AS market_pct_overdue_7d
    FROM day_keys k
    LEFT JOIN dues d ON d.day >= k.purchase_date - INTERVAL 7 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
seller_keys AS (SELECT DISTINCT purchase_date, seller_id FROM target),
due_seller AS (
    SELECT k.purchase_date, k.seller_id,
           coalesce(sum(d.n), 0) AS seller_n_due_90d,
           sum(d.n_overdue) / nullif(sum(d.n), 0) AS seller_pct_overdue_90d
    FROM seller_keys k
    LEFT JOIN (SELECT day, seller_id, sum(n) AS n, sum(n_overdue) AS n_overdue FROM dues GROUP BY ALL) d
           ON d.seller_id = k.seller_id
          AND d.day >= k.purchase_date - INTERVAL 90 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
-- backlog: orders bought in the 14 days before d and not yet delivered at d 00:00 (known at d)
backlog_ctx AS (
    SELECT k.purchase_date, count(b.order_id) AS market_backlog_14d
    FROM day_keys k
    LEFT JOIN base b
           ON b.purchase_ts >= k.purchase_date - INTERVAL 14 DAY AND b.purchase_ts < k.purchase_date
          AND (b.delivered_at IS NULL OR b.delivered_at >= k.purchase_date)
    GROUP BY ALL
),
-- delivery-time distribution of the route / destination state: days from purchase to delivery of
-- the orders delivered in [d - N, d) (quantiles need the single orders, not daily sums)
delivered_orders AS (
    SELECT CAST(delivered_at AS DATE) AS day, customer_state, seller_state,
           DATEDIFF_DAYS(purchase_date, CAST(delivered_at AS DATE)) AS days
    FROM base
    WHERE delivered_at IS NOT NULL
),
route_q AS (
    SELECT k.purchase_date, k.customer_state, k.seller_state,
           QUANTILE_CONT(d.days, 0.5) AS route_p50_delivery_days_90d,
           QUANTILE_CONT(d.days, 0.9) AS route_p90_delivery_days_90d
    FROM route_keys k
    LEFT JOIN delivered_orders d
           ON d.customer_state = k.customer_state AND d.seller_state = k.seller_state
          AND d.day >= k.purchase_date - INTERVAL 90 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
cstate_q AS (
    SELECT k.purchase_date, k.customer_state,
           QUANTILE_CONT(d.days, 0.9) AS cstate_p90_delivery_days_30d
    FROM cstate_keys k
    LEFT JOIN delivered_orders d
           ON d.customer_state = k.customer_state
          AND d.day >= k.purchase_date - INTERVAL 30 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
-- nowcast of the carriers' current speed: of the orders bought on day p (any status), how many
-- were delivered within k = 7 / 10 days of p (delivered_at < p + k days). That is settled at
-- (p + k) 00:00, so at d only the cohorts with p + k <= d may be used: the 7 cohorts
-- p in [d - k - 7, d - k) (k = 10 with [d - 17, d - 7) counted deliveries on/after d).
cohorts AS (
    SELECT purchase_date AS p, customer_state, count(*) AS n,
           count(*) FILTER (WHERE delivered_at < purchase_date + INTERVAL 7 DAY) AS n_d7,
           count(*) FILTER (WHERE delivered_at < purchase_date + INTERVAL 10 DAY) AS n_d10
    FROM base
    GROUP BY ALL
),
market_speed AS (
    SELECT k.purchase_date,
           sum(c.n_d7) FILTER (WHERE c.p >= k.purchase_date - INTERVAL 14 DAY AND c.p < k.purchase_date - INTERVAL 7 DAY)
             / nullif(sum(c.n) FILTER (WHERE c.p >= k.purchase_date - INTERVAL 14 DAY AND c.p < k.purchase_date - INTERVAL 7 DAY), 0)
             AS market_pct_delivered_7d_recent,
           sum(c.n_d10) FILTER (WHERE c.p < k.purchase_date - INTERVAL 10 DAY)
             / nullif(sum(c.n) FILTER (WHERE c.p < k.purchase_date - INTERVAL 10 DAY), 0)
             AS market_pct_delivered_10d_recent
    FROM day_keys k
    LEFT JOIN cohorts c ON c.p >= k.purchase_date - INTERVAL 17 DAY AND c.p < k.purchase_date - INTERVAL 7 DAY
    GROUP BY ALL
),
cstate_speed AS (
    SELECT k.purchase_date, k.customer_state,
           sum(c.n_d10) / nullif(sum(c.n), 0) AS cstate_pct_delivered_10d_recent
    FROM cstate_keys k
    LEFT JOIN cohorts c
           ON c.customer_state = k.customer_state
          AND c.p >= k.purchase_date - INTERVAL 24 DAY AND c.p < k.purchase_date - INTERVAL 10 DAY
    GROUP BY ALL
),
-- calendar of the promise: business days in [p, e) and holidays in [p, e], national and in the customer's state
promise_cal AS (
    SELECT t.order_id,
           ne.bd_before - np.bd_before AS promised_business_days,
           (ne1.hol_before - np.hol_before) AS n_holidays_to_estimate,
           (se1.hol_before - sp.hol_before) - (ne1.hol_before - np.hol_before) AS n_state_holidays_to_estimate
    FROM target t
    LEFT JOIN calendar np ON np.state = '' AND np.day = t.purchase_date
    LEFT JOIN calendar ne ON ne.state = '' AND ne.day = CAST(t.estimated_at AS DATE)
    LEFT JOIN calendar ne1 ON ne1.state = '' AND ne1.day = CAST(t.estimated_at AS DATE) + INTERVAL 1 DAY
    LEFT JOIN calendar sp ON sp.state = t.customer_state AND sp.day = t.purchase_date
    LEFT JOIN calendar se1 ON se1.state = t.customer_state AND se1.day = CAST(t.estimated_at AS DATE) + INTERVAL 1 DAY
),
-- this order's promise against recent delivery times: the share of the deliveries in [d - N, d)
-- (to its customer state / the whole market) that took more days than this order's promise
promise_target AS (
    SELECT order_id, purchase_date, customer_state,
           DATEDIFF_DAYS(purchase_date, CAST(estimated_at AS DATE)) AS promised
    FROM target
),
delivered_hist AS (
    SELECT day, customer_state, days, count(*) AS n FROM delivered_orders GROUP BY ALL
),
cstate_hist AS (
    SELECT k.purchase_date, k.customer_state, d.days, sum(d.n) AS n
    FROM cstate_keys k
    JOIN delivered_hist d
      ON d.customer_state = k.customer_state
     AND d.day >= k.purchase_date - INTERVAL 30 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
cstate_exceed AS (
    SELECT t.order_id,
           coalesce(sum(h.n) FILTER (WHERE h.days > t.promised), 0) / nullif(sum(h.n), 0) AS cstate_pct_slower_than_promise_30d,
           coalesce(sum(h.n) FILTER (WHERE h.days > t.promised - 3), 0) / nullif(sum(h.n), 0)
               AS cstate_pct_slower_than_promise_less_3d_30d
    FROM promise_target t
    JOIN cstate_hist h ON h.purchase_date = t.purchase_date AND h.customer_state = t.customer_state
    GROUP BY ALL
),
market_hist AS (
    SELECT k.purchase_date, d.days, sum(d.n) AS n
    FROM day_keys k
    JOIN delivered_hist d ON d.day >= k.purchase_date - INTERVAL 14 DAY AND d.day < k.purchase_date
    GROUP BY ALL
),
market_exceed AS (
    SELECT t.order_id,
           coalesce(sum(h.n) FILTER (WHERE h.days > t.promised), 0) / nullif(sum(h.n), 0) AS market_pct_slower_than_promise_14d
    FROM promise_target t
    JOIN market_hist h ON h.purchase_date = t.purchase_date
    GROUP BY ALL
),
-- Kaplan-Meier survival of the delivery age (days from purchase), market level, at d: cohorts bought
-- in [d - 60, d); an order delivered before d is an event at its age, any other is censored at
-- d - 1 - p (the last age observed before d)
km_cohorts AS (
    SELECT purchase_date AS p,
           CASE WHEN delivered_at IS NOT NULL THEN DATEDIFF_DAYS(purchase_date, CAST(delivered_at AS DATE)) END AS age,
           count(*) AS n
    FROM base
    GROUP BY ALL
),
km_rows AS (
    SELECT k.purchase_date AS d, c.age, DATEDIFF_DAYS(c.p, k.purchase_date) - 1 AS cens, c.n
    FROM day_keys k
    JOIN km_cohorts c ON c.p >= k.purchase_date - INTERVAL 60 DAY AND c.p < k.purchase_date
),
km_leave AS (  -- per (d, age x): events at x, and all rows leaving the risk set after x (event or censoring)
    SELECT d, CASE WHEN age IS NOT NULL AND age <= cens THEN age ELSE cens END AS x,
           sum(CASE WHEN age IS NOT NULL AND age <= cens THEN n ELSE 0 END) AS ev, sum(n) AS n_leave
    FROM km_rows
    GROUP BY ALL
),
km_risk AS (
    SELECT d, x, ev,
           sum(n_leave) OVER (PARTITION BY d ORDER BY x DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS risk
    FROM km_leave
),
km_surv AS (
    SELECT d, x,
           exp(sum(ln(greatest(1 - ev / risk, 1e-9)))
               OVER (PARTITION BY d ORDER BY x ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS s
    FROM km_risk
),
km_exceed AS (  -- S(promised days): no age observed up to the promise yet -> 1 (nobody delivered that fast)
    SELECT t.order_id, coalesce(ARG_MAX(s.s, s.x), 1.0) AS market_km_pct_slower_than_promise
    FROM promise_target t
    LEFT JOIN km_surv s ON s.d = t.purchase_date AND s.x <= t.promised
    GROUP BY ALL
),
-- orders coming due: bought before d with an estimate in [d, d + 7); the share not yet delivered at d
open_due AS (
    SELECT k.purchase_date, b.customer_state,
           count(*) AS n,
           count(*) FILTER (WHERE b.delivered_at IS NULL OR b.delivered_at >= k.purchase_date) AS n_open
    FROM day_keys k
    JOIN base b
      ON CAST(b.estimated_at AS DATE) >= k.purchase_date AND CAST(b.estimated_at AS DATE) < k.purchase_date + INTERVAL 7 DAY
     AND b.purchase_ts < k.purchase_date
    GROUP BY ALL
),
open_due_market AS (
    SELECT purchase_date, sum(n_open) / nullif(sum(n), 0) AS market_pct_open_due_7d FROM open_due GROUP BY ALL
)
SELECT b.order_id, b.customer_id, b.seller_id, b.order_status,
       b.purchase_ts, b.approved_at, b.delivered_at, b.estimated_at,
       -- order
       b.order_value, b.freight_value,
       b.freight_value / nullif(b.order_value, 0) AS freight_ratio,
       b.n_items, b.n_products, b.n_sellers,
       b.total_weight_g, b.max_item_weight_g, b.total_volume_cm3,
       b.product_category,
       b.payment_type, b.payment_installments, b.n_payments,
       -- promise
       DATEDIFF_DAYS(b.purchase_date, CAST(b.estimated_at AS DATE)) AS promised_days,
       DATEDIFF_DAYS(b.purchase_date, CAST(b.shipping_limit_date AS DATE)) AS shipping_limit_days,
       (EPOCH(b.approved_at) - EPOCH(b.purchase_ts)) / 3600.0 AS approval_hours,
       -- geography
       {{ haversine }} AS distance_km,
       CASE WHEN b.customer_state = b.seller_state THEN 1 ELSE 0 END AS same_state,
       b.customer_state, b.seller_state,
       -- calendar
       month(b.purchase_ts) AS purchase_month,
       ISODOW(b.purchase_ts) AS purchase_weekday,
       ISODOW(b.estimated_at) AS estimated_weekday,
       CAST(pc.promised_business_days AS BIGINT) AS promised_business_days,
       CAST(pc.n_holidays_to_estimate AS BIGINT) AS n_holidays_to_estimate,
       CAST(pc.n_state_holidays_to_estimate AS BIGINT) AS n_state_holidays_to_estimate,
       -- context known before the purchase date
       CAST(r.route_n_delivered_90d AS BIGINT) AS route_n_delivered_90d, r.route_pct_late_90d, r.route_avg_delivery_days_90d,
       DATEDIFF_DAYS(b.purchase_date, CAST(b.estimated_at AS DATE)) - r.route_avg_delivery_days_90d AS promise_slack_days,
       cs.cstate_pct_late_30d, cs.cstate_avg_delivery_days_30d,
       m.market_pct_late_14d, m.market_avg_delivery_days_14d,
       bl.market_backlog_14d,
       bl.market_backlog_14d / nullif(m.market_n_delivered_14d, 0) AS market_backlog_ratio_14d,
       rq.route_p50_delivery_days_90d, rq.route_p90_delivery_days_90d,
       DATEDIFF_DAYS(b.purchase_date, CAST(b.estimated_at AS DATE)) - rq.route_p90_delivery_days_90d
           AS route_promise_slack_p90_days,
       cq.cstate_p90_delivery_days_30d,
       DATEDIFF_DAYS(b.purchase_date, CAST(b.estimated_at AS DATE)) - cq.cstate_p90_delivery_days_30d
           AS cstate_promise_slack_p90_days,
       ms.market_pct_delivered_7d_recent, ms.market_pct_delivered_10d_recent,
       css.cstate_pct_delivered_10d_recent,
       dr.route_pct_overdue_30d, dc.cstate_pct_overdue_14d, dm.market_pct_overdue_7d,
       CAST(ds.seller_n_due_90d AS BIGINT) AS seller_n_due_90d, ds.seller_pct_overdue_90d,
       ce.cstate_pct_slower_than_promise_30d, ce.cstate_pct_slower_than_promise_less_3d_30d,
       me.market_pct_slower_than_promise_14d, ke.market_km_pct_slower_than_promise,
       odm.market_pct_open_due_7d,
       od.n_open / nullif(od.n, 0) AS cstate_pct_open_due_7d
FROM target b
LEFT JOIN promise_cal pc ON pc.order_id = b.order_id
LEFT JOIN cstate_exceed ce ON ce.order_id = b.order_id
LEFT JOIN market_exceed me ON me.order_id = b.order_id
LEFT JOIN km_exceed ke ON ke.order_id = b.order_id
LEFT JOIN open_due_market odm ON odm.purchase_date = b.purchase_date
LEFT JOIN open_due od ON od.purchase_date = b.purchase_date AND od.customer_state IS NOT DISTINCT FROM b.customer_state
LEFT JOIN route_ctx r
       ON r.purchase_date = b.purchase_date AND r.customer_state IS NOT DISTINCT FROM b.customer_state
      AND r.seller_state IS NOT DISTINCT FROM b.seller_state
LEFT JOIN cstate_ctx cs ON cs.purchase_date = b.purchase_date AND cs.customer_state IS NOT DISTINCT FROM b.customer_state
LEFT JOIN market_ctx m ON m.purchase_date = b.purchase_date
LEFT JOIN backlog_ctx bl ON bl.purchase_date = b.purchase_date
LEFT JOIN due_route dr
       ON dr.purchase_date = b.purchase_date AND dr.customer_state IS NOT DISTINCT FROM b.customer_state
      AND dr.seller_state IS NOT DISTINCT FROM b.seller_state
LEFT JOIN due_cstate dc ON dc.purchase_date = b.purchase_date AND dc.customer_state IS NOT DISTINCT FROM b.customer_state
LEFT JOIN due_market dm ON dm.purchase_date = b.purchase_date
LEFT JOIN due_seller ds ON ds.purchase_date = b.purchase_date AND ds.seller_id = b.seller_id
LEFT JOIN route_q rq
       ON rq.purchase_date = b.purchase_date AND rq.customer_state IS NOT DISTINCT FROM b.customer_state
      AND rq.seller_state IS NOT DISTINCT FROM b.seller_state
LEFT JOIN cstate_q cq ON cq.purchase_date = b.purchase_date AND cq.customer_state IS NOT DISTINCT FROM b.customer_state
LEFT JOIN market_speed ms ON ms.purchase_date = b.purchase_date
LEFT JOIN cstate_speed css ON css.purchase_date = b.purchase_date AND css.customer_state IS NOT DISTINCT FROM b.customer_state
