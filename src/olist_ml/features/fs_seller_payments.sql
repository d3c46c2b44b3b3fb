-- grain: (dt_ref, seller_id)
-- fs_seller_payments: how the seller's customers pay. Each order's payments are apportioned
-- to the seller by the seller's share of the order's item value (rounded to cents).
-- Facts: payments at the order's purchase time; windows [dt_ref - w days, dt_ref).
-- Orders without payment rows count in no payment share.
-- Computed with deltas (see fs_seller_sales.sql) and running sums (render.running_sums): a fact
-- known on day k about an order bought on day p counts for the dt_refs in (max(p, k), p + w].
-- Rows: sellers with an order in the longest window (n_act).
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
{% include "_window_deltas.sql" %}
{{ running_sums([
    ("o", "1 = 1", "paid"),
    ("v", "1 = 1", "v"),
    ("cc", "1 = 1", "cc"),
    ("bo", "1 = 1", "bo"),
    ("vo", "1 = 1", "vo"),
    ("dc", "1 = 1", "dc"),
    ("inst", "1 = 1", "inst"),
    ("oi", "1 = 1", "multi"),
    ("ov", "1 = 1", "hv"),
  ], longest=[("n_act", "1 = 1", "1")], spine="n_act") }}
SELECT
  c.dt_ref,
  c.seller_id,
  {% for w in windows %}
  c.v_{{ w }} / 100 AS payment_value_{{ w }}d,
  c.cc_{{ w }} / NULLIF(c.v_{{ w }}, 0) AS pct_value_credit_card_{{ w }}d,
  c.bo_{{ w }} / NULLIF(c.v_{{ w }}, 0) AS pct_value_boleto_{{ w }}d,
  c.vo_{{ w }} / NULLIF(c.v_{{ w }}, 0) AS pct_value_voucher_{{ w }}d,
  c.dc_{{ w }} / NULLIF(c.v_{{ w }}, 0) AS pct_value_debit_card_{{ w }}d,
  c.inst_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS avg_installments_{{ w }}d,
  c.oi_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_installments_{{ w }}d,
  c.ov_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_voucher_{{ w }}d,
  {% endfor %}
FROM r c
