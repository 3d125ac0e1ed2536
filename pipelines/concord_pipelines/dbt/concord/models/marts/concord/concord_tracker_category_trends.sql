-- One row per UTC day of scan_date with at least one completed scan, summing each tracker category over the
-- completed scans of that day (all projects). Running, failed or cancelled scans are left out: their results
-- are partial or empty.
{%- set categories = ['analytics', 'do_not_sell', 'functional', 'global_privacy_control', 'ignored',
                      'limit_pii_use', 'marketing', 'strictly_necessary', 'unclassified'] %}
select
    {{ utc_date('scan_date') }} as scan_day,
    cast(count(*) as {{ dbt.type_bigint() }}) as scans,
    cast(count(distinct project_id) as {{ dbt.type_bigint() }}) as projects,
    cast(sum(results_total) as {{ dbt.type_bigint() }}) as total,
{%- for category in categories %}
    cast(sum(results_categories_{{ category }}) as {{ dbt.type_bigint() }}) as {{ category }}{{ "," if not loop.last }}
{%- endfor %}
from {{ ref('stg_concord__tracker_scans') }}
where status = 'completed'
group by 1
