{#
  The typed columns of each stream's raw table, and its primary key: what the staging models keep
  and what the agreement tests compare against.
#}
{% macro wechat_columns(table) %}
  {%- set text = dbt.type_string() -%}
  {%- set int = dbt.type_int() -%}
  {%- set streams = {
    'share_hour': [('app_id', text), ('ref_date', 'date'), ('ref_hour', int),
                   ('share_scene', int), ('share_count', int), ('share_user', int)],
    'share_day': [('app_id', text), ('ref_date', 'date'), ('share_scene', int),
                  ('share_count', int), ('share_user', int)],
    'article_share': [('app_id', text), ('ref_date', 'date'), ('msgid', text),
                      ('share_user', int)],
    'biz_share': [('app_id', text), ('ref_date', 'date'), ('share_user', int)],
  } -%}
  {{ return(streams[table]) }}
{% endmacro %}

{% macro wechat_key(table) %}
  {%- set keys = {
    'share_hour': ['app_id', 'ref_date', 'ref_hour', 'share_scene'],
    'share_day': ['app_id', 'ref_date', 'share_scene'],
    'article_share': ['app_id', 'ref_date', 'msgid'],
    'biz_share': ['app_id', 'ref_date'],
  } -%}
  {{ return(keys[table]) }}
{% endmacro %}

{# The staging model of a stream: its raw rows typed, one per primary key. #}
{% macro wechat_staging(table) %}
  {{ wechat_latest(table, wechat_columns(table), wechat_key(table)) }}
{% endmacro %}
