-- grain: (dt_ref, seller_id)
-- fs_seller_sales: volume, value, prices, regularity, recency, tenure and trend of a seller's sales.
-- Facts: the seller's orders at their purchase time, any status. Windows: [dt_ref - w days, dt_ref).
-- Rows: fs_spine (the seller has an order in [dt_ref - {{ max_w }}d, dt_ref)).
--
-- Set-based over all dt_refs at once: a fact that counts in a window for the dt_refs a..b emits
-- +x on day a and -x on day b+1 (a delta); the running sum of a seller's deltas up to and
-- including day DAYNUM(dt_ref) is the window aggregate at that dt_ref. Sums are exact
-- (DECIMAL / integers), so the result does not depend on evaluation order.
--   win : sale day p counts for dt_ref in (p, p+w]
--   gap : the gap between consecutive sale days q<p lies in the window for dt_ref in (p, q+w]
--   prev: sale day p is in the previous window [dt_ref-2w, dt_ref-w) for dt_ref in (p+w, p+2w]
--   life: sale day p counts for every dt_ref > p
-- Deltas dated before the first requested dt_ref are folded onto the day before it (same running
-- sums from there on), so an incremental run over a few dt_refs stays small.
WITH sd AS (
  SELECT
    seller_id,
    pdn,
    -- DOUBLEs holding integers (counts, cents, cents^2): exact sums, in any order
    CAST(count(*) AS DOUBLE) AS n_orders,
    CAST(sum(n_items) AS DOUBLE) AS n_items,
    CAST(sum(price_sum) * 100 AS DOUBLE) AS gmv,
    CAST(sum(price_sq_sum) * 10000 AS DOUBLE) AS price_sq
  FROM ev_seller_orders
  GROUP BY seller_id, pdn
),
iv AS (
  SELECT
    e.*,
    wn.w,
    kd.kind,
    CASE WHEN kd.kind = 'prev' THEN e.pdn + wn.w + 1 ELSE e.pdn + 1 END AS a,
    CASE
      WHEN kd.kind = 'win' THEN e.pdn + wn.w
      WHEN kd.kind = 'gap' THEN e.prev_pdn + wn.w
      WHEN kd.kind = 'prev' THEN e.pdn + 2 * wn.w
      ELSE 2000000000
    END AS b
  FROM (SELECT sd.*, lag(pdn) OVER (PARTITION BY seller_id ORDER BY pdn) AS prev_pdn FROM sd) e
  CROSS JOIN {{ windows_table }}
  CROSS JOIN (VALUES ('win'), ('gap'), ('prev'), ('life')) AS kd(kind)
  WHERE (kd.kind <> 'prev' OR 2 * wn.w <= {{ max_w }})
    AND (kd.kind <> 'life' OR wn.w = {{ max_w }})
    AND (kd.kind <> 'gap' OR e.prev_pdn IS NOT NULL)
),
x AS (
  SELECT iv.*, sg.sgn, greatest(CASE WHEN sg.sgn = 1 THEN iv.a ELSE iv.b + 1 END, (SELECT min(dn) FROM fs_dates) - 1) AS day
  FROM iv
  CROSS JOIN (VALUES (CAST(1 AS DOUBLE)), (CAST(-1 AS DOUBLE))) AS sg(sgn)
  WHERE iv.a <= iv.b
    AND iv.b >= (SELECT min(dn) FROM fs_dates)
    AND iv.a <= (SELECT max(dn) FROM fs_dates)
    AND (sg.sgn = 1 OR iv.kind <> 'life')
    AND (sg.sgn = 1 OR iv.b + 1 <= (SELECT max(dn) FROM fs_dates))
),
{{ running_sums([
    ("o", "kind = 'win'", "n_orders"),
    ("i", "kind = 'win'", "n_items"),
    ("d", "kind = 'win'", "1"),
    ("g", "kind = 'win'", "gmv"),
    ("q", "kind = 'win'", "price_sq"),
    ("sg", "kind = 'gap'", "pdn - prev_pdn"),
  ], per_trend=[
    ("po", "kind = 'prev'", "n_orders"),
    ("pg", "kind = 'prev'", "gmv"),
  ], lifetime=[
    ("lt_o", "kind = 'life'", "n_orders"),
    ("lt_i", "kind = 'life'", "n_items"),
    ("lt_g", "kind = 'life'", "gmv"),
    ("lt_d", "kind = 'life'", "1"),
    ("last_p", "kind = 'life'", "pdn", "max"),
    ("first_p", "kind = 'life'", "pdn", "min"),
  ], spine="o_" ~ max_w) }}
SELECT
  dt_ref,
  seller_id,
  {% for w in windows %}
  CAST(o_{{ w }} AS BIGINT) AS n_orders_{{ w }}d,
  CAST(i_{{ w }} AS BIGINT) AS n_items_{{ w }}d,
  CAST(d_{{ w }} AS BIGINT) AS n_sale_days_{{ w }}d,
  g_{{ w }} / 100 AS gmv_{{ w }}d,
  g_{{ w }} / 100 / NULLIF(o_{{ w }}, 0) AS avg_ticket_{{ w }}d,
  g_{{ w }} / 100 / NULLIF(i_{{ w }}, 0) AS avg_item_price_{{ w }}d,
  CASE WHEN i_{{ w }} > 1 THEN sqrt(greatest(
    (i_{{ w }} * q_{{ w }} - g_{{ w }} * g_{{ w }}) / (i_{{ w }} * (i_{{ w }} - 1)), 0.0)) / 100 END AS std_item_price_{{ w }}d,
  i_{{ w }} / NULLIF(o_{{ w }}, 0) AS items_per_order_{{ w }}d,
  -- consecutive sale days inside the window: n_sale_days - 1
  CASE WHEN d_{{ w }} > 1 THEN sg_{{ w }} / (d_{{ w }} - 1) END AS avg_days_between_sales_{{ w }}d,
  {% endfor %}
  {% for w in trend_windows %}
  (o_{{ w }} - po_{{ w }}) / NULLIF(o_{{ w }} + po_{{ w }}, 0) AS orders_trend_{{ w }}d,
  (g_{{ w }} - pg_{{ w }}) / NULLIF(g_{{ w }} + pg_{{ w }}, 0) AS gmv_trend_{{ w }}d,
  {% endfor %}
  CAST(lt_o AS BIGINT) AS n_orders_lifetime,
  CAST(lt_i AS BIGINT) AS n_items_lifetime,
  lt_g / 100 AS gmv_lifetime,
  CAST(lt_d AS BIGINT) AS n_sale_days_lifetime,
  CAST(last_p - first_p AS DOUBLE) / NULLIF(lt_d - 1, 0) AS avg_days_between_sales_lifetime,
  CAST(dd - last_p AS BIGINT) AS days_since_last_sale,
  CAST(dd - first_p AS BIGINT) AS days_since_first_sale
FROM r
