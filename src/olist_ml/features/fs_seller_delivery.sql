-- grain: (dt_ref, seller_id)
-- fs_seller_delivery: how the seller's recent orders were fulfilled, using only facts known
-- before dt_ref. Cohort: the seller's orders purchased in [dt_ref - w days, dt_ref).
-- Every fact is dated by a timestamp; order_status is never read (it is the extract's snapshot:
-- an order shown canceled may have been open, or delivered, at dt_ref, and the data holds no
-- cancellation time).
-- * delivered: order_delivered_customer_date < dt_ref (a later delivery is not known yet);
-- * late: not delivered by the end of its estimated delivery DATE (delivered on a later day, or
--   never: canceled orders included); known from the day after the estimated date, whether or
--   not it is delivered later;
-- * decided: delivered on time (known at the delivery) or late (known after the estimated date);
--   orders still within their estimate and undelivered are undecided;
-- * undelivered past the estimate: the estimated date has passed and no delivery before dt_ref
--   (enters the day after the estimated date, leaves at the delivery, if any);
-- * hand-over: order_delivered_carrier_date < dt_ref, compared with the item shipping limit.
-- Computed with deltas (see fs_seller_sales.sql): a fact known on day k about an order bought on
-- day p counts for the dt_refs in (max(p, k), p + w]; a fact that stops holding on day k2 (an
-- overdue order delivered) adds the opposite delta from (max(p, k2), p + w].
WITH o AS (
  SELECT
    so.*,
    -- not delivered by the end of the estimated date (delivered later, or never)
    CASE WHEN edn IS NOT NULL AND (ddn IS NULL OR ddn > edn) THEN 1 ELSE 0 END AS is_late,
    CASE WHEN carrier_ts > shipping_limit_ts THEN 1 ELSE 0 END AS handover_late
  FROM ev_seller_orders so
),
f AS (
  -- ord: cohort order; dlv: delivery known; late: lateness known; dec: outcome decided;
  -- ho: hand-over to the carrier known; ovd: +1 undelivered past the estimate / -1 delivered after it
  SELECT seller_id, 'ord' AS kind, 0 AS isl, 0 AS life, pdn AS s, pdn AS e, CAST(NULL AS INTEGER) AS prv, CAST(NULL AS INTEGER) AS nxt,
    n_items AS v1, CAST(freight_sum * 100 AS DOUBLE) AS v2, CAST(price_sum * 100 AS DOUBLE) AS v3
  FROM o
  UNION ALL
  SELECT seller_id, 'dlv', 0, 0, greatest(pdn, ddn), pdn, NULL, NULL, ddn - edn, ddn - pdn, 0 FROM o WHERE ddn IS NOT NULL
  UNION ALL
  SELECT seller_id, 'late', 0, 0, greatest(pdn, edn), pdn, NULL, NULL, 0, 0, 0 FROM o WHERE is_late = 1
  UNION ALL
  SELECT seller_id, 'dec', 0, 0, greatest(pdn, CASE WHEN is_late = 1 THEN edn ELSE ddn END), pdn, NULL, NULL, 0, 0, 0
  FROM o WHERE is_late = 1 OR ddn IS NOT NULL
  UNION ALL
  SELECT seller_id, 'ho', 0, 0, greatest(pdn, cdn), pdn, NULL, NULL, handover_late, ldn - cdn, 0 FROM o WHERE cdn IS NOT NULL
  UNION ALL
  SELECT seller_id, 'ovd', 0, 0, greatest(pdn, edn), pdn, NULL, NULL, 1, 0, 0 FROM o WHERE is_late = 1
  UNION ALL
  SELECT seller_id, 'ovd', 0, 0, greatest(pdn, ddn), pdn, NULL, NULL, -1, 0, 0 FROM o WHERE is_late = 1 AND ddn IS NOT NULL
),
-- @include _window_deltas
d AS (
  SELECT
    seller_id,
    day,
    -- @for w in windows
    CAST(sum(CASE WHEN w = {w} AND kind = 'ord' THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS o_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'ord' THEN sgn * (v1) ELSE 0 END) AS DOUBLE) AS it_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'ord' THEN sgn * (v2) ELSE 0 END) AS DOUBLE) AS fr_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'ord' THEN sgn * (v3) ELSE 0 END) AS DOUBLE) AS pr_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'dlv' THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS dl_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'dlv' THEN sgn * (v1) ELSE 0 END) AS DOUBLE) AS dly_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'dlv' THEN sgn * (v2) ELSE 0 END) AS DOUBLE) AS dd_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'late' THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS lt_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'dec' THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS dc_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'ho' THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS ho_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'ho' THEN sgn * (v1) ELSE 0 END) AS DOUBLE) AS hol_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'ho' THEN sgn * (v2) ELSE 0 END) AS DOUBLE) AS hom_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'ovd' THEN sgn * (v1) ELSE 0 END) AS DOUBLE) AS ov_{w},
    -- @end

  FROM x
  GROUP BY seller_id, day
),
c AS (
  SELECT
    seller_id,
    day,
    lead(day) OVER (PARTITION BY seller_id ORDER BY day) AS next_day,
    -- @for w in windows
    sum(o_{w}) OVER cum AS o_{w},
    sum(it_{w}) OVER cum AS it_{w},
    sum(fr_{w}) OVER cum AS fr_{w},
    sum(pr_{w}) OVER cum AS pr_{w},
    sum(dl_{w}) OVER cum AS dl_{w},
    sum(dly_{w}) OVER cum AS dly_{w},
    sum(dd_{w}) OVER cum AS dd_{w},
    sum(lt_{w}) OVER cum AS lt_{w},
    sum(dc_{w}) OVER cum AS dc_{w},
    sum(ho_{w}) OVER cum AS ho_{w},
    sum(hol_{w}) OVER cum AS hol_{w},
    sum(hom_{w}) OVER cum AS hom_{w},
    sum(ov_{w}) OVER cum AS ov_{w},
    -- @end

  FROM d
  WINDOW cum AS (PARTITION BY seller_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
-- @include _explode_to_dt_refs spine=o_{max_w}
SELECT
  c.dt_ref,
  c.seller_id,
  -- @for w in windows
  CAST(c.dl_{w} AS BIGINT) AS n_orders_delivered_{w}d,
  CAST(c.lt_{w} AS BIGINT) AS n_orders_late_{w}d,
  c.lt_{w} / NULLIF(c.dc_{w}, 0) AS pct_orders_late_{w}d,
  c.dly_{w} / NULLIF(c.dl_{w}, 0) AS avg_delivery_delay_days_{w}d,
  c.dd_{w} / NULLIF(c.dl_{w}, 0) AS avg_delivery_days_{w}d,
  c.hol_{w} / NULLIF(c.ho_{w}, 0) AS pct_handover_late_{w}d,
  c.hom_{w} / NULLIF(c.ho_{w}, 0) AS avg_handover_margin_days_{w}d,
  CAST(c.ov_{w} AS BIGINT) AS n_orders_undelivered_past_estimate_{w}d,
  c.ov_{w} / NULLIF(c.o_{w}, 0) AS pct_orders_undelivered_past_estimate_{w}d,
  c.fr_{w} / 100 / NULLIF(c.it_{w}, 0) AS avg_freight_per_item_{w}d,
  c.fr_{w} / NULLIF(c.pr_{w}, 0) AS freight_to_price_{w}d,
  -- @end
FROM r c
