-- v1_daily_decline_trend: one row per UTC day of consent_date and project (days with at least one
-- explicit decision). decisions = accepted + declined; decline_share = declined / decisions.
-- The *_7d columns sum the 7 calendar days ending on `day` (day - 6 .. day, missing days count 0),
-- and decline_share_7d = declined_7d / decisions_7d.
WITH daily AS (
    SELECT
        CAST(consent_date AT TIME ZONE 'UTC' AS DATE) AS day,
        project AS project_id,
        CAST(SUM(CASE WHEN consent_state = 'declined' THEN 1 ELSE 0 END) AS BIGINT) AS declined,
        CAST(SUM(CASE WHEN consent_state IN ('accepted', 'declined') THEN 1 ELSE 0 END) AS BIGINT) AS decisions
    FROM {dataset}.consent_events
    WHERE consent_date IS NOT NULL AND consent_state IN ('accepted', 'declined')
    GROUP BY 1, 2
)
SELECT
    d.day,
    d.project_id,
    d.declined,
    d.decisions,
    CAST(d.declined AS DOUBLE PRECISION) / d.decisions AS decline_share,
    CAST(SUM(w.declined) AS BIGINT) AS declined_7d,
    CAST(SUM(w.decisions) AS BIGINT) AS decisions_7d,
    CAST(SUM(w.declined) AS DOUBLE PRECISION) / SUM(w.decisions) AS decline_share_7d
FROM daily AS d
JOIN daily AS w
    ON w.project_id = d.project_id
    AND w.day <= d.day
    AND w.day > d.day - 7
GROUP BY d.day, d.project_id, d.declined, d.decisions
