-- biz_share, typed, one row per primary key (see schema.yml).
{{ wechat_staging('biz_share') }}
