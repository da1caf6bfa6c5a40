-- wechat_article_share_totals against raw article_share: per article, its first and last day
-- with sharers, the number of such days, and its daily sharers summed.
with raw_article as (
    select * from {{ wechat_raw_distinct('article_share') }} as raw_rows
),

expected as (
    select
        app_id,
        msgid,
        min(case when share_user > 0 then ref_date end) as first_shared,
        max(case when share_user > 0 then ref_date end) as last_shared,
        count(distinct case when share_user > 0 then ref_date end) as days_shared,
        sum(share_user) as share_user_total
    from raw_article
    group by app_id, msgid
),

actual as (
    select app_id, msgid, first_shared, last_shared, days_shared, share_user_total
    from {{ ref('wechat_article_share_totals') }}
)

select 'missing from the model' as problem, * from (
    select * from expected
    except
    select * from actual
) as missing
union all
select 'not in the raw table' as problem, * from (
    select * from actual
    except
    select * from expected
) as extra
