-- One row per UTC day of consent_date and project with at least one explicit decision.
-- decisions = accepted + declined; decline_share = declined / decisions. The *_7d columns sum the 7 calendar
-- days ending on `day` (day - 6 .. day; days without decisions count 0).
with daily as (
    select
        {{ utc_date('consent_date') }} as day,
        project_id,
        {{ count_if("consent_state = 'declined'") }} as declined,
        cast(count(*) as {{ dbt.type_bigint() }}) as decisions
    from {{ ref('stg_concord__consent_events') }}
    where consent_date is not null and consent_state in ('accepted', 'declined')
    group by 1, 2
)
select
    d.day,
    d.project_id,
    d.declined,
    d.decisions,
    {{ ratio('d.declined', 'd.decisions') }} as decline_share,
    cast(sum(w.declined) as {{ dbt.type_bigint() }}) as declined_7d,
    cast(sum(w.decisions) as {{ dbt.type_bigint() }}) as decisions_7d,
    {{ ratio('sum(w.declined)', 'sum(w.decisions)') }} as decline_share_7d
from daily as d
join daily as w
    on w.project_id = d.project_id
    and w.day <= d.day
    and w.day >= cast({{ dbt.dateadd('day', -6, 'd.day') }} as date)
group by d.day, d.project_id, d.declined, d.decisions
