-- v1_daily_consent_rate: one row per UTC day of consent_date, project and visitor geography.
-- consent_rate = accepted / (accepted + declined): the share of explicit decisions that accepted.
-- implied and viewed events are counted but are not decisions; consent_rate is NULL on days
-- without any explicit decision. Events are counted in their current state (consent_events is
-- merged on id, so an event changed from declined to accepted counts as accepted).
SELECT
    CAST(e.consent_date AT TIME ZONE 'UTC' AS DATE) AS day,
    e.project AS project_id,
    p.name AS project_name,
    COALESCE(e.session__geography, 'unknown') AS geography,
    COUNT(*) AS events,
    CAST(SUM(CASE WHEN e.consent_state = 'accepted' THEN 1 ELSE 0 END) AS BIGINT) AS accepted,
    CAST(SUM(CASE WHEN e.consent_state = 'declined' THEN 1 ELSE 0 END) AS BIGINT) AS declined,
    CAST(SUM(CASE WHEN e.consent_state = 'implied' THEN 1 ELSE 0 END) AS BIGINT) AS implied,
    CAST(SUM(CASE WHEN e.consent_state = 'viewed' THEN 1 ELSE 0 END) AS BIGINT) AS viewed,
    CAST(SUM(CASE WHEN e.consent_state = 'accepted' THEN 1 ELSE 0 END) AS DOUBLE PRECISION)
        / NULLIF(SUM(CASE WHEN e.consent_state IN ('accepted', 'declined') THEN 1 ELSE 0 END), 0) AS consent_rate
FROM {dataset}.consent_events AS e
LEFT JOIN {dataset}.projects AS p ON p.id = e.project
WHERE e.consent_date IS NOT NULL
GROUP BY 1, 2, 3, 4
