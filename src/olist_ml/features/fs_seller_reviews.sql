-- grain: (dt_ref, seller_id)
-- fs_seller_reviews: what customers said about the seller's recent orders.
-- Cohort: the seller's orders purchased in [dt_ref - w days, dt_ref). A review's score and comment
-- are known at its ANSWER time: review_answer_timestamp < dt_ref (a review without an answer
-- timestamp is never known). review_creation_date is only when the survey was sent (75 % of the
-- real reviews are answered on a later day: median 1, p90 4, max 518 days), so dating a review by
-- it would use scores before they exist. A review on a multi-seller order counts for every seller
-- of the order. Rows: fs_spine.
-- Computed with deltas (see fs_seller_sales.sql): a fact known on day k about an order bought on
-- day p counts for the dt_refs in (max(p, k), p + w].
WITH rv AS (
  SELECT
    so.seller_id,
    so.order_id,
    so.pdn,
    r.review_score AS score,
    DAYNUM(r.review_answer_timestamp) AS rdn,
    CASE WHEN r.review_comment_message IS NOT NULL AND trim(r.review_comment_message) <> '' THEN 1 ELSE 0 END AS has_comment
  FROM ev_seller_orders so
  JOIN stg_order_reviews r ON r.order_id = so.order_id
  WHERE r.review_answer_timestamp IS NOT NULL
),
f AS (
  -- kind ord: an order of the cohort; rvo: an order with a known (answered) review; rev: an answered review
  SELECT seller_id, 'ord' AS kind, pdn AS s, pdn AS e, 0 AS score, 0 AS comment FROM ev_seller_orders
  UNION ALL
  SELECT seller_id, 'rvo', greatest(pdn, min(rdn)), pdn, 0, 0 FROM rv GROUP BY seller_id, order_id, pdn
  UNION ALL
  SELECT seller_id, 'rev', greatest(pdn, rdn), pdn, score, has_comment FROM rv
),
x AS (
  SELECT f.*, wn.w, sg.sgn, greatest(CASE WHEN sg.sgn = 1 THEN f.s + 1 ELSE f.e + wn.w + 1 END, (SELECT min(dn) FROM fs_dates) - 1) AS day
  FROM f
  CROSS JOIN {windows}
  CROSS JOIN (VALUES (CAST(1 AS DOUBLE)), (CAST(-1 AS DOUBLE))) AS sg(sgn)
  WHERE f.e + {max_w} >= (SELECT min(dn) FROM fs_dates)  -- (w-free: pruned before the cross join)
    AND f.s + 1 <= f.e + wn.w
    AND f.e + wn.w >= (SELECT min(dn) FROM fs_dates)
    AND f.s + 1 <= (SELECT max(dn) FROM fs_dates)
    AND (sg.sgn = 1 OR f.e + wn.w + 1 <= (SELECT max(dn) FROM fs_dates))
),
d AS (
  SELECT
    seller_id,
    day,
    -- @for w in windows
    CAST(sum(CASE WHEN w = {w} AND kind = 'ord' THEN sgn ELSE 0 END) AS DOUBLE) AS o_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'rvo' THEN sgn ELSE 0 END) AS DOUBLE) AS ro_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'rev' THEN sgn ELSE 0 END) AS DOUBLE) AS n_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'rev' THEN sgn * score ELSE 0 END) AS DOUBLE) AS sc_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'rev' THEN sgn * comment ELSE 0 END) AS DOUBLE) AS cm_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'rev' AND score = 1 THEN sgn ELSE 0 END) AS DOUBLE) AS s1_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'rev' AND score = 2 THEN sgn ELSE 0 END) AS DOUBLE) AS s2_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'rev' AND score = 3 THEN sgn ELSE 0 END) AS DOUBLE) AS s3_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'rev' AND score = 4 THEN sgn ELSE 0 END) AS DOUBLE) AS s4_{w},
    CAST(sum(CASE WHEN w = {w} AND kind = 'rev' AND score = 5 THEN sgn ELSE 0 END) AS DOUBLE) AS s5_{w},
    -- @end
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
    sum(ro_{w}) OVER cum AS ro_{w},
    sum(n_{w}) OVER cum AS n_{w},
    sum(sc_{w}) OVER cum AS sc_{w},
    sum(cm_{w}) OVER cum AS cm_{w},
    sum(s1_{w}) OVER cum AS s1_{w},
    sum(s2_{w}) OVER cum AS s2_{w},
    sum(s3_{w}) OVER cum AS s3_{w},
    sum(s4_{w}) OVER cum AS s4_{w},
    sum(s5_{w}) OVER cum AS s5_{w},
    -- @end
  FROM d
  WINDOW cum AS (PARTITION BY seller_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
-- @include _explode_to_dt_refs spine=o_{max_w}
SELECT
  c.dt_ref,
  c.seller_id,
  -- @for w in windows
  CAST(c.n_{w} AS BIGINT) AS n_reviews_{w}d,
  c.sc_{w} / NULLIF(c.n_{w}, 0) AS avg_review_score_{w}d,
  CASE WHEN c.s1_{w} > 0 THEN 1.0 WHEN c.s2_{w} > 0 THEN 2.0 WHEN c.s3_{w} > 0 THEN 3.0
       WHEN c.s4_{w} > 0 THEN 4.0 WHEN c.s5_{w} > 0 THEN 5.0 END AS min_review_score_{w}d,
  CASE WHEN c.s5_{w} > 0 THEN 5.0 WHEN c.s4_{w} > 0 THEN 4.0 WHEN c.s3_{w} > 0 THEN 3.0
       WHEN c.s2_{w} > 0 THEN 2.0 WHEN c.s1_{w} > 0 THEN 1.0 END AS max_review_score_{w}d,
  (c.s1_{w} + c.s2_{w}) / NULLIF(c.n_{w}, 0) AS pct_reviews_low_{w}d,
  c.cm_{w} / NULLIF(c.n_{w}, 0) AS pct_reviews_with_comment_{w}d,
  c.ro_{w} / NULLIF(c.o_{w}, 0) AS pct_orders_reviewed_{w}d,
  -- @end
FROM r c
