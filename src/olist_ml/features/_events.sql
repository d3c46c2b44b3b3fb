-- Event views shared by every fs_seller_* query (portable DuckDB / Spark SQL).
-- Each fact carries the day number (DAYNUM, days since 1970-01-01) of the moment it became
-- known: an order at its purchase, a delivery at its delivery, a hand-over to the carrier at
-- that hand-over, a review at its answer, "not delivered by the estimated date" at the end of
-- that date. order_status is never read (a snapshot taken at extraction). Because every dt_ref is a midnight,
-- `ts < dt_ref` <=> `DAYNUM(ts) < DAYNUM(dt_ref)`, so all window tests are integer compares.
-- Money is cast to DECIMAL(18,2) so sums are exact and rebuilds are bit-identical.

-- one row per order item
CREATE OR REPLACE TEMPORARY VIEW ev_items AS
SELECT
  i.seller_id,
  i.order_id,
  i.order_item_id,
  i.product_id,
  o.order_purchase_timestamp AS purchase_ts,
  DAYNUM(o.order_purchase_timestamp) AS pdn,
  year(o.order_purchase_timestamp) * 12 + month(o.order_purchase_timestamp) AS pmi,
  CAST(i.price AS DECIMAL(18, 2)) AS price,
  CAST(i.freight_value AS DECIMAL(18, 2)) AS freight,
  i.shipping_limit_date AS shipping_limit_ts,
  COALESCE(p.product_category_name_english, p.product_category_name) AS category,
  p.product_photos_qty AS photos,
  CAST(p.product_weight_g AS DECIMAL(18, 2)) AS weight_g,
  CAST(p.product_length_cm * p.product_height_cm * p.product_width_cm AS DECIMAL(18, 2)) AS volume_cm3
FROM stg_order_items i
JOIN stg_orders o ON o.order_id = i.order_id
LEFT JOIN stg_products p ON p.product_id = i.product_id;

-- one row per (seller, order): the seller's part of the order plus the order's facts
CREATE OR REPLACE TEMPORARY VIEW ev_seller_orders AS
SELECT x.*
FROM (
  SELECT
    so.*,
    -- no order_status: it is the extract's snapshot, not a point-in-time fact
    o.order_delivered_carrier_date AS carrier_ts,
    DAYNUM(o.order_delivered_carrier_date) AS cdn,
    DAYNUM(o.order_delivered_customer_date) AS ddn,
    DAYNUM(o.order_estimated_delivery_date) AS edn,
    DAYNUM(so.shipping_limit_ts) AS ldn,
    c.customer_unique_id,
    c.customer_state,
    CASE
      WHEN c.customer_state IN ('AC', 'AP', 'AM', 'PA', 'RO', 'RR', 'TO') THEN 'n'
      WHEN c.customer_state IN ('AL', 'BA', 'CE', 'MA', 'PB', 'PE', 'PI', 'RN', 'SE') THEN 'ne'
      WHEN c.customer_state IN ('DF', 'GO', 'MT', 'MS') THEN 'co'
      WHEN c.customer_state IN ('ES', 'MG', 'RJ', 'SP') THEN 'se'
      WHEN c.customer_state IN ('PR', 'RS', 'SC') THEN 's'
    END AS customer_region,
    lag(so.pdn) OVER (
      PARTITION BY so.seller_id, c.customer_unique_id ORDER BY so.purchase_ts, so.order_id
    ) AS prev_cust_pdn
  FROM (
    SELECT
      seller_id,
      order_id,
      min(purchase_ts) AS purchase_ts,
      min(pdn) AS pdn,
      count(*) AS n_items,
      sum(price) AS price_sum,
      sum(price * price) AS price_sq_sum,
      min(price) AS price_min,
      max(price) AS price_max,
      sum(freight) AS freight_sum,
      min(shipping_limit_ts) AS shipping_limit_ts
    FROM ev_items
    GROUP BY seller_id, order_id
  ) so
  JOIN stg_orders o ON o.order_id = so.order_id
  LEFT JOIN stg_customers c ON c.customer_id = o.customer_id
) x;

-- one row per (seller, order): payments apportioned by the seller's share of the order's item value
CREATE OR REPLACE TEMPORARY VIEW ev_seller_payments AS
SELECT
  so.seller_id,
  so.order_id,
  so.pdn,
  pay.order_id IS NOT NULL AS has_payment,
  CAST(ROUND(CAST(pay.total AS DOUBLE) * so.share, 2) AS DECIMAL(18, 2)) AS pay_total,
  CAST(ROUND(CAST(pay.credit_card AS DOUBLE) * so.share, 2) AS DECIMAL(18, 2)) AS pay_credit_card,
  CAST(ROUND(CAST(pay.boleto AS DOUBLE) * so.share, 2) AS DECIMAL(18, 2)) AS pay_boleto,
  CAST(ROUND(CAST(pay.voucher AS DOUBLE) * so.share, 2) AS DECIMAL(18, 2)) AS pay_voucher,
  CAST(ROUND(CAST(pay.debit_card AS DOUBLE) * so.share, 2) AS DECIMAL(18, 2)) AS pay_debit_card,
  pay.installments,
  pay.has_voucher
FROM (
  SELECT
    s.seller_id,
    s.order_id,
    s.pdn,
    CAST(s.price_sum AS DOUBLE) / NULLIF(CAST(t.order_price AS DOUBLE), 0) AS share
  FROM ev_seller_orders s
  JOIN (SELECT order_id, sum(price_sum) AS order_price FROM ev_seller_orders GROUP BY order_id) t
    ON t.order_id = s.order_id
) so
LEFT JOIN (
  SELECT
    order_id,
    sum(CAST(payment_value AS DECIMAL(18, 2))) AS total,
    sum(CASE WHEN payment_type = 'credit_card' THEN CAST(payment_value AS DECIMAL(18, 2)) ELSE 0 END) AS credit_card,
    sum(CASE WHEN payment_type = 'boleto' THEN CAST(payment_value AS DECIMAL(18, 2)) ELSE 0 END) AS boleto,
    sum(CASE WHEN payment_type = 'voucher' THEN CAST(payment_value AS DECIMAL(18, 2)) ELSE 0 END) AS voucher,
    sum(CASE WHEN payment_type = 'debit_card' THEN CAST(payment_value AS DECIMAL(18, 2)) ELSE 0 END) AS debit_card,
    max(payment_installments) AS installments,
    max(CASE WHEN payment_type = 'voucher' THEN 1 ELSE 0 END) AS has_voucher
  FROM stg_order_payments
  GROUP BY order_id
) pay ON pay.order_id = so.order_id;
