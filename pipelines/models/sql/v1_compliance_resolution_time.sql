-- v1_compliance_resolution_time: one row per request type (`request`: delete, view, change, ...).
-- requests counts every request; resolved those with a resolved_date. The *_days columns describe
-- resolved_date - request_date in days (fractional) over resolved requests only; NULL when none.
SELECT
    request AS request_type,
    COUNT(*) AS requests,
    COUNT(resolved_date) AS resolved,
    AVG(resolution_days) AS avg_days,
    PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY resolution_days) AS median_days,
    MIN(resolution_days) AS min_days,
    MAX(resolution_days) AS max_days
FROM (
    SELECT
        request,
        resolved_date,
        CASE WHEN resolved_date IS NOT NULL AND request_date IS NOT NULL
            THEN (EXTRACT(EPOCH FROM resolved_date) - EXTRACT(EPOCH FROM request_date)) / 86400.0
        END AS resolution_days
    FROM {dataset}.compliance_requests
) AS r
GROUP BY request
