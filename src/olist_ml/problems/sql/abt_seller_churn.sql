-- grain: (dt_ref, seller_id)
-- abt_seller_churn: every seller eligible at dt_ref (>= 1 sale in [dt_ref - {eligibility_days}d, dt_ref)),
-- all feature-store columns at that dt_ref, plus the churn target.
-- A sale is an order at its purchase time (any status), as in the feature store.
-- Target: churn = 1 when the seller makes no sale from dt_ref through its last sale date before
-- dt_ref + {horizon_days} days (it completes {horizon_days} days without a sale), else 0.
-- Labelled only where every eligible seller's horizon lies inside the observed data:
-- dt_ref + {horizon_days} days <= max(order_purchase_timestamp); later dt_refs get churn = NULL.
-- Churn-specific columns (point-in-time: only sale days strictly before dt_ref):
--   horizon_days_left                  days from dt_ref through last sale date + {horizon_days} (the target window)
--   exp_sale_days_in_horizon_{{30,90,180}}d / _lifetime
--                                      sale-day rate over the window (or tenure if shorter) x horizon_days_left
--   median_gap_days / p90_gap_days / max_gap_days
--                                      days between consecutive sale days, over the seller's history
--   pct_gaps_over_horizon              share of those gaps longer than {horizon_days} days
--   recency_over_median_gap            days since the last sale / median gap
--   n_active_weeks_84d                 weeks with >= 1 sale in the last 84 days
WITH dates AS (
  {dates_sql}
),
sales AS (
  SELECT DISTINCT i.seller_id, i.order_id, o.order_purchase_timestamp AS ts
  FROM stg_order_items i
  JOIN stg_orders o ON o.order_id = i.order_id
),
observed AS (
  SELECT max(order_purchase_timestamp) AS observed_end FROM stg_orders
),
eligible AS (
  SELECT d.dt_ref, s.seller_id, CAST(max(s.ts) AS DATE) AS last_sale_date
  FROM dates d
  JOIN sales s ON s.ts < d.dt_ref AND s.ts >= d.dt_ref - INTERVAL {eligibility_days} DAY
  GROUP BY d.dt_ref, s.seller_id
),
sale_days AS (
  -- one row per (seller, sale day) with the gap to the seller's previous sale day (known on that day)
  SELECT seller_id, day,
         date_diff('day', lag(day) OVER (PARTITION BY seller_id ORDER BY day), day) AS gap
  FROM (SELECT DISTINCT seller_id, CAST(ts AS DATE) AS day FROM sales) x
),
history AS (
  SELECT
    e.dt_ref,
    e.seller_id,
    date_diff('day', e.dt_ref, e.last_sale_date) + {horizon_days} + 1 AS horizon_days_left,
    date_diff('day', min(h.day), e.dt_ref) AS tenure_days,
    count(*) FILTER (WHERE h.day >= e.dt_ref - INTERVAL 30 DAY) AS sd_30,
    count(*) FILTER (WHERE h.day >= e.dt_ref - INTERVAL 90 DAY) AS sd_90,
    count(*) FILTER (WHERE h.day >= e.dt_ref - INTERVAL 180 DAY) AS sd_180,
    count(*) AS sd_lt,
    count(DISTINCT date_trunc('week', h.day)) FILTER (WHERE h.day >= e.dt_ref - INTERVAL 84 DAY) AS n_active_weeks_84d,
    median(h.gap) AS median_gap_days,
    quantile_cont(h.gap, 0.9) AS p90_gap_days,
    max(h.gap) AS max_gap_days,
    avg(CASE WHEN h.gap > {horizon_days} THEN 1.0 WHEN h.gap IS NOT NULL THEN 0.0 END) AS pct_gaps_over_horizon
  FROM eligible e
  JOIN sale_days h ON h.seller_id = e.seller_id AND h.day < e.dt_ref
  GROUP BY e.dt_ref, e.seller_id, e.last_sale_date
),
churn_cols AS (
  SELECT
    dt_ref,
    seller_id,
    CAST(horizon_days_left AS INTEGER) AS horizon_days_left,
    CAST(sd_30 AS DOUBLE) / least(30, greatest(tenure_days, 1)) * horizon_days_left AS exp_sale_days_in_horizon_30d,
    CAST(sd_90 AS DOUBLE) / least(90, greatest(tenure_days, 1)) * horizon_days_left AS exp_sale_days_in_horizon_90d,
    CAST(sd_180 AS DOUBLE) / least(180, greatest(tenure_days, 1)) * horizon_days_left AS exp_sale_days_in_horizon_180d,
    CAST(sd_lt AS DOUBLE) / greatest(tenure_days, 1) * horizon_days_left AS exp_sale_days_in_horizon_lifetime,
    CAST(median_gap_days AS DOUBLE) AS median_gap_days,
    CAST(p90_gap_days AS DOUBLE) AS p90_gap_days,
    CAST(max_gap_days AS DOUBLE) AS max_gap_days,
    pct_gaps_over_horizon,
    CAST({horizon_days} + 1 - horizon_days_left AS DOUBLE) / NULLIF(median_gap_days, 0) AS recency_over_median_gap,
    CAST(n_active_weeks_84d AS INTEGER) AS n_active_weeks_84d
  FROM history
),
future AS (
  -- sales in [dt_ref, last_sale_date + {horizon_days} days], i.e. before midnight of the day after
  SELECT e.dt_ref, e.seller_id, count(s.order_id) AS n_future_sales
  FROM eligible e
  LEFT JOIN sales s
    ON s.seller_id = e.seller_id
   AND s.ts >= e.dt_ref
   AND s.ts < e.last_sale_date + INTERVAL ({horizon_days} + 1) DAY
  GROUP BY e.dt_ref, e.seller_id
),
feats AS (
  {features_sql}
)
SELECT
  f.*,
  c.* EXCLUDE (dt_ref, seller_id{churn_exclude}),
  CASE
    WHEN NOT {labelled} THEN NULL
    WHEN e.dt_ref + INTERVAL {horizon_days} DAY > o.observed_end THEN NULL
    WHEN u.n_future_sales = 0 THEN 1
    ELSE 0
  END::INTEGER AS churn
FROM eligible e
JOIN future u ON u.dt_ref = e.dt_ref AND u.seller_id = e.seller_id
JOIN feats f ON f.dt_ref = e.dt_ref AND f.seller_id = e.seller_id
JOIN churn_cols c ON c.dt_ref = e.dt_ref AND c.seller_id = e.seller_id
CROSS JOIN observed o
ORDER BY e.dt_ref, e.seller_id
