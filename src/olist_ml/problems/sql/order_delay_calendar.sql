-- order_delay_calendar: business-day and holiday counters over the days the `target` rows span.
-- grain: (state, day); state '' is the national calendar, a customer state's calendar is the national
-- one plus that state's own holidays (olist_ml.problems.order_delay.holidays_sql, from the maintained
-- `holidays` package: a public calendar, known years in advance).
-- bd_before / hol_before: business days (Mon-Fri, not a holiday) / holidays in [first day, day), so the
-- business days in [a, b) are bd_before(b) - bd_before(a). Spliced into order_delay_orders.sql and
-- order_delay_inflight.sql as the CTEs `holidays`, `cal_days`, `cal_states`, `calendar`.
holidays AS (
{{ holidays }}
),
cal_days AS (
    SELECT DATE_SERIES(lo, hi, INTERVAL 1 DAY) AS day
    FROM (SELECT greatest(min(purchase_date), DATE '2000-01-01') AS lo,
                 least(max(CAST(estimated_at AS DATE)) + INTERVAL 1 DAY, DATE '2100-01-01') AS hi
          FROM target) b
    WHERE lo IS NOT NULL AND hi IS NOT NULL
),
cal_states AS (
    SELECT '' AS state UNION SELECT DISTINCT customer_state FROM target WHERE customer_state IS NOT NULL
),
calendar AS (
    SELECT state, day,
           sum(is_bd) OVER (PARTITION BY state ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - is_bd
               AS bd_before,
           sum(is_hol) OVER (PARTITION BY state ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - is_hol
               AS hol_before
    FROM (
        SELECT s.state, d.day,
               CASE WHEN h.day IS NOT NULL THEN 1 ELSE 0 END AS is_hol,
               CASE WHEN ISODOW(d.day) < 6 AND h.day IS NULL THEN 1 ELSE 0 END AS is_bd
        FROM cal_states s
        CROSS JOIN cal_days d
        LEFT JOIN (SELECT DISTINCT day, state FROM holidays) h
               ON h.day = d.day AND h.state = s.state
    ) c
)
