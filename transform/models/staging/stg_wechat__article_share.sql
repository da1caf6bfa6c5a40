-- article_share, typed, one row per primary key (see schema.yml).
{{ wechat_staging('article_share') }}
