-- Shared CTEs `e`, `r` (emitted by `running_sums(..., spine=<column>)`, render.py): a row of the
-- running-sum CTE `c` (seller_id, day, next_day, ...) holds for the days [day, next_day); it is
-- copied to each requested dt_ref in that span where the seller is active (`<column>` > 0).
e AS (
  -- a row of c holds for the days [day, next_day); the spine: the seller is active ({{ spine }} > 0)
  SELECT c.*, EXPLODE_RANGE(greatest(c.day, (SELECT min(dn) FROM fs_dates)), COALESCE(c.next_day, (SELECT max(dn) FROM fs_dates) + 1)) AS dd
  FROM c
  WHERE c.{{ spine }} > 0
    AND greatest(c.day, (SELECT min(dn) FROM fs_dates)) < COALESCE(c.next_day, (SELECT max(dn) FROM fs_dates) + 1)
),
r AS (
  SELECT s.dt_ref, e.*
  FROM e
  JOIN fs_dates s ON s.dn = e.dd
)
