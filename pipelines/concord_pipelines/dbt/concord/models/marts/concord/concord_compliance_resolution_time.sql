-- One row per request type (delete, view, change, do_not_sell). requests counts every request; resolved those
-- with a resolved_date. The *_days columns describe resolved_date - request_date in (fractional) days over
-- resolved requests that have both dates; NULL when there are none.
with requests as (
    select
        request,
        resolved_date,
        case when resolved_date is not null and request_date is not null
            then ({{ epoch_seconds('resolved_date') }} - {{ epoch_seconds('request_date') }}) / 86400.0
        end as resolution_days
    from {{ ref('stg_concord__compliance_requests') }}
)
select
    request as request_type,
    cast(count(*) as {{ dbt.type_bigint() }}) as requests,
    cast(count(resolved_date) as {{ dbt.type_bigint() }}) as resolved,
    avg(resolution_days) as avg_days,
    {{ median('resolution_days') }} as median_days,
    min(resolution_days) as min_days,
    max(resolution_days) as max_days
from requests
group by request
