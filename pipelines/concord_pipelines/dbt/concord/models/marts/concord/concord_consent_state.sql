-- One row per visitor (concord_id) and consent category: the visitor's latest consent state there, from the
-- event with the newest consent_date (ties: the newest date_updated, then the highest version and id).
-- Events without a concord_id or consent_date say nothing about a visitor and are left out.
with ranked as (
    select
        concord_id,
        category,
        consent_state,
        consent_action,
        consent_type_id,
        project_id,
        id as consent_event_id,
        consent_date,
        expiration_date,
        row_number() over (
            partition by concord_id, category
            order by consent_date desc, date_updated desc, version desc, id desc
        ) as newest_first,
        count(*) over (partition by concord_id, category) as events
    from {{ ref('stg_concord__consent_events') }}
    where concord_id is not null and consent_date is not null
)
select
    concord_id,
    coalesce(category, 'unknown') as category,
    consent_state,
    consent_action,
    consent_type_id,
    project_id,
    consent_event_id,
    consent_date as state_since,
    expiration_date,
    cast(events as {{ dbt.type_bigint() }}) as events
from ranked
where newest_first = 1
