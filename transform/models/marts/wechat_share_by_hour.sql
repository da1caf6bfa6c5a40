-- Shares by hour of day and scene over the loaded days of each account (see schema.yml).
with share_hour as (
    select * from {{ ref('stg_wechat__share_hour') }}
),

loaded as (
    -- The days from the account's first to its last day in share_hour: a day inside that span
    -- with no row had no share (WeChat lists only hours and scenes that saw shares).
    select
        app_id,
        cast({{ dbt.datediff('min(ref_date)', 'max(ref_date)', 'day') }} + 1 as {{ dbt.type_int() }}) as days
    from share_hour
    group by app_id
)

select
    share_hour.app_id,
    share_hour.ref_hour,
    share_hour.share_scene,
    loaded.days,
    cast(sum(share_hour.share_count) as {{ dbt.type_int() }}) as share_count_total,
    round(cast(sum(share_hour.share_count) as numeric(18, 4)) / loaded.days, 2) as share_count_avg
from share_hour
inner join loaded on loaded.app_id = share_hour.app_id
group by share_hour.app_id, share_hour.ref_hour, share_hour.share_scene, loaded.days
