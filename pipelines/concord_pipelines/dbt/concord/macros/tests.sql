{#- A composite key is unique: no two rows share the combination (dbt_utils' test, without the package:
    `dbt deps` needs the network, the connector must build offline). -#}
{% test concord_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as rows_with_this_key
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
