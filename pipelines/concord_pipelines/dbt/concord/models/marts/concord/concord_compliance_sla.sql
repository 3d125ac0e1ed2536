-- One row per open compliance request (no resolved_date): how long it has been open and whether it is past
-- the SLA of var('compliance_sla_days') days (default 30). "Now" is var('compliance_sla_as_of') when set
-- (a fixed instant makes the answer reproducible), else the build's current time.
{%- set as_of = var('compliance_sla_as_of', none) %}
{%- set now = "cast('" ~ as_of ~ "' as " ~ dbt.type_timestamp() ~ ")" if as_of else dbt.current_timestamp() %}
with open_requests as (
    select
        id as compliance_request_id,
        project_id,
        request as request_type,
        status,
        request_date,
        ({{ epoch_seconds(now) }} - {{ epoch_seconds('request_date') }}) / 86400.0 as open_days
    from {{ ref('stg_concord__compliance_requests') }}
    where resolved_date is null and request_date is not null
)
select
    compliance_request_id,
    project_id,
    request_type,
    status,
    request_date,
    open_days,
    cast({{ var('compliance_sla_days', 30) }} as {{ dbt.type_int() }}) as sla_days,
    open_days > {{ var('compliance_sla_days', 30) }} as past_sla,
    open_days - {{ var('compliance_sla_days', 30) }} as days_past_sla
from open_requests
