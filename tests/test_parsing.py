"""Property-based tests of how answers are checked and turned into records."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_wechat_share.dates import Window
from tap_wechat_share.streams import HOURS, DatacubeStream, RowError
from tap_wechat_share.tap import TapWeChatShare

WINDOW = Window(dt.date(2024, 5, 1), dt.date(2024, 5, 7))
CONFIG = {"app_id": "wxprop", "access_token": "prop-token-123456", "start_date": "2024-05-01"}


@pytest.fixture(scope="module")
def streams() -> dict[str, DatacubeStream]:
    tap = TapWeChatShare(config=CONFIG, validate_config=True)
    return t.cast("dict[str, DatacubeStream]", dict(tap.streams))


days_in = st.dates(WINDOW.begin, WINDOW.end).map(dt.date.isoformat)
days_out = st.one_of(
    st.dates(dt.date(2014, 12, 1), WINDOW.begin - dt.timedelta(days=1)),
    st.dates(WINDOW.end + dt.timedelta(days=1), dt.date(2030, 1, 1)),
).map(dt.date.isoformat)
counts = st.integers(min_value=0, max_value=10**9)


def hourly_row(day: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, t.Any]]:
    return st.fixed_dictionaries(
        {
            "ref_date": day,
            "ref_hour": st.sampled_from(sorted(HOURS)),
            "share_scene": st.sampled_from([1, 2, 255]),
            "share_count": counts,
            "share_user": counts,
        }
    )


def unique_by_key(rows: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    seen: dict[tuple[t.Any, ...], dict[str, t.Any]] = {}
    for row in rows:
        seen.setdefault((row["ref_date"], row["ref_hour"], row["share_scene"]), row)
    return list(seen.values())


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(
    rows=st.lists(hourly_row(days_in), max_size=40).map(unique_by_key),
    stray=st.lists(hourly_row(days_out), max_size=5),
    duplicated=st.lists(st.integers(min_value=0, max_value=39), max_size=5),
    data=st.randoms(),
)
def test_valid_rows_come_out_once_sorted_with_app_id_and_strays_dropped(
    streams: dict[str, DatacubeStream],
    rows: list[dict[str, t.Any]],
    stray: list[dict[str, t.Any]],
    duplicated: list[int],
    data: t.Any,
) -> None:
    answer = rows + stray + [dict(rows[i]) for i in duplicated if i < len(rows)]
    data.shuffle(answer)
    records = streams["share_hour"].parse_rows({"list": answer}, WINDOW, "wxprop")
    expected = sorted(
        ({"app_id": "wxprop", **row} for row in rows),
        key=lambda r: (r["ref_date"], r["ref_hour"], r["share_scene"]),
    )
    assert records == expected


@SETTINGS
@given(
    rows=st.lists(hourly_row(days_in), min_size=1, max_size=10).map(unique_by_key),
    field=st.sampled_from(["ref_date", "ref_hour", "share_scene", "share_count", "share_user"]),
    bad=st.one_of(
        st.none(),
        st.floats(allow_nan=True),
        st.text(max_size=8).filter(lambda s: not s.strip().lstrip("-").isdigit()),
        st.lists(st.integers(), max_size=2),
        st.booleans(),
    ),
)
def test_a_row_with_a_missing_or_unreadable_field_stops_with_a_message_naming_it(
    streams: dict[str, DatacubeStream], rows: list[dict[str, t.Any]], field: str, bad: object
) -> None:
    spoiled = dict(rows[0])
    if bad is None:
        del spoiled[field]
    else:
        spoiled[field] = bad
    with pytest.raises(RowError, match=field):
        streams["share_hour"].parse_rows({"list": [*rows[1:], spoiled]}, WINDOW, "wxprop")


@SETTINGS
@given(
    row=hourly_row(days_in),
    hour=st.integers().filter(lambda h: h not in HOURS),
    negative=st.integers(max_value=-1),
    which=st.sampled_from(["ref_hour", "share_count", "share_user"]),
)
def test_impossible_values_stop(
    streams: dict[str, DatacubeStream], row: dict[str, t.Any], hour: int, negative: int, which: str
) -> None:
    row = dict(row)
    row[which] = hour if which == "ref_hour" else negative
    with pytest.raises(RowError, match=which):
        streams["share_hour"].parse_rows({"list": [row]}, WINDOW, "wxprop")


@SETTINGS
@given(
    row=hourly_row(days_in),
    other_count=counts,
)
def test_two_different_rows_for_one_key_stop(
    streams: dict[str, DatacubeStream], row: dict[str, t.Any], other_count: int
) -> None:
    other = dict(row, share_count=other_count)
    if other == row:
        other["share_count"] += 1
    with pytest.raises(RowError, match="two different rows"):
        streams["share_hour"].parse_rows({"list": [row, other]}, WINDOW, "wxprop")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@SETTINGS
@given(body=st.dictionaries(st.sampled_from(["list", "errcode", "x"]), json_values, max_size=3))
def test_any_json_answer_either_parses_into_valid_records_or_raises_row_error(
    streams: dict[str, DatacubeStream], body: dict[str, t.Any]
) -> None:
    for stream in streams.values():
        try:
            records = stream.parse_rows(body, WINDOW, "wxprop")
        except RowError:
            continue
        for record in records:
            assert dt.date.fromisoformat(record["ref_date"]) in WINDOW
            for field in stream.count_fields:
                assert record[field] >= 0


@SETTINGS
@given(rows=st.lists(hourly_row(days_in), max_size=30))
def test_daily_stream_keys_on_date_and_scene(
    streams: dict[str, DatacubeStream], rows: list[dict[str, t.Any]]
) -> None:
    daily: dict[tuple[str, int], dict[str, t.Any]] = {}
    for row in rows:
        daily.setdefault(
            (row["ref_date"], row["share_scene"]), {k: v for k, v in row.items() if k != "ref_hour"}
        )
    records = streams["share_day"].parse_rows({"list": list(daily.values())}, WINDOW, "wxprop")
    assert [(r["ref_date"], r["share_scene"]) for r in records] == sorted(daily)
    assert all("ref_hour" not in r for r in records)


def test_an_undocumented_share_scene_is_loaded_with_one_warning(
    streams: dict[str, DatacubeStream], caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        {
            "ref_date": "2024-05-01",
            "ref_hour": h,
            "share_scene": 7,
            "share_count": 1,
            "share_user": 1,
        }
        for h in (0, 100, 200)
    ]
    records = streams["share_hour"].parse_rows({"list": rows}, WINDOW, "wxprop")
    assert [r["share_scene"] for r in records] == [7, 7, 7]
    assert caplog.text.count("share_scene 7 is not one WeChat documents") == 1
