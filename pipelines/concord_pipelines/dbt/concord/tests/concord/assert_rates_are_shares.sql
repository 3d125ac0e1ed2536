-- Rates and shares are fractions of a whole: between 0 and 1 wherever they are defined.
select 'consent_rate' as measure, consent_rate as value from {{ ref('concord_daily_consent_rate') }}
where consent_rate < 0 or consent_rate > 1
union all
select 'decline_share_7d', decline_share_7d from {{ ref('concord_daily_decline_trend') }}
where decline_share_7d < 0 or decline_share_7d > 1 or decisions_7d < decisions
