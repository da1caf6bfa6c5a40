-- share_day, typed, one row per primary key (see schema.yml).
{{ wechat_staging('share_day') }}
