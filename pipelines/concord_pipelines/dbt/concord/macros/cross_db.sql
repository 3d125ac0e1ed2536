{#- Cross-database helpers: DuckDB and PostgreSQL are tested; BigQuery and Snowflake have their own
    dispatch where the ANSI form does not exist there. dbt's own cross-database macros (dbt.type_*,
    dbt.dateadd, dbt.current_timestamp) cover the rest. -#}

{# The UTC calendar day of a timestamp with time zone. #}
{% macro utc_date(expr) %}{{ return(adapter.dispatch('utc_date', 'concord')(expr)) }}{% endmacro %}
{% macro default__utc_date(expr) %}cast(({{ expr }}) at time zone 'UTC' as date){% endmacro %}
{% macro bigquery__utc_date(expr) %}date({{ expr }}, 'UTC'){% endmacro %}
{% macro snowflake__utc_date(expr) %}cast(convert_timezone('UTC', {{ expr }}) as date){% endmacro %}

{# Seconds since the epoch as a float (millisecond precision kept; PostgreSQL's numeric would leak into every
   day count computed from it). #}
{% macro epoch_seconds(expr) %}{{ return(adapter.dispatch('epoch_seconds', 'concord')(expr)) }}{% endmacro %}
{% macro default__epoch_seconds(expr) %}cast(extract(epoch from {{ expr }}) as {{ type_double() }}){% endmacro %}
{% macro bigquery__epoch_seconds(expr) %}(unix_micros({{ expr }}) / 1000000.0){% endmacro %}
{% macro snowflake__epoch_seconds(expr) %}(date_part(epoch_microsecond, {{ expr }}) / 1000000.0){% endmacro %}

{# The median of a numeric expression, as an aggregate. #}
{% macro median(expr) %}{{ return(adapter.dispatch('median', 'concord')(expr)) }}{% endmacro %}
{% macro default__median(expr) %}percentile_cont(0.5) within group (order by {{ expr }}){% endmacro %}
{% macro bigquery__median(expr) %}approx_quantiles({{ expr }}, 2)[offset(1)]{% endmacro %}

{# 1 when the condition holds, else 0, as a bigint (for conditional counts). #}
{% macro count_if(condition) %}cast(sum(case when {{ condition }} then 1 else 0 end) as {{ dbt.type_bigint() }}){% endmacro %}

{# numerator / denominator as a float, NULL when the denominator is 0. #}
{% macro ratio(numerator, denominator) %}cast({{ numerator }} as {{ type_double() }}) / nullif({{ denominator }}, 0){% endmacro %}

{# A 64-bit float. dbt.type_float() is a 32-bit REAL on DuckDB (7 digits: epoch seconds lose minutes). #}
{% macro type_double() %}{{ return(adapter.dispatch('type_double', 'concord')()) }}{% endmacro %}
{% macro default__type_double() %}double precision{% endmacro %}
{% macro bigquery__type_double() %}float64{% endmacro %}
