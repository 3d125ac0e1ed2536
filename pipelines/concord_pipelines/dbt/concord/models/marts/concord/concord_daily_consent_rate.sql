-- One row per UTC day of consent_date, project and visitor geography.
-- consent_rate = accepted / (accepted + declined): the share of explicit decisions that accepted; implied and
-- viewed events are counted but are not decisions (consent_rate is NULL on days without one). Events count in
-- their current state (consent_events is merged on id).
select
    {{ utc_date('e.consent_date') }} as day,
    e.project_id,
    p.name as project_name,
    coalesce(e.session_geography, 'unknown') as geography,
    cast(count(*) as {{ dbt.type_bigint() }}) as events,
    {{ count_if("e.consent_state = 'accepted'") }} as accepted,
    {{ count_if("e.consent_state = 'declined'") }} as declined,
    {{ count_if("e.consent_state = 'implied'") }} as implied,
    {{ count_if("e.consent_state = 'viewed'") }} as viewed,
    {{ ratio(count_if("e.consent_state = 'accepted'"), count_if("e.consent_state in ('accepted', 'declined')")) }} as consent_rate
from {{ ref('stg_concord__consent_events') }} as e
left join {{ ref('stg_concord__projects') }} as p on p.id = e.project_id
where e.consent_date is not null
group by 1, 2, 3, 4
