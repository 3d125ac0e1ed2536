-- Known answer: the daily consent rate counts every dated consent event once (no event lost or doubled by the
-- project join), and accepted + declined + implied + viewed never exceeds events. Returns the offending rows.
with mart as (
    select
        sum(events) as events,
        sum(case when accepted + declined + implied + viewed > events then 1 else 0 end) as overcounted_rows
    from {{ ref('concord_daily_consent_rate') }}
),
staged as (
    select count(*) as events from {{ ref('stg_concord__consent_events') }} where consent_date is not null
)
select mart.events as mart_events, staged.events as staged_events, mart.overcounted_rows
from mart cross join staged
where coalesce(mart.events, 0) <> staged.events or mart.overcounted_rows > 0
