-- Known answer: a visitor's state per category comes from an event no other event of theirs in that category
-- is newer than (by consent_date). Returns the visitor/category pairs where a newer event exists.
select s.concord_id, s.category, s.state_since, e.consent_date as newer_event_date
from {{ ref('concord_consent_state') }} as s
join {{ ref('stg_concord__consent_events') }} as e
    on e.concord_id = s.concord_id and coalesce(e.category, 'unknown') = s.category
where e.consent_date > s.state_since
