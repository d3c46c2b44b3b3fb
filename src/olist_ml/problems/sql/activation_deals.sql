-- activation_deals: one row per won deal with the facts known at won_date and its label.
-- grain: (mql_id)
-- reads: stg_closed_deals, stg_marketing_qualified_leads, stg_order_items, stg_orders
-- parameter $horizon_days: Settings.activation_horizon_days
--
-- Target `activated` = 1 when the won seller gets a first order (any order holding one of its
-- items, by purchase timestamp) in the half-open window [won_date, won_date + horizon).
-- Observed data end = the last purchase timestamp of an order that has items (a sale event;
-- item-less canceled orders after the last sale are not sales). A deal is labelled only when
-- won_date + horizon <= data end; otherwise `activated` is NULL (the scoring population).
-- Features are the deal/lead attributes fixed at won_date; nothing after won_date is used.
WITH data_end AS (
    SELECT max(o.order_purchase_timestamp) AS ts
    FROM stg_orders o
    WHERE EXISTS (SELECT 1 FROM stg_order_items i WHERE i.order_id = o.order_id)
),
first_sale AS (
    SELECT d.mql_id, min(o.order_purchase_timestamp) AS first_sale_ts
    FROM stg_closed_deals d
    JOIN stg_order_items i ON i.seller_id = d.seller_id
    JOIN stg_orders o ON o.order_id = i.order_id AND o.order_purchase_timestamp >= d.won_date
    GROUP BY d.mql_id
)
SELECT CAST(d.won_date AS DATE) AS dt_ref,
       d.mql_id,
       d.seller_id,
       d.won_date,
       fs.first_sale_ts,
       (SELECT ts FROM data_end) AS data_end_ts,
       -- lead (marketing qualified lead) attributes
       m.origin,
       m.landing_page_id,
       date_diff('day', CAST(m.first_contact_date AS DATE), CAST(d.won_date AS DATE)) AS days_first_contact_to_win,
       -- deal attributes declared at closing
       d.business_segment,
       d.lead_type,
       d.lead_behaviour_profile,
       d.business_type,
       d.declared_product_catalog_size,
       d.declared_monthly_revenue,
       CAST(d.has_company AS VARCHAR) AS has_company,
       CAST(d.has_gtin AS VARCHAR) AS has_gtin,
       d.average_stock,
       d.sdr_id,
       d.sr_id,
       month(d.won_date) AS won_month,
       CASE WHEN d.won_date + to_days(CAST($horizon_days AS INTEGER)) > (SELECT ts FROM data_end) THEN NULL
            WHEN fs.first_sale_ts < d.won_date + to_days(CAST($horizon_days AS INTEGER)) THEN 1
            ELSE 0 END AS activated
FROM stg_closed_deals d
LEFT JOIN stg_marketing_qualified_leads m ON m.mql_id = d.mql_id
LEFT JOIN first_sale fs ON fs.mql_id = d.mql_id
