-- activation_deals: one row per won deal with the facts known at won_date and its label.
-- grain: (mql_id)
-- reads: stg_closed_deals, stg_marketing_qualified_leads, stg_order_items, stg_orders
-- {horizon_days}: Settings.activation.horizon_days (rendered by activation.deals_sql, like the DuckDB/Spark
--   macros of olist_ml.features.render)
-- {observed_end}: olist_ml.warehouse.observed_end(con), the EXCLUSIVE end of the
--   observed data (a DATE: facts before its 00:00 are observed; robust to the real extract's
--   thin tail of stray orders after 2018-08-29, unlike max(order_purchase_timestamp)).
--
-- Target `activated` = 1 when the won seller gets a first order (any order holding one of its
-- items, by purchase timestamp) in the half-open window [won_date, won_date + horizon).
-- A deal is labelled only when its whole horizon is observed: won_date + horizon <= observed_end;
-- otherwise `activated` is NULL (the scoring population).
-- label_known_at (not a feature; NULL where `activated` is NULL): when the label became known: the
-- first sale when it falls in the horizon, else the horizon's end won_date + horizon.
-- Features are the deal/lead attributes fixed at won_date; nothing after won_date is used.
WITH first_sale AS (
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
       DATE '{observed_end}' AS observed_end,
       -- lead (marketing qualified lead) attributes
       m.origin,
       m.landing_page_id,
       DATEDIFF_DAYS(m.first_contact_date, d.won_date) AS days_first_contact_to_win,
       -- deal attributes declared at closing
       d.business_segment,
       d.lead_type,
       d.lead_behaviour_profile,
       d.business_type,
       d.declared_product_catalog_size,
       d.declared_monthly_revenue,
       CAST(d.has_company AS STRING) AS has_company,
       CAST(d.has_gtin AS STRING) AS has_gtin,
       d.average_stock,
       d.sdr_id,
       d.sr_id,
       month(d.won_date) AS won_month,
       CAST(CASE WHEN d.won_date + INTERVAL {horizon_days} DAY > DATE '{observed_end}' THEN NULL
            WHEN fs.first_sale_ts < d.won_date + INTERVAL {horizon_days} DAY THEN fs.first_sale_ts
            ELSE d.won_date + INTERVAL {horizon_days} DAY END AS TIMESTAMP) AS label_known_at,
       CASE WHEN d.won_date + INTERVAL {horizon_days} DAY > DATE '{observed_end}' THEN NULL
            WHEN fs.first_sale_ts < d.won_date + INTERVAL {horizon_days} DAY THEN 1
            ELSE 0 END AS activated
FROM stg_closed_deals d
LEFT JOIN stg_marketing_qualified_leads m ON m.mql_id = d.mql_id
LEFT JOIN first_sale fs ON fs.mql_id = d.mql_id
