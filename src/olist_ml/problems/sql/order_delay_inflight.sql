-- order_delay_inflight: the state of an order in flight at a check point, and the market around it.
-- grain: (dt_ref, order_id) -- one row per row of `target` (an order at a check point dt_ref)
-- reads: `base` (order_delay_base.sql rows: every order with items, the history), `target` (base's
--        columns + dt_ref, the check point), `calendar` (order_delay_calendar.sql)
--
-- Point in time: every fact used happened strictly before dt_ref 00:00 -- the order's own approval,
-- carrier hand-over and delivery (a timestamp on/after dt_ref has not happened yet at dt_ref), and the
-- history's purchases, hand-overs and deliveries. The promise (estimated date) and the shipping
-- limit are known from approval. No order_status (an extract snapshot, not a point-in-time fact).
--
-- Order state at dt_ref (t): days in flight (t - purchase date), days since approval, handed to the
-- carrier or not, days since the hand-over and the hand-over's delay after purchase, days left to the
-- promise (estimated date - t; 0 = due today; negative only for an order scored after its promise),
-- business days left (national calendar, and the customer state's), days past the seller's shipping
-- limit while not handed over.
-- Market now (facts before t): of the orders bought in [t - 45 d, t), the share past their promise
-- and still undelivered at t (market, customer state) and the share not yet handed to a carrier;
-- late rates and transit times (carrier -> customer) of the deliveries completed in [t - N d, t)
-- (market 14 d, customer state 30 d, route = seller state -> customer state 60 d); and two
-- conditional rates from those deliveries (customer state, 30 d): of the recent deliveries that took
-- at least as long as this order has already taken (since purchase / since the hand-over), the share
-- that took longer than its promise allows (P(late | not delivered yet), empirically).
WITH base AS (
{{ base }}
),
target AS (
{{ target }}
),
{{ calendar }},
-- the history's deliveries: age (purchase -> delivery days), transit (carrier -> delivery days), late
dl AS (
    SELECT CAST(delivered_at AS DATE) AS day, customer_state, seller_state,
           DATEDIFF_DAYS(purchase_date, CAST(delivered_at AS DATE)) AS age,
           CASE WHEN carrier_at IS NOT NULL AND carrier_at <= delivered_at
                THEN DATEDIFF_DAYS(CAST(carrier_at AS DATE), CAST(delivered_at AS DATE)) END AS transit,
           CASE WHEN CAST(delivered_at AS DATE) > CAST(estimated_at AS DATE) THEN 1 ELSE 0 END AS late
    FROM base
    WHERE delivered_at IS NOT NULL
),
dl_day AS (
    SELECT day, customer_state, seller_state, count(*) AS n, sum(late) AS n_late,
           count(transit) AS n_transit, sum(transit) AS sum_transit
    FROM dl
    GROUP BY ALL
),
t_keys AS (SELECT DISTINCT dt_ref FROM target),
s_keys AS (SELECT DISTINCT dt_ref, customer_state FROM target),
r_keys AS (SELECT DISTINCT dt_ref, customer_state, seller_state FROM target),
market_now AS (
    SELECT k.dt_ref,
           sum(d.n_late) / nullif(sum(d.n), 0) AS now_market_pct_late_14d,
           sum(d.sum_transit) / nullif(sum(d.n_transit), 0) AS now_market_transit_days_14d
    FROM t_keys k
    LEFT JOIN dl_day d ON d.day >= k.dt_ref - INTERVAL 14 DAY AND d.day < k.dt_ref
    GROUP BY ALL
),
cstate_now AS (
    SELECT k.dt_ref, k.customer_state,
           sum(d.n_late) / nullif(sum(d.n), 0) AS now_cstate_pct_late_30d,
           sum(d.sum_transit) / nullif(sum(d.n_transit), 0) AS now_cstate_transit_days_30d
    FROM s_keys k
    LEFT JOIN dl_day d ON d.customer_state = k.customer_state
          AND d.day >= k.dt_ref - INTERVAL 30 DAY AND d.day < k.dt_ref
    GROUP BY ALL
),
route_now AS (
    SELECT k.dt_ref, k.customer_state, k.seller_state,
           sum(d.n_late) / nullif(sum(d.n), 0) AS now_route_pct_late_60d,
           sum(d.sum_transit) / nullif(sum(d.n_transit), 0) AS now_route_transit_days_60d
    FROM r_keys k
    LEFT JOIN dl_day d ON d.customer_state = k.customer_state AND d.seller_state = k.seller_state
          AND d.day >= k.dt_ref - INTERVAL 60 DAY AND d.day < k.dt_ref
    GROUP BY ALL
),
-- the orders bought in the last 45 days, as they stood at t: past their promise and undelivered,
-- not handed to a carrier yet (market and customer state)
recent AS (
    SELECT k.dt_ref, b.customer_state, count(*) AS n,
           count(*) FILTER (WHERE CAST(b.estimated_at AS DATE) < k.dt_ref
                              AND (b.delivered_at IS NULL OR b.delivered_at >= k.dt_ref)) AS n_overdue,
           count(*) FILTER (WHERE (b.carrier_at IS NULL OR b.carrier_at >= k.dt_ref)
                              AND (b.delivered_at IS NULL OR b.delivered_at >= k.dt_ref)) AS n_not_handed
    FROM t_keys k
    JOIN base b ON b.purchase_ts >= k.dt_ref - INTERVAL 45 DAY AND b.purchase_ts < k.dt_ref
    GROUP BY ALL
),
recent_market AS (
    SELECT dt_ref, sum(n_overdue) / nullif(sum(n), 0) AS now_market_pct_overdue_45d,
           sum(n_not_handed) / nullif(sum(n), 0) AS now_market_pct_not_handed_45d
    FROM recent
    GROUP BY ALL
),
-- the order at t
state AS (
    SELECT t.dt_ref, t.order_id, t.customer_state, t.seller_state,
           DATEDIFF_DAYS(t.purchase_date, t.dt_ref) AS days_in_flight,
           CASE WHEN t.approved_at IS NULL THEN NULL
                WHEN t.approved_at < t.dt_ref THEN DATEDIFF_DAYS(CAST(t.approved_at AS DATE), t.dt_ref)
                ELSE 0 END AS days_since_approval,
           CASE WHEN t.carrier_at < t.dt_ref THEN 1 ELSE 0 END AS handed_to_carrier,
           CASE WHEN t.carrier_at < t.dt_ref THEN DATEDIFF_DAYS(CAST(t.carrier_at AS DATE), t.dt_ref) END
               AS days_since_carrier,
           CASE WHEN t.carrier_at < t.dt_ref THEN DATEDIFF_DAYS(t.purchase_date, CAST(t.carrier_at AS DATE)) END
               AS carrier_days_after_purchase,
           DATEDIFF_DAYS(t.dt_ref, CAST(t.estimated_at AS DATE)) AS days_left,
           CASE WHEN t.carrier_at < t.dt_ref THEN NULL
                ELSE DATEDIFF_DAYS(CAST(t.shipping_limit_date AS DATE), t.dt_ref) END AS days_past_shipping_limit,
           -- lookups into the recent-delivery distributions (ages in days, capped at 120)
           least(DATEDIFF_DAYS(t.purchase_date, t.dt_ref), 120) AS age_now,
           least(greatest(DATEDIFF_DAYS(t.purchase_date, CAST(t.estimated_at AS DATE)) + 1, 0), 120) AS age_late,
           CASE WHEN t.carrier_at < t.dt_ref
                THEN least(DATEDIFF_DAYS(CAST(t.carrier_at AS DATE), t.dt_ref), 120) END AS transit_now,
           CASE WHEN t.carrier_at < t.dt_ref
                THEN least(greatest(DATEDIFF_DAYS(CAST(t.carrier_at AS DATE), CAST(t.estimated_at AS DATE)) + 1, 0),
                           120) END AS transit_late,
           CAST(t.estimated_at AS DATE) AS est_day
    FROM target t
),
-- recent delivery-time distributions per customer state (deliveries in [t - 30 d, t)): count by age / transit
age_hist AS (
    SELECT k.dt_ref, k.customer_state, least(d.age, 120) AS v, count(*) AS n
    FROM s_keys k
    JOIN dl d ON d.customer_state = k.customer_state AND d.day >= k.dt_ref - INTERVAL 30 DAY AND d.day < k.dt_ref
    GROUP BY ALL
),
transit_hist AS (
    SELECT k.dt_ref, k.customer_state, least(d.transit, 120) AS v, count(*) AS n
    FROM s_keys k
    JOIN dl d ON d.customer_state = k.customer_state AND d.day >= k.dt_ref - INTERVAL 30 DAY AND d.day < k.dt_ref
    WHERE d.transit IS NOT NULL
    GROUP BY ALL
),
age_lookups AS (SELECT DISTINCT dt_ref, customer_state, age_now, age_late FROM state),
age_cond AS (
    SELECT l.dt_ref, l.customer_state, l.age_now, l.age_late,
           coalesce(sum(h.n) FILTER (WHERE h.v >= l.age_late), 0) / nullif(sum(h.n) FILTER (WHERE h.v >= l.age_now), 0)
               AS now_cstate_p_late_given_age
    FROM age_lookups l
    JOIN age_hist h ON h.dt_ref = l.dt_ref AND h.customer_state = l.customer_state
    GROUP BY ALL
),
transit_lookups AS (
    SELECT DISTINCT dt_ref, customer_state, transit_now, transit_late FROM state WHERE transit_now IS NOT NULL
),
transit_cond AS (
    SELECT l.dt_ref, l.customer_state, l.transit_now, l.transit_late,
           coalesce(sum(h.n) FILTER (WHERE h.v >= l.transit_late), 0)
               / nullif(sum(h.n) FILTER (WHERE h.v >= l.transit_now), 0) AS now_cstate_p_late_given_transit
    FROM transit_lookups l
    JOIN transit_hist h ON h.dt_ref = l.dt_ref AND h.customer_state = l.customer_state
    GROUP BY ALL
)
SELECT s.dt_ref, s.order_id,
       -- the order at t
       CAST(s.days_in_flight AS BIGINT) AS days_in_flight,
       CAST(s.days_since_approval AS BIGINT) AS days_since_approval,
       CAST(s.handed_to_carrier AS INTEGER) AS handed_to_carrier,
       CAST(s.days_since_carrier AS BIGINT) AS days_since_carrier,
       CAST(s.carrier_days_after_purchase AS BIGINT) AS carrier_days_after_purchase,
       CAST(s.days_left AS BIGINT) AS days_left,
       CAST(ce.bd_before - ct.bd_before AS BIGINT) AS business_days_left,
       CAST(se.bd_before - st.bd_before AS BIGINT) AS business_days_left_state,
       CAST(s.days_past_shipping_limit AS BIGINT) AS days_past_shipping_limit,
       -- the market at t
       m.now_market_pct_late_14d, m.now_market_transit_days_14d,
       c.now_cstate_pct_late_30d, c.now_cstate_transit_days_30d,
       r.now_route_pct_late_60d, r.now_route_transit_days_60d,
       rm.now_market_pct_overdue_45d, rm.now_market_pct_not_handed_45d,
       rc.n_overdue / nullif(rc.n, 0) AS now_cstate_pct_overdue_45d,
       ac.now_cstate_p_late_given_age,
       tc.now_cstate_p_late_given_transit
FROM state s
LEFT JOIN calendar ct ON ct.state = '' AND ct.day = s.dt_ref
LEFT JOIN calendar ce ON ce.state = '' AND ce.day = s.est_day
LEFT JOIN calendar st ON st.state = s.customer_state AND st.day = s.dt_ref
LEFT JOIN calendar se ON se.state = s.customer_state AND se.day = s.est_day
LEFT JOIN market_now m ON m.dt_ref = s.dt_ref
LEFT JOIN cstate_now c ON c.dt_ref = s.dt_ref AND c.customer_state IS NOT DISTINCT FROM s.customer_state
LEFT JOIN route_now r ON r.dt_ref = s.dt_ref AND r.customer_state IS NOT DISTINCT FROM s.customer_state
      AND r.seller_state IS NOT DISTINCT FROM s.seller_state
LEFT JOIN recent_market rm ON rm.dt_ref = s.dt_ref
LEFT JOIN recent rc ON rc.dt_ref = s.dt_ref AND rc.customer_state IS NOT DISTINCT FROM s.customer_state
LEFT JOIN age_cond ac ON ac.dt_ref = s.dt_ref AND ac.customer_state = s.customer_state
      AND ac.age_now = s.age_now AND ac.age_late = s.age_late
LEFT JOIN transit_cond tc ON tc.dt_ref = s.dt_ref AND tc.customer_state = s.customer_state
      AND tc.transit_now = s.transit_now AND tc.transit_late = s.transit_late
