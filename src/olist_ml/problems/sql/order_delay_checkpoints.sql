-- order_delay_checkpoints: the check points of every order (olist_ml.problems.order_delay, module doc).
-- grain: (dt_ref, order_id) -- base's columns + dt_ref
-- reads: `base` (order_delay_base.sql rows); `step` (days between in-flight check points); `end` (a DATE
--        literal: exclusive end of the observed deliveries, NULL for none: no in-flight rows)
--
-- The row at approval: dt_ref = the purchase date. In flight: every `step` days after the purchase
-- date and every month start, while the order is approved before dt_ref, not delivered before dt_ref,
-- its promise not yet passed (dt_ref <= the estimated date) and dt_ref before `end`.
WITH o AS (
    SELECT *, CAST(estimated_at AS DATE) AS est_day FROM ({{ base }}) b
    WHERE estimated_at IS NOT NULL AND (approved_at IS NOT NULL OR delivered_at IS NOT NULL)
),
months AS (
    SELECT DATE_SERIES(date_trunc('month', min(purchase_date)), max(est_day), INTERVAL 1 MONTH) AS m
    FROM o
),
inflight AS (
    SELECT DISTINCT order_id, dt_ref FROM (
        SELECT order_id, DATE_SERIES(purchase_date + INTERVAL {{ step }} DAY, est_day, INTERVAL {{ step }} DAY) AS dt_ref
        FROM o WHERE est_day >= purchase_date + INTERVAL {{ step }} DAY
        UNION ALL
        SELECT o.order_id, months.m FROM o JOIN months ON months.m > o.purchase_date AND months.m <= o.est_day
    ) x
)
SELECT o.purchase_date AS dt_ref, STAR_EXCLUDE(o, est_day) FROM o
UNION ALL
SELECT p.dt_ref, STAR_EXCLUDE(o, est_day)
FROM inflight p JOIN o ON o.order_id = p.order_id
WHERE p.dt_ref < {{ end }} AND o.approved_at < p.dt_ref
  AND (o.delivered_at IS NULL OR o.delivered_at >= p.dt_ref) AND p.dt_ref <= o.est_day
