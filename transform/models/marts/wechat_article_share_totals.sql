-- Per published article: the days it was shared and its daily sharers added up (see schema.yml).
select
    app_id,
    msgid,
    min(case when share_user > 0 then ref_date end) as first_shared,
    max(case when share_user > 0 then ref_date end) as last_shared,
    cast(count(distinct case when share_user > 0 then ref_date end) as {{ dbt.type_int() }}) as days_shared,
    cast(sum(share_user) as {{ dbt.type_int() }}) as share_user_total
from {{ ref('stg_wechat__article_share') }}
group by app_id, msgid
