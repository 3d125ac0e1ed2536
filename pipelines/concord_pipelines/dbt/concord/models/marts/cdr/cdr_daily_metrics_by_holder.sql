-- One row per data holder and day (the holder's local date), chart-ready: each daily metric of CDR Get Metrics
-- in its own column. Hourly performance rows and monthly availability are left out (other grains); a metric a
-- holder did not report that day is NULL. has_partial is true when any of the day's values was partial
-- (the current day).
{%- set wide = [
    ('session_count', 'session_count', ''),
    ('average_tps', 'average_tps', 'aggregate'),
    ('peak_tps', 'peak_tps', 'aggregate'),
    ('errors_aggregate', 'errors', 'aggregate'),
    ('performance_aggregate', 'performance', 'aggregate'),
    ('rejections_authenticated', 'rejections', 'authenticated'),
    ('rejections_unauthenticated', 'rejections', 'unauthenticated'),
    ('average_response_unauthenticated', 'average_response', 'unauthenticated'),
    ('average_response_high_priority', 'average_response', 'high_priority'),
    ('average_response_low_priority', 'average_response', 'low_priority'),
    ('average_response_unattended', 'average_response', 'unattended'),
    ('average_response_large_payload', 'average_response', 'large_payload'),
    ('abandoned_consent_flows', 'authorisations', 'abandoned_consent_flow_count'),
] %}
select
    data_holder,
    period_date as day,
{%- for column, metric, dimension in wide %}
    max(case when metric = '{{ metric }}' and dimension = '{{ dimension }}' then value end) as {{ column }},
{%- endfor %}
    sum(case when metric = 'invocations' then value end) as invocations,
    sum(case when metric = 'authorisations' and dimension like 'new%' then value end)
        as new_authorisations,
    sum(case when metric = 'authorisations' and dimension like 'revoked%' then value end)
        as revoked_authorisations,
    max(case when is_partial then 1 else 0 end) = 1 as has_partial
from {{ ref('stg_cdr__metric_observations') }}
where grain = 'day'
group by data_holder, period_date
