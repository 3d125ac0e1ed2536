-- Kept for one release: the v1 view name of concord_daily_consent_rate (same columns, same meaning).
{{ config(materialized='view') }}
select * from {{ ref('concord_daily_consent_rate') }}
