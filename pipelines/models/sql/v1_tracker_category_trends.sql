-- v1_tracker_category_trends: one row per UTC day of scan_date with at least one completed scan,
-- summing each tracker category over the completed scans of that day (all projects). Scans that are
-- still running, failed or cancelled are left out: their results are partial or empty.
SELECT
    CAST(scan_date AT TIME ZONE 'UTC' AS DATE) AS scan_day,
    COUNT(*) AS scans,
    COUNT(DISTINCT project_id) AS projects,
    CAST(SUM(results__total) AS BIGINT) AS total,
    CAST(SUM(results__categories__analytics) AS BIGINT) AS analytics,
    CAST(SUM(results__categories__do_not_sell) AS BIGINT) AS do_not_sell,
    CAST(SUM(results__categories__functional) AS BIGINT) AS functional,
    CAST(SUM(results__categories__global_privacy_control) AS BIGINT) AS global_privacy_control,
    CAST(SUM(results__categories__ignored) AS BIGINT) AS ignored,
    CAST(SUM(results__categories__limit_pii_use) AS BIGINT) AS limit_pii_use,
    CAST(SUM(results__categories__marketing) AS BIGINT) AS marketing,
    CAST(SUM(results__categories__strictly_necessary) AS BIGINT) AS strictly_necessary,
    CAST(SUM(results__categories__unclassified) AS BIGINT) AS unclassified
FROM {dataset}.tracker_scans
WHERE status = 'completed'
GROUP BY 1
