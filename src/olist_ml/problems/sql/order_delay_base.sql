-- order_delay_base: one row per order with items (any status): the order's own facts (known at approval)
-- and its timestamps (approval, carrier hand-over, delivery: each a fact from the time it happened).
-- grain: (order_id)
-- reads: stg_orders, stg_order_items, stg_products, stg_customers, stg_sellers, stg_order_payments,
--        geo_zip_coordinates (olist_ml.geo.build_zip_coordinates)
--
-- The order-level half of order_delay_orders.sql (its `base`): the orders whose features are
-- computed and, at the same time, the history its context features aggregate.
-- Main seller: the seller with the largest item value in the order (ties: more items, then
-- seller_id), so a multi-seller order (~1%) takes its dominant seller's route and history.
-- Main product category: the category of the most expensive item (ties: lowest order_item_id).
WITH items AS (
    SELECT i.order_id, i.order_item_id, i.seller_id, i.product_id, i.price, i.freight_value,
           i.shipping_limit_date,
           coalesce(p.product_category_name_english, p.product_category_name, 'unknown') AS category,
           p.product_weight_g,
           p.product_length_cm * p.product_height_cm * p.product_width_cm AS volume_cm3
    FROM stg_order_items i
    LEFT JOIN stg_products p ON p.product_id = i.product_id
),
order_items AS (
    SELECT order_id,
           sum(price) AS order_value,
           sum(freight_value) AS freight_value,
           count(*) AS n_items,
           count(DISTINCT product_id) AS n_products,
           count(DISTINCT seller_id) AS n_sellers,
           sum(product_weight_g) AS total_weight_g,
           max(product_weight_g) AS max_item_weight_g,
           sum(volume_cm3) AS total_volume_cm3,
           max(shipping_limit_date) AS shipping_limit_date
    FROM items
    GROUP BY order_id
),
main_seller AS (
    SELECT order_id, seller_id
    FROM (SELECT order_id, seller_id, sum(price) AS v, count(*) AS n FROM items GROUP BY order_id, seller_id) s
    QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY v DESC, n DESC, seller_id) = 1
),
main_item AS (
    SELECT order_id, category
    FROM items
    QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY price DESC, order_item_id) = 1
),
payments AS (
    SELECT order_id,
           ARG_MAX(payment_type, payment_value) AS payment_type,
           max(payment_installments) AS payment_installments,
           count(*) AS n_payments
    FROM stg_order_payments
    GROUP BY order_id
)
SELECT o.order_id, o.customer_id, o.order_status,
       ms.seller_id,
       o.order_purchase_timestamp AS purchase_ts,
       CAST(o.order_purchase_timestamp AS DATE) AS purchase_date,
       o.order_approved_at AS approved_at,
       o.order_delivered_carrier_date AS carrier_at,
       o.order_delivered_customer_date AS delivered_at,
       o.order_estimated_delivery_date AS estimated_at,
       upper(trim(c.customer_state)) AS customer_state,
       upper(trim(s.seller_state)) AS seller_state,
       gc.lat AS customer_lat, gc.lng AS customer_lng, gc.geo_level AS customer_geo_level,
       gs.lat AS seller_lat, gs.lng AS seller_lng, gs.geo_level AS seller_geo_level,
       STAR_EXCLUDE(oi, order_id),
       mi.category AS product_category,
       p.payment_type, p.payment_installments, p.n_payments
FROM stg_orders o
JOIN order_items oi ON oi.order_id = o.order_id
JOIN main_seller ms ON ms.order_id = o.order_id
JOIN main_item mi ON mi.order_id = o.order_id
LEFT JOIN payments p ON p.order_id = o.order_id
LEFT JOIN stg_customers c ON c.customer_id = o.customer_id
LEFT JOIN stg_sellers s ON s.seller_id = ms.seller_id
LEFT JOIN geo_zip_coordinates gc
       ON gc.zip_code_prefix = lpad(trim(CAST(c.customer_zip_code_prefix AS STRING)), 5, '0')
      AND gc.state = upper(trim(c.customer_state))
LEFT JOIN geo_zip_coordinates gs
       ON gs.zip_code_prefix = lpad(trim(CAST(s.seller_zip_code_prefix AS STRING)), 5, '0')
      AND gs.state = upper(trim(s.seller_state))
