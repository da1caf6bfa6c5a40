-- share_hour, typed, one row per primary key (see schema.yml).
{{ wechat_staging('share_hour') }}
