-- wechat_account_sharers_daily against the raw tables: one row for every day any of biz_share,
-- share_day and share_hour holds, taken from the first of them that has the day, with
-- biz_share's figure as is and the older tables' bounds (largest part, sum of parts).
with raw_biz as (
    select * from {{ wechat_raw_distinct('biz_share') }} as raw_rows
),

raw_day as (
    select * from {{ wechat_raw_distinct('share_day') }} as raw_rows
),

raw_hour as (
    select * from {{ wechat_raw_distinct('share_hour') }} as raw_rows
),

expected as (
    select app_id, ref_date, share_user, share_user as low, share_user as high, 'biz_share' as source
    from raw_biz
    union all
    select
        app_id,
        ref_date,
        case when count(*) = 1 then max(share_user) end,
        max(share_user),
        sum(share_user),
        'share_day'
    from raw_day
    where (app_id, ref_date) not in (select app_id, ref_date from raw_biz)
    group by app_id, ref_date
    union all
    select
        app_id,
        ref_date,
        case when count(*) = 1 then max(share_user) end,
        max(share_user),
        sum(share_user),
        'share_hour'
    from raw_hour
    where (app_id, ref_date) not in (select app_id, ref_date from raw_biz)
        and (app_id, ref_date) not in (select app_id, ref_date from raw_day)
    group by app_id, ref_date
),

actual as (
    select app_id, ref_date, share_user, share_user_low, share_user_high, source
    from {{ ref('wechat_account_sharers_daily') }}
)

select 'missing from the model' as problem, * from (
    select * from expected
    except
    select * from actual
) as missing
union all
select 'not in the raw tables' as problem, * from (
    select * from actual
    except
    select * from expected
) as extra
union all
select 'bounds out of order' as problem, app_id, ref_date, share_user, share_user_low, share_user_high, source
from actual
where share_user_low > share_user_high
    or share_user < share_user_low
    or share_user > share_user_high
