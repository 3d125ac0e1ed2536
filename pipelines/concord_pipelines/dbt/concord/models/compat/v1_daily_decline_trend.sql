-- Kept for one release: the v1 view name of concord_daily_decline_trend (same columns, same meaning).
{{ config(materialized='view') }}
select * from {{ ref('concord_daily_decline_trend') }}
