{#
  One row per key: fails with each combination of `columns` that occurs more than once, or has a
  null in it. (dbt's own `unique` takes one column; this project needs no package for more.)
#}
{% test wechat_one_row_per_key(model, columns) %}
select {{ columns | join(', ') }}, count(*) as rows_with_this_key
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
    {%- for column in columns %} or {{ column }} is null{% endfor %}
{% endtest %}
