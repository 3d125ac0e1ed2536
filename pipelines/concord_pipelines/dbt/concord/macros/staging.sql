{#- One staging model: the declared columns under their staging names (dlt's _dlt_load_id is left out:
    tables loaded from Arrow pages do not have it).
    columns: [(loaded name, staging name, type)]. A declared column the table lacks (the pii setting dropped
    it, or the table was loaded before the column was declared) becomes a typed NULL instead of an error. -#}
{% macro concord_staging(relation, columns) %}
{%- set present = [] -%}
{%- if execute -%}
  {%- for col in adapter.get_columns_in_relation(relation) -%}
    {%- do present.append(col.name | lower) -%}
  {%- endfor -%}
{%- endif %}
select
{%- for loaded, name, type in columns %}
    {% if not execute or loaded in present -%}
    {{ adapter.quote(loaded) }}
    {%- else -%}
    cast(null as {{ type }})
    {%- endif %} as {{ adapter.quote(name) }}{{ "," if not loop.last }}
{%- endfor %}
from {{ relation }}
{% endmacro %}
