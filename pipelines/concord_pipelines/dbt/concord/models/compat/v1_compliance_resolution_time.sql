-- Kept for one release: the v1 view name of concord_compliance_resolution_time (same columns, same meaning).
{{ config(materialized='view') }}
select * from {{ ref('concord_compliance_resolution_time') }}
