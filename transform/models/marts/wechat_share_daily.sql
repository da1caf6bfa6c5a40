-- One row per app_id, ref_date, share_scene over every day share_day or share_hour holds:
-- share_day's figures where share_day has the day, else the day's hourly share_count summed
-- (share_user null: distinct sharers do not add up across hours). See schema.yml.
with share_day as (
    select * from {{ ref('stg_wechat__share_day') }}
),

share_hour as (
    select * from {{ ref('stg_wechat__share_hour') }}
),

days_of_share_day as (
    select distinct app_id, ref_date from share_day
),

from_share_day as (
    select
        app_id,
        ref_date,
        share_scene,
        share_count,
        share_user,
        cast('share_day' as {{ dbt.type_string() }}) as source
    from share_day
),

from_share_hour as (
    select
        hour.app_id,
        hour.ref_date,
        hour.share_scene,
        cast(sum(hour.share_count) as {{ dbt.type_int() }}) as share_count,
        cast(null as {{ dbt.type_int() }}) as share_user,
        cast('share_hour' as {{ dbt.type_string() }}) as source
    from share_hour as hour
    where not exists (
        select 1
        from days_of_share_day as day
        where day.app_id = hour.app_id and day.ref_date = hour.ref_date
    )
    group by hour.app_id, hour.ref_date, hour.share_scene
)

select * from from_share_day
union all
select * from from_share_hour
