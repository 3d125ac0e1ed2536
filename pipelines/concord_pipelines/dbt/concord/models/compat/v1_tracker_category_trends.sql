-- Kept for one release: the v1 view name of concord_tracker_category_trends (same columns, same meaning).
{{ config(materialized='view') }}
select * from {{ ref('concord_tracker_category_trends') }}
