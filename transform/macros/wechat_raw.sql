{#
  The rows of one raw table of tap-wechat-share, typed, as a subquery; or no rows (with the same
  columns) when the table does not exist: a stream not loaded yet, or never selected.

  columns: a list of (name, type) pairs; type is a dbt type macro name's result, e.g. 'date'.
  Rows a target marked deleted (_sdc_deleted_at set) are left out. When the target keeps its
  metadata columns, `_wechat_loaded_at` is the row's load time (_sdc_batched_at), else null.
#}
{% macro wechat_raw(table, columns) %}
  {%- set src = source('wechat', table) -%}
  {%- set relation = none -%}
  {%- if execute -%}
    {%- set relation = adapter.get_relation(
        database=src.database, schema=src.schema, identifier=src.identifier) -%}
  {%- endif -%}
  {%- if relation is none -%}
    (select
    {%- for name, type in columns %}
      cast(null as {{ type }}) as {{ name }},
    {%- endfor %}
      cast(null as {{ dbt.type_timestamp() }}) as _wechat_loaded_at
    where 1 = 0)
  {%- else -%}
    {%- set present = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
    (select
    {%- for name, type in columns %}
      cast({{ name }} as {{ type }}) as {{ name }},
    {%- endfor %}
      {% if '_sdc_batched_at' in present -%}
      cast(_sdc_batched_at as {{ dbt.type_timestamp() }})
      {%- else -%}
      cast(null as {{ dbt.type_timestamp() }})
      {%- endif %} as _wechat_loaded_at
    from {{ relation }}
    {%- if '_sdc_deleted_at' in present %}
    where _sdc_deleted_at is null
    {%- endif %})
  {%- endif -%}
{% endmacro %}


{#
  One row per key of a raw table: the last loaded one when the target left several (an
  append-only load, or a reload), ties broken by the values so that the choice is stable.
#}
{% macro wechat_latest(table, columns, key) %}
  {%- set values = columns | map('first') | reject('in', key) | list -%}
  select
  {%- for name, type in columns %}
    {{ name }}{{ "," if not loop.last }}
  {%- endfor %}
  from (
    select
      raw.*,
      row_number() over (
        partition by {{ key | join(', ') }}
        order by _wechat_loaded_at desc nulls last
        {%- for name in values %}, {{ name }} desc{% endfor %}
      ) as _wechat_row
    from {{ wechat_raw(table, columns) }} as raw
  ) as ranked
  where _wechat_row = 1
{% endmacro %}
