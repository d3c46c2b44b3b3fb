-- grain: (dt_ref, seller_id)
-- fs_seller_customers: who buys from the seller (customer_unique_id), loyalty and geography.
-- Facts: orders at their purchase time; windows [dt_ref - w days, dt_ref).
-- A repeat-customer order is one whose customer had bought from the seller before (any time).
-- Regions: n (North), ne (Northeast), co (Center-West), se (Southeast), s (South) of the
-- customer's state; shares are of the seller's orders in the window.
-- Computed with deltas (see fs_seller_sales.sql) and running sums (render.running_sums): a fact
-- known on day k about an order bought on day p counts for the dt_refs in (max(p, k), p + w];
-- a distinct key (customer, state, product, category) counts while any of its days lies in the
-- window (islands of days closer than w).
WITH f AS (
  -- ord: an order of the cohort; cus/st: distinct customer / state days (islands); new: first order of a customer
  SELECT seller_id, 'ord' AS kind, 0 AS isl, 0 AS life, pdn AS s, pdn AS e, CAST(NULL AS INTEGER) AS prv, CAST(NULL AS INTEGER) AS nxt,
    customer_region AS region, CASE WHEN prev_cust_pdn IS NULL THEN 0 ELSE 1 END AS rep
  FROM ev_seller_orders
  UNION ALL
  SELECT seller_id, 'new', 0, 1, pdn, pdn, NULL, NULL, NULL, 0 FROM ev_seller_orders WHERE prev_cust_pdn IS NULL
  UNION ALL
  SELECT seller_id, 'cus', 1, 0, pdn, pdn,
    lag(pdn) OVER (PARTITION BY seller_id, customer_unique_id ORDER BY pdn),
    lead(pdn) OVER (PARTITION BY seller_id, customer_unique_id ORDER BY pdn), NULL, 0
  FROM (
    SELECT k0.*, max(pdn) OVER (PARTITION BY seller_id, customer_unique_id) AS last_pdn
    FROM (SELECT DISTINCT seller_id, customer_unique_id, pdn FROM ev_seller_orders WHERE customer_unique_id IS NOT NULL) k0
  ) k
  WHERE k.last_pdn + {{ max_w }} >= (SELECT min(dn) FROM fs_dates) - 1
  UNION ALL
  SELECT seller_id, 'st', 1, 0, pdn, pdn,
    lag(pdn) OVER (PARTITION BY seller_id, customer_state ORDER BY pdn),
    lead(pdn) OVER (PARTITION BY seller_id, customer_state ORDER BY pdn), NULL, 0
  FROM (
    SELECT k0.*, max(pdn) OVER (PARTITION BY seller_id, customer_state) AS last_pdn
    FROM (SELECT DISTINCT seller_id, customer_state, pdn FROM ev_seller_orders WHERE customer_state IS NOT NULL) k0
  ) k
  WHERE k.last_pdn + {{ max_w }} >= (SELECT min(dn) FROM fs_dates) - 1
),
{% include "_window_deltas.sql" %}
{{ running_sums([
    ("o", "kind = 'ord'", "1"),
    ("rp", "kind = 'ord'", "rep"),
    ("c", "kind = 'cus'", "1"),
    ("st", "kind = 'st'", "1"),
    ("rn", "kind = 'ord' AND region = 'n'", "1"),
    ("rne", "kind = 'ord' AND region = 'ne'", "1"),
    ("rco", "kind = 'ord' AND region = 'co'", "1"),
    ("rse", "kind = 'ord' AND region = 'se'", "1"),
    ("rs", "kind = 'ord' AND region = 's'", "1"),
  ], lifetime=[("lt_c", "life = 1 AND kind = 'new'", "1")], spine="o_" ~ max_w) }}
SELECT
  c.dt_ref,
  c.seller_id,
  {% for w in windows %}
  CAST(c.c_{{ w }} AS BIGINT) AS n_customers_{{ w }}d,
  c.rp_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_repeat_customer_{{ w }}d,
  CAST(c.st_{{ w }} AS BIGINT) AS n_customer_states_{{ w }}d,
  c.rn_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_region_n_{{ w }}d,
  c.rne_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_region_ne_{{ w }}d,
  c.rco_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_region_co_{{ w }}d,
  c.rse_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_region_se_{{ w }}d,
  c.rs_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_region_s_{{ w }}d,
  {% endfor %}
  CAST(c.lt_c AS BIGINT) AS n_customers_lifetime
FROM r c
