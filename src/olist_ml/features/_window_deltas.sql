-- Shared CTE `x` (included by the fs_seller_* templates): each fact row of `f` (seller_id,
-- kind, isl, life, s, e, prv, nxt, ...) becomes +1/-1 deltas per window on the day it enters /
-- leaves the window [dt_ref - w, dt_ref); facts that cannot touch the requested dt_refs are pruned.
-- `isl` rows are "distinct key" islands (counted once while any occurrence is in the window),
-- `life` rows are lifetime facts (enter once, never leave).
x AS (
  SELECT f.*, wn.w, sg.sgn, greatest(CASE WHEN sg.sgn = 1 THEN f.s + 1 ELSE f.e + wn.w + 1 END, (SELECT min(dn) FROM fs_dates) - 1) AS day
  FROM f
  CROSS JOIN {{ windows_table }}
  CROSS JOIN (VALUES (CAST(1 AS DOUBLE)), (CAST(-1 AS DOUBLE))) AS sg(sgn)
  WHERE f.s + 1 <= (SELECT max(dn) FROM fs_dates)
    -- a cohort fact whose longest window closed before the first dt_ref cancels out: pruned early
    AND (f.isl = 1 OR f.life = 1 OR f.e + {{ max_w }} >= (SELECT min(dn) FROM fs_dates))
    AND (
      (f.life = 1 AND sg.sgn = 1 AND wn.w = {{ max_w }})
      OR (f.life = 0 AND f.isl = 0 AND f.s + 1 <= f.e + wn.w AND f.e + wn.w >= (SELECT min(dn) FROM fs_dates))
      OR (f.isl = 1 AND sg.sgn = 1 AND (f.prv IS NULL OR f.s - f.prv > wn.w))
      OR (f.isl = 1 AND sg.sgn = -1 AND (f.nxt IS NULL OR f.nxt - f.s > wn.w))
    )
    AND (sg.sgn = 1 OR f.e + wn.w + 1 <= (SELECT max(dn) FROM fs_dates))
),
