-- grain: (dt_ref, seller_id)
-- fs_seller_payments: how the seller's customers pay. Each order's payments are apportioned
-- to the seller by the seller's share of the order's item value (rounded to cents).
-- Facts: payments at the order's purchase time; windows [dt_ref - w days, dt_ref).
-- Orders without payment rows count in no payment share.
-- Computed with deltas (see fs_seller_sales.sql): a fact known on day k about an order bought on
-- day p counts for the dt_refs in (max(p, k), p + w]
WITH f AS (
  SELECT seller_id, 'ord' AS kind, 0 AS isl, 0 AS life, pdn AS s, pdn AS e, CAST(NULL AS INTEGER) AS prv, CAST(NULL AS INTEGER) AS nxt,
    CASE WHEN has_payment THEN 1 ELSE 0 END AS paid,
    COALESCE(CAST(pay_total * 100 AS DOUBLE), 0) AS v,
    COALESCE(CAST(pay_credit_card * 100 AS DOUBLE), 0) AS cc,
    COALESCE(CAST(pay_boleto * 100 AS DOUBLE), 0) AS bo,
    COALESCE(CAST(pay_voucher * 100 AS DOUBLE), 0) AS vo,
    COALESCE(CAST(pay_debit_card * 100 AS DOUBLE), 0) AS dc,
    COALESCE(installments, 0) AS inst,
    CASE WHEN installments > 1 THEN 1 ELSE 0 END AS multi,
    COALESCE(has_voucher, 0) AS hv
  FROM ev_seller_payments
),
-- @include _window_deltas
d AS (
  SELECT
    seller_id,
    day,
    -- @for w in windows
    CAST(sum(CASE WHEN w = {w} AND 1 = 1 THEN sgn * (paid) ELSE 0 END) AS DOUBLE) AS o_{w},
    CAST(sum(CASE WHEN w = {w} AND 1 = 1 THEN sgn * (v) ELSE 0 END) AS DOUBLE) AS v_{w},
    CAST(sum(CASE WHEN w = {w} AND 1 = 1 THEN sgn * (cc) ELSE 0 END) AS DOUBLE) AS cc_{w},
    CAST(sum(CASE WHEN w = {w} AND 1 = 1 THEN sgn * (bo) ELSE 0 END) AS DOUBLE) AS bo_{w},
    CAST(sum(CASE WHEN w = {w} AND 1 = 1 THEN sgn * (vo) ELSE 0 END) AS DOUBLE) AS vo_{w},
    CAST(sum(CASE WHEN w = {w} AND 1 = 1 THEN sgn * (dc) ELSE 0 END) AS DOUBLE) AS dc_{w},
    CAST(sum(CASE WHEN w = {w} AND 1 = 1 THEN sgn * (inst) ELSE 0 END) AS DOUBLE) AS inst_{w},
    CAST(sum(CASE WHEN w = {w} AND 1 = 1 THEN sgn * (multi) ELSE 0 END) AS DOUBLE) AS oi_{w},
    CAST(sum(CASE WHEN w = {w} AND 1 = 1 THEN sgn * (hv) ELSE 0 END) AS DOUBLE) AS ov_{w},
    -- @end
    -- spine: orders in the longest window
    sum(CASE WHEN w = {max_w} AND 1 = 1 THEN sgn ELSE 0 END) AS n_act,

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
    sum(v_{w}) OVER cum AS v_{w},
    sum(cc_{w}) OVER cum AS cc_{w},
    sum(bo_{w}) OVER cum AS bo_{w},
    sum(vo_{w}) OVER cum AS vo_{w},
    sum(dc_{w}) OVER cum AS dc_{w},
    sum(inst_{w}) OVER cum AS inst_{w},
    sum(oi_{w}) OVER cum AS oi_{w},
    sum(ov_{w}) OVER cum AS ov_{w},
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
  c.v_{w} / 100 AS payment_value_{w}d,
  c.cc_{w} / NULLIF(c.v_{w}, 0) AS pct_value_credit_card_{w}d,
  c.bo_{w} / NULLIF(c.v_{w}, 0) AS pct_value_boleto_{w}d,
  c.vo_{w} / NULLIF(c.v_{w}, 0) AS pct_value_voucher_{w}d,
  c.dc_{w} / NULLIF(c.v_{w}, 0) AS pct_value_debit_card_{w}d,
  c.inst_{w} / NULLIF(c.o_{w}, 0) AS avg_installments_{w}d,
  c.oi_{w} / NULLIF(c.o_{w}, 0) AS pct_orders_installments_{w}d,
  c.ov_{w} / NULLIF(c.o_{w}, 0) AS pct_orders_voucher_{w}d,
  -- @end
FROM r c
