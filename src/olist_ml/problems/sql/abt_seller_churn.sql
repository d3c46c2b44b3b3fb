-- grain: (dt_ref, seller_id)
-- abt_seller_churn: every seller eligible at dt_ref (>= 1 sale in [dt_ref - {{ eligibility_days }}d, dt_ref)),
-- all feature-store columns at that dt_ref, plus the churn-specific columns and the churn target.
-- A sale is an order at its purchase time (any status), as in the feature store.
-- Target: churn = 1 when the seller makes no sale from dt_ref through its last sale date before
-- dt_ref + {{ horizon_days }} days (it completes {{ horizon_days }} days without a sale), else 0.
-- Labelled only where every eligible seller's target window lies inside the observed data:
-- the windows end at most at dt_ref + {{ horizon_days }} days (exclusive: last sale date <= dt_ref - 1 day,
-- window through that + {{ horizon_days }} days inclusive), and the data is observed on days before
-- observed_end (exclusive; olist_ml.warehouse.observed_end, passed in as a DATE literal), so a
-- dt_ref is labelled iff dt_ref + {{ horizon_days }} days <= observed_end; later dt_refs (and scoring
-- frames) get churn = NULL. Likewise a dt_ref is unlabelled when a marketplace-wide silence (no
-- order at all for >= {{ silence_days }} consecutive days: a hole in the extract, e.g. 2016-10-17..2016-12-22
-- in the real data) overlaps [dt_ref - {{ eligibility_days }} d, dt_ref + {{ horizon_days }} d): the last
-- sale dates and the target window would not be observed.
-- label_known_at (not a feature; NULL where churn is NULL): when the label became known: the first
-- sale in the target window (churn = 0), else the window's end, last sale date + {{ horizon_days }} + 1 days
-- 00:00 = dt_ref + horizon_days_left days (churn = 1), which is never after dt_ref + {{ horizon_days }} days.
--
-- Churn-specific columns: point-in-time, built only from facts strictly before dt_ref 00:00
-- (purchase, carrier and delivery timestamps < dt_ref; estimated delivery dates of orders placed
-- before dt_ref, which are known at purchase). Order status (a snapshot at extract time) is not used.
-- Rates are per day over the window, or over the tenure when that is shorter.
--   horizon_days_left                  days from dt_ref through last sale date + {{ horizon_days }} (the target window)
--   exp_sale_days_in_horizon_<w>d / _lifetime
--                                      sale-day rate over the window x horizon_days_left, w in the feature
--                                      windows (Settings.feature_windows: {{ windows | join(', ') }})
--   median_gap_days / p90_gap_days / max_gap_days
--                                      days between consecutive sale days, over the seller's history
--   pct_gaps_over_horizon              share of those gaps longer than {{ horizon_days }} days
--   recency_over_median_gap            days since the last sale / median gap
--   n_active_weeks_84d                 weeks with >= 1 sale in the last 84 days
--   n_sale_days_7d / _14d / _28d       days with >= 1 sale in the last 7 / 14 / 28 days
--   n_orders_7d / n_orders_14d         orders in the last 7 / 14 days
--   sale_rate_accel_7_28d              sale-day rate over 7 days / rate over 28 days (NULL when 0 in 28 d)
--   sale_rate_accel_28_90d             sale-day rate over 28 days / rate over 90 days
--   p_no_sale_poisson_{14,28,90}d / _lifetime
--                                      exp(-sale-day rate over the window x horizon_days_left): P(no sale
--                                      day in the target window) if sale days were Poisson at that rate
--   p_gap_over_horizon_given_recency   smoothed share of past gaps longer than {{ horizon_days }} days among
--                                      gaps at least as long as the current one ((n_over + 1) / (n_ge + 2))
--   days_since_2nd_last_sale_day / _3rd_ / _5th_
--                                      days since the 2nd / 3rd / 5th most recent sale day (NULL if fewer)
--   avg_last5_gaps_days                mean of the last (up to) 5 gaps between sale days
--   last_gap_days                      gap that ended at the last sale day (NULL for a first sale)
--   recency_over_tenure                days since the last sale / days since the first sale
--   share_sale_days_last_90d           sale days in the last 90 days / lifetime sale days
--   n_orders_awaiting_carrier          orders of the last 30 days not yet handed to the carrier at dt_ref
--   n_orders_in_flight                 orders of the last 60 days not yet delivered at dt_ref
--   n_orders_due_after_dt_ref          orders whose estimated delivery date is on/after dt_ref
--   n_orders_overdue_handover          orders of the last 60 days past their shipping limit but not handed
--                                      to the carrier at dt_ref (a seller that stopped fulfilling)
--   pct_orders_overdue_handover        those / orders of the last 60 days past their shipping limit
--   neg_log_p_no_sale_gamma_poisson / _90d
--                                      -log P(no sale day in the target window) under a Gamma-Poisson model
--                                      (prior 1 sale day per {{ gp_prior_days }} days) fitted to the seller's lifetime /
--                                      last 90 days: (sale days + 1) x ln((prior + T + left) / (prior + T))
--   n_products_lifetime                distinct products ever sold
--   top_product_share_90d              share of the last 90 days' items that are the seller's top product
--   product_hhi_90d                    Herfindahl index of product shares among the last 90 days' items
--   mkt_orders_ratio_30d               marketplace orders in the last 30 days / in the 30 days before
--   mkt_share_orders_30d               seller's orders / marketplace orders in the last 30 days, per mille
--   mkt_share_orders_ratio             seller's 30-day marketplace share / its share in the 30 days before
WITH dates AS (
  {{ dates_sql }}
),
sales AS (
  SELECT DISTINCT i.seller_id, i.order_id, o.order_purchase_timestamp AS ts
  FROM stg_order_items i
  JOIN stg_orders o ON o.order_id = i.order_id
),
eligible AS (
  SELECT d.dt_ref, s.seller_id, CAST(max(s.ts) AS DATE) AS last_sale_date
  FROM dates d
  JOIN sales s ON s.ts < d.dt_ref AND s.ts >= d.dt_ref - INTERVAL {{ eligibility_days }} DAY
  GROUP BY d.dt_ref, s.seller_id
),
holes AS (
  -- marketplace-wide silences: [first silent day, next order day) of >= {{ silence_days }} days
  SELECT CAST(prev_day + INTERVAL 1 DAY AS DATE) AS hole_start, day AS hole_end
  FROM (SELECT day, lag(day) OVER (ORDER BY day) AS prev_day
        FROM (SELECT DISTINCT CAST(order_purchase_timestamp AS DATE) AS day FROM stg_orders) x) y
  WHERE DATEDIFF_DAYS(prev_day, day) > {{ silence_days }}
),
unobserved AS (
  SELECT DISTINCT d.dt_ref
  FROM dates d
  JOIN holes h ON h.hole_start < d.dt_ref + INTERVAL {{ horizon_days }} DAY
              AND h.hole_end > d.dt_ref - INTERVAL {{ eligibility_days }} DAY
),
sale_days AS (
  -- one row per (seller, sale day) with the gap to the seller's previous sale day (known on that day)
  SELECT seller_id, day,
         DATEDIFF_DAYS(lag(day) OVER (PARTITION BY seller_id ORDER BY day), day) AS gap
  FROM (SELECT DISTINCT seller_id, CAST(ts AS DATE) AS day FROM sales) x
),
history AS (
  SELECT
    e.dt_ref,
    e.seller_id,
    DATEDIFF_DAYS(e.dt_ref, e.last_sale_date) + {{ horizon_days }} + 1 AS horizon_days_left,
    DATEDIFF_DAYS(e.last_sale_date, e.dt_ref) AS recency_days,
    DATEDIFF_DAYS(min(h.day), e.dt_ref) AS tenure_days,
    {% for w in sale_day_windows %}
    count(*) FILTER (WHERE h.day >= e.dt_ref - INTERVAL {{ w }} DAY) AS sd_{{ w }},
    {% endfor %}
    count(*) AS sd_lt,
    count(DISTINCT date_trunc('week', h.day)) FILTER (WHERE h.day >= e.dt_ref - INTERVAL 84 DAY) AS n_active_weeks_84d,
    median(h.gap) AS median_gap_days,
    QUANTILE_CONT(h.gap, 0.9) AS p90_gap_days,
    max(h.gap) AS max_gap_days,
    avg(CASE WHEN h.gap > {{ horizon_days }} THEN CAST(1 AS DOUBLE) WHEN h.gap IS NOT NULL THEN CAST(0 AS DOUBLE) END) AS pct_gaps_over_horizon,
    count(*) FILTER (WHERE h.gap > {{ horizon_days }}) AS n_gaps_over,
    count(*) FILTER (WHERE h.gap >= DATEDIFF_DAYS(e.last_sale_date, e.dt_ref)) AS n_gaps_ge_recency,
    LIST_DESC(h.day, h.day, TRUE) AS days_desc,
    LIST_DESC(h.gap, h.day, h.gap IS NOT NULL) AS gaps_desc
  FROM eligible e
  JOIN sale_days h ON h.seller_id = e.seller_id AND h.day < e.dt_ref
  GROUP BY e.dt_ref, e.seller_id, e.last_sale_date
),
orders AS (
  -- one row per (seller, order) with the order's timestamps (facts are used only where < dt_ref)
  SELECT i.seller_id, i.order_id, o.order_purchase_timestamp AS ts, o.order_delivered_carrier_date AS carrier_ts,
         o.order_delivered_customer_date AS delivered_ts, o.order_estimated_delivery_date AS estimated_ts,
         i.shipping_limit_ts
  FROM (SELECT seller_id, order_id, max(shipping_limit_date) AS shipping_limit_ts
        FROM stg_order_items GROUP BY seller_id, order_id) i
  JOIN stg_orders o ON o.order_id = i.order_id
),
recent_orders AS (
  SELECT
    e.dt_ref,
    e.seller_id,
    count(*) FILTER (WHERE o.ts >= e.dt_ref - INTERVAL 7 DAY) AS n_orders_7d,
    count(*) FILTER (WHERE o.ts >= e.dt_ref - INTERVAL 14 DAY) AS n_orders_14d,
    count(*) FILTER (WHERE o.ts >= e.dt_ref - INTERVAL 30 DAY) AS n_orders_30d,
    count(*) FILTER (WHERE o.ts < e.dt_ref - INTERVAL 30 DAY) AS n_orders_prev_30d,
    count(*) FILTER (WHERE o.ts >= e.dt_ref - INTERVAL 30 DAY
                       AND (o.carrier_ts IS NULL OR o.carrier_ts >= e.dt_ref)) AS n_orders_awaiting_carrier,
    count(*) FILTER (WHERE o.delivered_ts IS NULL OR o.delivered_ts >= e.dt_ref) AS n_orders_in_flight,
    count(*) FILTER (WHERE o.estimated_ts >= e.dt_ref) AS n_orders_due_after_dt_ref,
    count(*) FILTER (WHERE o.shipping_limit_ts < e.dt_ref
                       AND (o.carrier_ts IS NULL OR o.carrier_ts >= e.dt_ref)) AS n_orders_overdue_handover,
    count(*) FILTER (WHERE o.shipping_limit_ts < e.dt_ref) AS n_orders_past_limit
  FROM eligible e
  JOIN orders o ON o.seller_id = e.seller_id AND o.ts < e.dt_ref AND o.ts >= e.dt_ref - INTERVAL 60 DAY
  GROUP BY e.dt_ref, e.seller_id
),
products AS (
  -- items per (dt_ref, seller, product) over the last 90 days, and distinct products ever sold
  SELECT e.dt_ref, e.seller_id, i.product_id,
         count(*) FILTER (WHERE o.order_purchase_timestamp >= e.dt_ref - INTERVAL 90 DAY) AS n_items_90d
  FROM eligible e
  JOIN stg_order_items i ON i.seller_id = e.seller_id
  JOIN stg_orders o ON o.order_id = i.order_id AND o.order_purchase_timestamp < e.dt_ref
  GROUP BY e.dt_ref, e.seller_id, i.product_id
),
catalogue AS (
  SELECT dt_ref, seller_id,
         count(*) AS n_products_lifetime,
         CAST(max(n_items_90d) AS DOUBLE) / NULLIF(sum(n_items_90d), 0) AS top_product_share_90d,
         sum(CAST(n_items_90d AS DOUBLE) * n_items_90d) / NULLIF(CAST(sum(n_items_90d) AS DOUBLE) * sum(n_items_90d), 0)
           AS product_hhi_90d
  FROM products
  GROUP BY dt_ref, seller_id
),
market AS (
  -- marketplace orders (any status) in the 30 days before dt_ref and in the 30 days before those
  SELECT d.dt_ref,
         count(*) FILTER (WHERE o.order_purchase_timestamp >= d.dt_ref - INTERVAL 30 DAY) AS mkt_30,
         count(*) FILTER (WHERE o.order_purchase_timestamp < d.dt_ref - INTERVAL 30 DAY) AS mkt_prev_30
  FROM dates d
  JOIN stg_orders o ON o.order_purchase_timestamp < d.dt_ref
                   AND o.order_purchase_timestamp >= d.dt_ref - INTERVAL 60 DAY
  GROUP BY d.dt_ref
),
churn_cols AS (
  SELECT
    h.dt_ref,
    h.seller_id,
    CAST(h.horizon_days_left AS INTEGER) AS horizon_days_left,
    {% for w in windows %}
    CAST(h.sd_{{ w }} AS DOUBLE) / least({{ w }}, greatest(h.tenure_days, 1)) * h.horizon_days_left AS exp_sale_days_in_horizon_{{ w }}d,
    {% endfor %}
    CAST(h.sd_lt AS DOUBLE) / greatest(h.tenure_days, 1) * h.horizon_days_left AS exp_sale_days_in_horizon_lifetime,
    CAST(h.median_gap_days AS DOUBLE) AS median_gap_days,
    CAST(h.p90_gap_days AS DOUBLE) AS p90_gap_days,
    CAST(h.max_gap_days AS DOUBLE) AS max_gap_days,
    h.pct_gaps_over_horizon,
    CAST(h.recency_days AS DOUBLE) / NULLIF(h.median_gap_days, 0) AS recency_over_median_gap,
    CAST(h.n_active_weeks_84d AS INTEGER) AS n_active_weeks_84d,
    CAST(h.sd_7 AS INTEGER) AS n_sale_days_7d,
    CAST(h.sd_14 AS INTEGER) AS n_sale_days_14d,
    CAST(h.sd_28 AS INTEGER) AS n_sale_days_28d,
    CAST(coalesce(r.n_orders_7d, 0) AS INTEGER) AS n_orders_7d,
    CAST(coalesce(r.n_orders_14d, 0) AS INTEGER) AS n_orders_14d,
    (CAST(h.sd_7 AS DOUBLE) / least(7, greatest(h.tenure_days, 1)))
      / NULLIF(CAST(h.sd_28 AS DOUBLE) / least(28, greatest(h.tenure_days, 1)), 0) AS sale_rate_accel_7_28d,
    (CAST(h.sd_28 AS DOUBLE) / least(28, greatest(h.tenure_days, 1)))
      / NULLIF(CAST(h.sd_90 AS DOUBLE) / least(90, greatest(h.tenure_days, 1)), 0) AS sale_rate_accel_28_90d,
    exp(-CAST(h.sd_14 AS DOUBLE) / least(14, greatest(h.tenure_days, 1)) * h.horizon_days_left) AS p_no_sale_poisson_14d,
    exp(-CAST(h.sd_28 AS DOUBLE) / least(28, greatest(h.tenure_days, 1)) * h.horizon_days_left) AS p_no_sale_poisson_28d,
    exp(-CAST(h.sd_90 AS DOUBLE) / least(90, greatest(h.tenure_days, 1)) * h.horizon_days_left) AS p_no_sale_poisson_90d,
    exp(-CAST(h.sd_lt AS DOUBLE) / greatest(h.tenure_days, 1) * h.horizon_days_left) AS p_no_sale_poisson_lifetime,
    (CAST(h.n_gaps_over AS DOUBLE) + 1) / (h.n_gaps_ge_recency + 2) AS p_gap_over_horizon_given_recency,
    CAST(DATEDIFF_DAYS(LIST_AT(h.days_desc, 2), h.dt_ref) AS INTEGER) AS days_since_2nd_last_sale_day,
    CAST(DATEDIFF_DAYS(LIST_AT(h.days_desc, 3), h.dt_ref) AS INTEGER) AS days_since_3rd_last_sale_day,
    CAST(DATEDIFF_DAYS(LIST_AT(h.days_desc, 5), h.dt_ref) AS INTEGER) AS days_since_5th_last_sale_day,
    CAST(LIST_AVG_FIRST(h.gaps_desc, 5) AS DOUBLE) AS avg_last5_gaps_days,
    CAST(LIST_AT(h.gaps_desc, 1) AS DOUBLE) AS last_gap_days,
    CAST(h.recency_days AS DOUBLE) / greatest(h.tenure_days, 1) AS recency_over_tenure,
    CAST(h.sd_90 AS DOUBLE) / h.sd_lt AS share_sale_days_last_90d,
    CAST(coalesce(r.n_orders_awaiting_carrier, 0) AS INTEGER) AS n_orders_awaiting_carrier,
    CAST(coalesce(r.n_orders_in_flight, 0) AS INTEGER) AS n_orders_in_flight,
    CAST(coalesce(r.n_orders_due_after_dt_ref, 0) AS INTEGER) AS n_orders_due_after_dt_ref,
    CAST(coalesce(r.n_orders_overdue_handover, 0) AS INTEGER) AS n_orders_overdue_handover,
    CAST(r.n_orders_overdue_handover AS DOUBLE) / NULLIF(r.n_orders_past_limit, 0) AS pct_orders_overdue_handover,
    (CAST(h.sd_lt AS DOUBLE) + 1) * ln(({{ gp_prior_days }} + h.tenure_days + h.horizon_days_left) / ({{ gp_prior_days }} + h.tenure_days))
      AS neg_log_p_no_sale_gamma_poisson,
    (CAST(h.sd_90 AS DOUBLE) + 1) * ln(({{ gp_prior_days }} + least(h.tenure_days, 90) + h.horizon_days_left)
                                       / ({{ gp_prior_days }} + least(h.tenure_days, 90))) AS neg_log_p_no_sale_gamma_poisson_90d,
    CAST(c.n_products_lifetime AS INTEGER) AS n_products_lifetime,
    c.top_product_share_90d,
    c.product_hhi_90d,
    CAST(m.mkt_30 AS DOUBLE) / NULLIF(m.mkt_prev_30, 0) AS mkt_orders_ratio_30d,
    1000.0 * CAST(coalesce(r.n_orders_30d, 0) AS DOUBLE) / NULLIF(m.mkt_30, 0) AS mkt_share_orders_30d,
    (CAST(coalesce(r.n_orders_30d, 0) AS DOUBLE) / NULLIF(m.mkt_30, 0))
      / NULLIF(CAST(coalesce(r.n_orders_prev_30d, 0) AS DOUBLE) / NULLIF(m.mkt_prev_30, 0), 0) AS mkt_share_orders_ratio
  FROM history h
  LEFT JOIN recent_orders r ON r.dt_ref = h.dt_ref AND r.seller_id = h.seller_id
  LEFT JOIN catalogue c ON c.dt_ref = h.dt_ref AND c.seller_id = h.seller_id
  LEFT JOIN market m ON m.dt_ref = h.dt_ref
),
future AS (
  -- sales in [dt_ref, last_sale_date + {{ horizon_days }} days], i.e. before midnight of the day after
  SELECT e.dt_ref, e.seller_id, count(s.order_id) AS n_future_sales, min(s.ts) AS first_future_sale_ts
  FROM eligible e
  LEFT JOIN sales s
    ON s.seller_id = e.seller_id
   AND s.ts >= e.dt_ref
   AND s.ts < e.last_sale_date + INTERVAL {{ horizon_days + 1 }} DAY
  GROUP BY e.dt_ref, e.seller_id
),
target AS (
  SELECT e.dt_ref, e.seller_id, e.last_sale_date, u.first_future_sale_ts,
    CAST(CASE
      WHEN NOT {{ labelled }} THEN NULL
      WHEN e.dt_ref + INTERVAL {{ horizon_days }} DAY > {{ observed_end }} THEN NULL
      WHEN un.dt_ref IS NOT NULL THEN NULL
      WHEN u.n_future_sales = 0 THEN 1
      ELSE 0
    END AS INTEGER) AS churn
  FROM eligible e
  JOIN future u ON u.dt_ref = e.dt_ref AND u.seller_id = e.seller_id
  LEFT JOIN unobserved un ON un.dt_ref = e.dt_ref
),
feats AS (
  {{ features_sql }}
)
SELECT
  f.*,
  {{ churn_select }},
  CASE WHEN t.churn = 1 THEN CAST(t.last_sale_date + INTERVAL {{ horizon_days + 1 }} DAY AS TIMESTAMP)
       WHEN t.churn = 0 THEN CAST(t.first_future_sale_ts AS TIMESTAMP) END AS label_known_at,
  t.churn
FROM target t
JOIN eligible e ON e.dt_ref = t.dt_ref AND e.seller_id = t.seller_id
JOIN feats f ON f.dt_ref = e.dt_ref AND f.seller_id = e.seller_id
JOIN churn_cols c ON c.dt_ref = e.dt_ref AND c.seller_id = e.seller_id
ORDER BY e.dt_ref, e.seller_id
