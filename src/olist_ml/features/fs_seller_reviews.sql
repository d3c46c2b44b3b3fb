-- grain: (dt_ref, seller_id)
-- fs_seller_reviews: what customers said about the seller's recent orders.
-- Cohort: the seller's orders purchased in [dt_ref - w days, dt_ref). A review's score and comment
-- are known at its ANSWER time: review_answer_timestamp < dt_ref (a review without an answer
-- timestamp is never known). review_creation_date is only when the survey was sent (75 % of the
-- real reviews are answered on a later day: median 1, p90 4, max 518 days), so dating a review by
-- it would use scores before they exist. A review on a multi-seller order counts for every seller
-- of the order. Rows: fs_spine.
-- Computed with deltas (see fs_seller_sales.sql) and running sums (render.running_sums): a fact
-- known on day k about an order bought on day p counts for the dt_refs in (max(p, k), p + w].
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
  CROSS JOIN {{ windows_table }}
  CROSS JOIN (VALUES (CAST(1 AS DOUBLE)), (CAST(-1 AS DOUBLE))) AS sg(sgn)
  WHERE f.e + {{ max_w }} >= (SELECT min(dn) FROM fs_dates)  -- (w-free: pruned before the cross join)
    AND f.s + 1 <= f.e + wn.w
    AND f.e + wn.w >= (SELECT min(dn) FROM fs_dates)
    AND f.s + 1 <= (SELECT max(dn) FROM fs_dates)
    AND (sg.sgn = 1 OR f.e + wn.w + 1 <= (SELECT max(dn) FROM fs_dates))
),
{{ running_sums([
    ("o", "kind = 'ord'", "1"),
    ("ro", "kind = 'rvo'", "1"),
    ("n", "kind = 'rev'", "1"),
    ("sc", "kind = 'rev'", "score"),
    ("cm", "kind = 'rev'", "comment"),
    ("s1", "kind = 'rev' AND score = 1", "1"),
    ("s2", "kind = 'rev' AND score = 2", "1"),
    ("s3", "kind = 'rev' AND score = 3", "1"),
    ("s4", "kind = 'rev' AND score = 4", "1"),
    ("s5", "kind = 'rev' AND score = 5", "1"),
  ], spine="o_" ~ max_w) }}
SELECT
  c.dt_ref,
  c.seller_id,
  {% for w in windows %}
  CAST(c.n_{{ w }} AS BIGINT) AS n_reviews_{{ w }}d,
  c.sc_{{ w }} / NULLIF(c.n_{{ w }}, 0) AS avg_review_score_{{ w }}d,
  CASE WHEN c.s1_{{ w }} > 0 THEN 1.0 WHEN c.s2_{{ w }} > 0 THEN 2.0 WHEN c.s3_{{ w }} > 0 THEN 3.0
       WHEN c.s4_{{ w }} > 0 THEN 4.0 WHEN c.s5_{{ w }} > 0 THEN 5.0 END AS min_review_score_{{ w }}d,
  CASE WHEN c.s5_{{ w }} > 0 THEN 5.0 WHEN c.s4_{{ w }} > 0 THEN 4.0 WHEN c.s3_{{ w }} > 0 THEN 3.0
       WHEN c.s2_{{ w }} > 0 THEN 2.0 WHEN c.s1_{{ w }} > 0 THEN 1.0 END AS max_review_score_{{ w }}d,
  (c.s1_{{ w }} + c.s2_{{ w }}) / NULLIF(c.n_{{ w }}, 0) AS pct_reviews_low_{{ w }}d,
  c.cm_{{ w }} / NULLIF(c.n_{{ w }}, 0) AS pct_reviews_with_comment_{{ w }}d,
  c.ro_{{ w }} / NULLIF(c.o_{{ w }}, 0) AS pct_orders_reviewed_{{ w }}d,
  {% endfor %}
FROM r c
