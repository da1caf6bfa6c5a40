-- wechat_share_daily against the raw tables: every day share_day holds carries share_day's own
-- rows; every other day share_hour holds carries its hourly share_count summed per scene, with
-- share_user null. Returns the rows that differ (in the model only, or expected only).
with raw_day as (
    select * from {{ wechat_raw_distinct('share_day') }} as raw_rows
),

raw_hour as (
    select * from {{ wechat_raw_distinct('share_hour') }} as raw_rows
),

expected as (
    select app_id, ref_date, share_scene, share_count, share_user, 'share_day' as source
    from raw_day
    union all
    select app_id, ref_date, share_scene, sum(share_count), null, 'share_hour'
    from raw_hour
    where (app_id, ref_date) not in (select app_id, ref_date from raw_day)
    group by app_id, ref_date, share_scene
),

actual as (
    select app_id, ref_date, share_scene, share_count, share_user, source
    from {{ ref('wechat_share_daily') }}
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
