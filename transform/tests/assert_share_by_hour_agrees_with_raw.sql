-- wechat_share_by_hour against raw share_hour: each hour and scene's total is the raw rows' sum,
-- days is the account's span of days in share_hour, and the average is total / days.
with raw_hour as (
    select * from {{ wechat_raw_distinct('share_hour') }} as raw_rows
),

expected as (
    select
        app_id,
        ref_hour,
        share_scene,
        sum(share_count) as share_count_total
    from raw_hour
    group by app_id, ref_hour, share_scene
),

spans as (
    select app_id, min(ref_date) as first_day, max(ref_date) as last_day
    from raw_hour
    group by app_id
),

actual as (
    select * from {{ ref('wechat_share_by_hour') }}
)

select 'total differs or row missing' as problem, expected.app_id, expected.ref_hour, expected.share_scene
from expected
left join actual
    on actual.app_id = expected.app_id
    and actual.ref_hour = expected.ref_hour
    and actual.share_scene = expected.share_scene
where actual.share_count_total is null or actual.share_count_total <> expected.share_count_total
union all
select 'row not in share_hour', actual.app_id, actual.ref_hour, actual.share_scene
from actual
left join expected
    on actual.app_id = expected.app_id
    and actual.ref_hour = expected.ref_hour
    and actual.share_scene = expected.share_scene
where expected.app_id is null
union all
select 'days or average wrong', actual.app_id, actual.ref_hour, actual.share_scene
from actual
inner join spans on spans.app_id = actual.app_id
where actual.days <> {{ dbt.datediff('spans.first_day', 'spans.last_day', 'day') }} + 1
    or abs(actual.share_count_avg - 1.0 * actual.share_count_total / actual.days) > 0.005
