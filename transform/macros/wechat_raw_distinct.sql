{#
  A raw table's rows, typed, each distinct row once, for the tests that check the models against
  the raw tables (identical rows loaded twice count once; the targets here merge on the key).
#}
{% macro wechat_raw_distinct(table) %}
  (select distinct
  {%- for name, type in wechat_columns(table) %}
    {{ name }}{{ "," if not loop.last }}
  {%- endfor %}
  from {{ wechat_raw(table, wechat_columns(table)) }} as raw)
{% endmacro %}
