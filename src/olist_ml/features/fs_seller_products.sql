-- grain: (dt_ref, seller_id)
-- fs_seller_products: what the seller sells (items at their order's purchase time) and at what
-- price level. Windows [dt_ref - w days, dt_ref). Category = English name, else the Portuguese
-- one; items without a category are left out of category counts and price level.
-- Price level: each item's price divided by its category's reference price, averaged. The
-- reference is the median item price of the category over the 6 calendar months before the
-- item's purchase month, so it is known when the item is sold. Rows: fs_spine.
-- Computed with deltas (see fs_seller_sales.sql): a fact known on day k about an order bought on
-- day p counts for the dt_refs in (max(p, k), p + w]; a distinct key (customer, state, product,
-- category) counts while any of its days lies in the window (islands of days closer than w).
WITH ref AS (
  SELECT m.category, m.pmi, median(CAST(i.price AS DOUBLE)) AS cat_median
  FROM (
    -- only the purchase months of items that can be in a window of the requested dt_refs
    SELECT DISTINCT category, pmi FROM ev_items
    WHERE category IS NOT NULL AND pmi >= (SELECT min(mi) FROM fs_dates) - {max_w} / 28 - 2
  ) m
  JOIN ev_items i ON i.category = m.category AND i.pmi >= m.pmi - 6 AND i.pmi < m.pmi
  WHERE i.pmi >= (SELECT min(mi) FROM fs_dates) - {max_w} / 28 - 8
  GROUP BY m.category, m.pmi
),
f AS (
  -- itm: an item sold; prd/cat: distinct product / category days (islands)
  SELECT i.seller_id, 'itm' AS kind, 0 AS isl, 0 AS life, i.pdn AS s, i.pdn AS e, CAST(NULL AS INTEGER) AS prv, CAST(NULL AS INTEGER) AS nxt,
    i.photos AS ph,
    CAST(i.weight_g * 100 AS DOUBLE) AS wg,
    CAST(i.volume_cm3 * 100 AS DOUBLE) AS vl,
    ROUND(CAST(i.price AS DOUBLE) / NULLIF(r.cat_median, 0) * 1000000) AS rp
  FROM ev_items i
  LEFT JOIN ref r ON r.category = i.category AND r.pmi = i.pmi
  UNION ALL
  SELECT seller_id, 'prd', 1, 0, pdn, pdn,
    lag(pdn) OVER (PARTITION BY seller_id, product_id ORDER BY pdn),
    lead(pdn) OVER (PARTITION BY seller_id, product_id ORDER BY pdn), NULL, NULL, NULL, NULL
  FROM (
    SELECT k0.*, max(pdn) OVER (PARTITION BY seller_id, product_id) AS last_pdn
    FROM (SELECT DISTINCT seller_id, product_id, pdn FROM ev_items) k0
  ) k
  WHERE k.last_pdn + {max_w} >= (SELECT min(dn) FROM fs_dates) - 1
  UNION ALL
  SELECT seller_id, 'cat', 1, 0, pdn, pdn,
    lag(pdn) OVER (PARTITION BY seller_id, category ORDER BY pdn),
    lead(pdn) OVER (PARTITION BY seller_id, category ORDER BY pdn), NULL, NULL, NULL, NULL
  FROM (
    SELECT k0.*, max(pdn) OVER (PARTITION BY seller_id, category) AS last_pdn
    FROM (SELECT DISTINCT seller_id, category, pdn FROM ev_items WHERE category IS NOT NULL) k0
  ) k
  WHERE k.last_pdn + {max_w} >= (SELECT min(dn) FROM fs_dates) - 1
),
-- @include _window_deltas
d AS (
  SELECT
    seller_id,
    day,
    -- @for w in windows
    CAST(sum(CASE WHEN w = {w} AND kind = 'prd' THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS np_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'cat' THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS nc_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'itm' AND ph IS NOT NULL THEN sgn * (ph) ELSE 0 END) AS DOUBLE) AS ph_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'itm' AND ph IS NOT NULL THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS nph_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'itm' AND wg IS NOT NULL THEN sgn * (wg) ELSE 0 END) AS DOUBLE) AS wg_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'itm' AND wg IS NOT NULL THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS nwg_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'itm' AND vl IS NOT NULL THEN sgn * (vl) ELSE 0 END) AS DOUBLE) AS vl_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'itm' AND vl IS NOT NULL THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS nvl_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'itm' AND rp IS NOT NULL THEN sgn * (rp) ELSE 0 END) AS DOUBLE) AS rp_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'itm' AND rp IS NOT NULL THEN sgn * (1) ELSE 0 END) AS DOUBLE) AS nrp_{w},
    -- @end
    -- spine: items in the longest window
    sum(CASE WHEN w = {max_w} AND kind = 'itm' THEN sgn ELSE 0 END) AS n_act,

  FROM x
  GROUP BY seller_id, day
),
c AS (
  SELECT
    seller_id,
    day,
    lead(day) OVER (PARTITION BY seller_id ORDER BY day) AS next_day,
    -- @for w in windows
    sum(np_{w}) OVER cum AS np_{w},
    sum(nc_{w}) OVER cum AS nc_{w},
    sum(ph_{w}) OVER cum AS ph_{w},
    sum(nph_{w}) OVER cum AS nph_{w},
    sum(wg_{w}) OVER cum AS wg_{w},
    sum(nwg_{w}) OVER cum AS nwg_{w},
    sum(vl_{w}) OVER cum AS vl_{w},
    sum(nvl_{w}) OVER cum AS nvl_{w},
    sum(rp_{w}) OVER cum AS rp_{w},
    sum(nrp_{w}) OVER cum AS nrp_{w},
    -- @end
    sum(n_act) OVER cum AS n_act,

  FROM d
  WINDOW cum AS (PARTITION BY seller_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
-- @include _explode_to_dt_refs spine=n_act
SELECT
  c.dt_ref,
  c.seller_id,
  -- @for w in windows
  CAST(c.np_{w} AS BIGINT) AS n_products_{w}d,
  CAST(c.nc_{w} AS BIGINT) AS n_categories_{w}d,
  c.ph_{w} / NULLIF(c.nph_{w}, 0) AS avg_photos_{w}d,
  c.wg_{w} / 100 / NULLIF(c.nwg_{w}, 0) AS avg_weight_g_{w}d,
  c.vl_{w} / 100 / NULLIF(c.nvl_{w}, 0) AS avg_volume_cm3_{w}d,
  c.rp_{w} / 1000000 / NULLIF(c.nrp_{w}, 0) AS price_vs_category_median_{w}d,
  -- @end
FROM r c
