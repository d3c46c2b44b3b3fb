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
-- Computed with deltas (see fs_seller_sales.sql) and running sums (render.running_sums): a fact
-- known on day k about an order bought on day p counts for the dt_refs in (max(p, k), p + w];
-- a fact that stops holding on day k2 (an overdue order delivered) adds the opposite delta from
-- (max(p, k2), p + w].
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
{% include "_window_deltas.sql" %}
{{ running_sums([
    ("o", "kind = 'ord'", "1"),
    ("it", "kind = 'ord'", "v1"),
    ("fr", "kind = 'ord'", "v2"),
    ("pr", "kind = 'ord'", "v3"),
    ("dl", "kind = 'dlv'", "1"),
    ("dly", "kind = 'dlv'", "v1"),
    ("dd", "kind = 'dlv'", "v2"),
    ("lt", "kind = 'late'", "1"),
    ("dc", "kind = 'dec'", "1"),
    ("ho", "kind = 'ho'", "1"),
    ("hol", "kind = 'ho'", "v1"),
    ("hom", "kind = 'ho'", "v2"),
    ("ov", "kind = 'ovd'", "v1"),
  ], spine="o_" ~ max_w) }}
SELECT
  c.dt_ref,
  c.seller_id,
  {% for w in windows %}
  CAST(c.dl_{{ w }} AS BIGINT) AS n_orders_delivered_{{ w }}d,
  CAST(c.lt_{{ w }} AS BIGINT) AS n_orders_late_{{ w }}d,
  c.lt_{{ w }} / NULLIF(c.dc_{{ w }}, 0) AS pct_orders_late_{{ w }}d,
  c.dly_{{ w }} / NULLIF(c.dl_{{ w }}, 0) AS avg_delivery_delay_days_{{ w }}d,
  c.dd_{{ w }} / NULLIF(c.dl_{{ w }}, 0) AS avg_delivery_days_{{ w }}d,
  c.hol_{{ w }} / NULLIF(c.ho_{{ w }}, 0) AS pct_handover_late_{{ w }}d,
  c.hom_{{ w }} / NULLIF(c.ho_{{ w }}, 0) AS avg_handover_margin_days_{{ w }}d,
  CAST(c.ov_{{ w }} AS BIGINT) AS n_orders_undelivered_past_estimate_{{ w }}d,
  c.ov_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_undelivered_past_estimate_{{ w }}d,
  c.fr_{{ w }} / 100 / NULLIF(c.it_{{ w }}, 0) AS avg_freight_per_item_{{ w }}d,
  c.fr_{{ w }} / NULLIF(c.pr_{{ w }}, 0) AS freight_to_price_{{ w }}d,
  {% endfor %}
FROM r c
