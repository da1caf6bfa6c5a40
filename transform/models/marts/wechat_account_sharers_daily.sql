-- The account's sharers per day across WeChat's switch from getusershare / getusersharehour to
-- getbizsummary: biz_share where it has the day, else share_day, else share_hour (see schema.yml).
with biz_share as (
    select * from {{ ref('stg_wechat__biz_share') }}
),

share_day as (
    select
        app_id,
        ref_date,
        max(share_user) as share_user_low,
        sum(share_user) as share_user_high,
        count(*) as parts
    from {{ ref('stg_wechat__share_day') }}
    group by app_id, ref_date
),

share_hour as (
    select
        app_id,
        ref_date,
        max(share_user) as share_user_low,
        sum(share_user) as share_user_high,
        count(*) as parts
    from {{ ref('stg_wechat__share_hour') }}
    group by app_id, ref_date
),

from_biz_share as (
    select
        app_id,
        ref_date,
        share_user,
        share_user as share_user_low,
        share_user as share_user_high,
        cast('biz_share' as {{ dbt.type_string() }}) as source
    from biz_share
),

from_share_day as (
    select
        app_id,
        ref_date,
        -- Exact only when one scene had sharers that day: one person can share through several.
        case when parts = 1 then share_user_low end as share_user,
        share_user_low,
        share_user_high,
        cast('share_day' as {{ dbt.type_string() }}) as source
    from share_day
    where not exists (
        select 1 from biz_share
        where biz_share.app_id = share_day.app_id and biz_share.ref_date = share_day.ref_date
    )
),

from_share_hour as (
    select
        app_id,
        ref_date,
        -- Exact only when one hour and scene had sharers that day.
        case when parts = 1 then share_user_low end as share_user,
        share_user_low,
        share_user_high,
        cast('share_hour' as {{ dbt.type_string() }}) as source
    from share_hour
    where not exists (
        select 1 from biz_share
        where biz_share.app_id = share_hour.app_id and biz_share.ref_date = share_hour.ref_date
    )
    and not exists (
        select 1 from share_day
        where share_day.app_id = share_hour.app_id and share_day.ref_date = share_hour.ref_date
    )
)

select
    app_id,
    ref_date,
    cast(share_user as {{ dbt.type_int() }}) as share_user,
    cast(share_user_low as {{ dbt.type_int() }}) as share_user_low,
    cast(share_user_high as {{ dbt.type_int() }}) as share_user_high,
    source
from (
    select * from from_biz_share
    union all
    select * from from_share_day
    union all
    select * from from_share_hour
) as series
