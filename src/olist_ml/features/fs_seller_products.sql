-- grain: (dt_ref, seller_id)
-- fs_seller_products: what the seller sells (items at their order's purchase time) and at what
-- price level. Windows [dt_ref - w days, dt_ref). Category = English name, else the Portuguese
-- one; items without a category are left out of category counts and price level.
-- Price level: each item's price divided by its category's reference price, averaged. The
-- reference is the median item price of the category over the 6 calendar months before the
-- item's purchase month, so it is known when the item is sold. Rows: fs_spine.
-- Computed with deltas (see fs_seller_sales.sql) and running sums (render.running_sums): a fact
-- known on day k about an order bought on day p counts for the dt_refs in (max(p, k), p + w];
-- a distinct key (customer, state, product, category) counts while any of its days lies in the
-- window (islands of days closer than w).
WITH ref AS (
  SELECT m.category, m.pmi, median(CAST(i.price AS DOUBLE)) AS cat_median
  FROM (
    -- only the purchase months of items that can be in a window of the requested dt_refs
    SELECT DISTINCT category, pmi FROM ev_items
    WHERE category IS NOT NULL AND pmi >= (SELECT min(mi) FROM fs_dates) - {{ max_w }} / 28 - 2
  ) m
  JOIN ev_items i ON i.category = m.category AND i.pmi >= m.pmi - 6 AND i.pmi < m.pmi
  WHERE i.pmi >= (SELECT min(mi) FROM fs_dates) - {{ max_w }} / 28 - 8
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
  WHERE k.last_pdn + {{ max_w }} >= (SELECT min(dn) FROM fs_dates) - 1
  UNION ALL
  SELECT seller_id, 'cat', 1, 0, pdn, pdn,
    lag(pdn) OVER (PARTITION BY seller_id, category ORDER BY pdn),
    lead(pdn) OVER (PARTITION BY seller_id, category ORDER BY pdn), NULL, NULL, NULL, NULL
  FROM (
    SELECT k0.*, max(pdn) OVER (PARTITION BY seller_id, category) AS last_pdn
    FROM (SELECT DISTINCT seller_id, category, pdn FROM ev_items WHERE category IS NOT NULL) k0
  ) k
  WHERE k.last_pdn + {{ max_w }} >= (SELECT min(dn) FROM fs_dates) - 1
),
{% include "_window_deltas.sql" %}
{{ running_sums([
    ("np", "kind = 'prd'", "1"),
    ("nc", "kind = 'cat'", "1"),
    ("ph", "kind = 'itm' AND ph IS NOT NULL", "ph"),
    ("nph", "kind = 'itm' AND ph IS NOT NULL", "1"),
    ("wg", "kind = 'itm' AND wg IS NOT NULL", "wg"),
    ("nwg", "kind = 'itm' AND wg IS NOT NULL", "1"),
    ("vl", "kind = 'itm' AND vl IS NOT NULL", "vl"),
    ("nvl", "kind = 'itm' AND vl IS NOT NULL", "1"),
    ("rp", "kind = 'itm' AND rp IS NOT NULL", "rp"),
    ("nrp", "kind = 'itm' AND rp IS NOT NULL", "1"),
  ], longest=[("n_act", "kind = 'itm'", "1")], spine="n_act") }}
SELECT
  c.dt_ref,
  c.seller_id,
  {% for w in windows %}
  CAST(c.np_{{ w }} AS BIGINT) AS n_products_{{ w }}d,
  CAST(c.nc_{{ w }} AS BIGINT) AS n_categories_{{ w }}d,
  c.ph_{{ w }} / NULLIF(c.nph_{{ w }}, 0) AS avg_photos_{{ w }}d,
  c.wg_{{ w }} / 100 / NULLIF(c.nwg_{{ w }}, 0) AS avg_weight_g_{{ w }}d,
  c.vl_{{ w }} / 100 / NULLIF(c.nvl_{{ w }}, 0) AS avg_volume_cm3_{{ w }}d,
  c.rp_{{ w }} / 1000000 / NULLIF(c.nrp_{{ w }}, 0) AS price_vs_category_median_{{ w }}d,
  {% endfor %}
FROM r c
