"""Property-based tests of how answers are checked and turned into records."""

from __future__ import annotations

import datetime as dt
import re
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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


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
        st.text(max_size=8).filter(lambda s: not is_integer_like(s)),
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


INT_FIELDS = ("ref_hour", "share_scene", "share_count", "share_user")
DELETE = object()
"""A spoiled field's 'value' that means: the field is left out of the row."""
ODD_VALUES: dict[str, list[object]] = {
    "ref_date": ["2024-W18-3", "2024-5-1", "20240501", "2024-02-30", "2024/05/01", 20240501],
    "ref_hour": ["--5", "²", "1.5", "", "12 3", 1.5, True, 1250, -100, 2400],
    "share_scene": ["--5", "²", "1.5", "", "0x10", 1.5, False, [1], 2**63, -(2**63) - 1],
    "share_count": ["--5", "²", "1e3", " ", "-3", 2.0, True, -1, 2**63],
    "share_user": ["--5", "²", "1.5", "twelve", "-0.0", 3.5, False, -7, "99999999999999999999"],
}
"""Values the tap must refuse, one list per field: malformed, unreadable or impossible."""


def is_integer_like(value: object) -> bool:
    """An int (not a bool), or a string of ASCII digits with an optional minus sign."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (
        isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value) is not None
    )


def is_date(value: object) -> bool:
    """A string ``YYYY-MM-DD`` naming a real day."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_acceptable(field: str, value: object) -> bool:
    """Whether the tap must accept ``value`` for ``field`` (the rules of the README)."""
    if value is DELETE:
        return False
    if field == "ref_date":
        return is_date(value)
    if not is_integer_like(value):
        return False
    number = int(t.cast("int | str", value))
    if not -(2**63) <= number <= 2**63 - 1:  # beyond a BIGINT column
        return False
    if field == "ref_hour":
        return number in HOURS
    return field == "share_scene" or number >= 0


@st.composite
def answers(
    draw: st.DrawFn,
) -> tuple[str, list[object], list[dict[str, t.Any]] | str]:
    """An answer's rows, mostly valid, and what parsing it must give.

    Returns the stream, the rows, and either the expected records (a valid answer: three in
    four) or the words the error must contain (the spoiled field, 'not an object' or 'two
    different rows'). Valid answers mix rows in the window (some with counts as strings of
    digits), rows outside it, and exact copies.
    """
    stream = draw(st.sampled_from(["share_hour", "share_day"]))
    hourly = stream == "share_hour"
    key_fields = ("ref_date", "ref_hour", "share_scene") if hourly else ("ref_date", "share_scene")
    rnd = draw(st.randoms(use_true_random=False))

    def rows_on(
        day: st.SearchStrategy[str], min_size: int, max_size: int
    ) -> list[dict[str, t.Any]]:
        rows = draw(st.lists(hourly_row(day), min_size=min_size, max_size=max_size))
        for row in rows:
            if not hourly:
                del row["ref_hour"]
        return rows

    unique: dict[tuple[t.Any, ...], dict[str, t.Any]] = {}
    for row in rows_on(days_in, 1, 15):
        unique.setdefault(tuple(row[f] for f in key_fields), row)
    valid = list(unique.values())
    expected = [{"app_id": "wxprop", **row} for _, row in sorted(unique.items())]
    copies = [dict(row) for row in valid[: rnd.randint(0, 3)]]
    rows: list[object] = [
        {k: str(v) if k in INT_FIELDS and rnd.random() < 0.2 else v for k, v in row.items()}
        for row in valid + rows_on(days_out, 0, 3) + copies
    ]
    rnd.shuffle(rows)
    if rnd.random() < 0.75:  # three answers in four are valid
        return stream, rows, expected

    # One spoiled row, anywhere: a field left out or made unreadable or impossible, a row that
    # is no object, or a second, different row for a key already answered.
    row = draw(hourly_row(st.one_of(days_in, days_out)))
    if not hourly:
        del row["ref_hour"]
    what = draw(st.sampled_from([*row, "not an object", "two different rows"]))
    rows.insert(rnd.randint(0, len(rows)), spoil(draw, row, what, valid, rows))
    return stream, rows, what


def spoil(
    draw: st.DrawFn,
    row: dict[str, t.Any],
    what: str,
    valid: list[dict[str, t.Any]],
    rows: list[object],
) -> object:
    """Return the spoiled row ``what`` names, made from ``row`` (or a valid row's key)."""
    if what == "not an object":
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.none())))
    if what == "two different rows":
        if not valid:
            valid.append(dict(row, ref_date=WINDOW.begin.isoformat()))
            rows.append(valid[-1])
        return dict(valid[0], share_count=int(valid[0]["share_count"]) + 1)
    value = draw(
        st.one_of(
            st.just(DELETE),
            st.sampled_from(ODD_VALUES[what]),
            json_values.filter(lambda value: not is_acceptable(what, value)),
        )
    )
    if value is DELETE:
        del row[what]
    else:
        row[what] = value
    return row


@settings(SETTINGS, max_examples=150)
@given(case=answers())
def test_mostly_valid_answers_give_exactly_their_records_and_spoiled_ones_stop(
    streams: dict[str, DatacubeStream],
    case: tuple[str, list[object], list[dict[str, t.Any]] | str],
) -> None:
    stream, rows, outcome = case
    parse = streams[stream].parse_rows
    if isinstance(outcome, str):
        with pytest.raises(RowError, match=re.escape(outcome)):
            parse({"list": rows}, WINDOW, "wxprop")
        return
    # Valid: each row in the window once, sorted by key, integers, strays and copies dropped.
    assert parse({"list": rows}, WINDOW, "wxprop") == outcome


@pytest.mark.parametrize(
    ("field", "value"),
    [(field, value) for field, values in ODD_VALUES.items() for value in values],
)
def test_each_odd_value_stops_with_a_message_naming_its_field(
    streams: dict[str, DatacubeStream], field: str, value: object
) -> None:
    row = {
        "ref_date": "2024-05-02",
        "ref_hour": 100,
        "share_scene": 1,
        "share_count": 3,
        "share_user": 2,
        field: value,
    }
    with pytest.raises(RowError, match=field):
        streams["share_hour"].parse_rows({"list": [row]}, WINDOW, "wxprop")


@SETTINGS
@given(body=st.dictionaries(st.sampled_from(["list", "errcode", "x"]), json_values, max_size=3))
def test_any_json_answer_raises_nothing_but_row_error(
    streams: dict[str, DatacubeStream], body: dict[str, t.Any]
) -> None:
    # Robustness only: such bodies almost never parse (the test above checks the records).
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


@pytest.mark.parametrize("rows", ["x", None, {"a": 1}])
def test_an_answer_whose_list_is_no_list_stops_naming_it(
    streams: dict[str, DatacubeStream], rows: object
) -> None:
    with pytest.raises(RowError) as caught:
        streams["share_hour"].parse_rows({"list": rows}, WINDOW, "wxprop", "wxprop share_hour x")
    assert str(caught.value) == (
        f"wxprop share_hour x: WeChat's answer has no list of rows (list: {str(rows)[:40]!r})"
    )


def test_rows_dropped_are_counted_in_one_warning_each(
    streams: dict[str, DatacubeStream], caplog: pytest.LogCaptureFixture
) -> None:
    row = {"ref_date": "2024-05-02", "ref_hour": 0, "share_scene": 1}
    row |= {"share_count": 3, "share_user": 2}
    strays = [dict(row, ref_date=day) for day in ("2021-05-02", "2021-05-02", "2024-05-09")]
    rows = [row, dict(row), dict(row), *strays]
    records = streams["share_hour"].parse_rows({"list": rows}, WINDOW, "wxprop", "w")
    assert records == [{"app_id": "wxprop", **row}]
    messages = [r.getMessage() for r in caplog.records]
    assert "w: dropped 3 row(s) dated outside the requested days (2021-05-02, 2024-05-09)" in (
        messages
    )
    assert "w: dropped 2 exact duplicate row(s)" in messages


@pytest.mark.parametrize(("row", "kind"), [(["a"], "list"), (5, "int"), ("x", "str")])
def test_a_row_that_is_not_an_object_stops_saying_what_it_is(
    streams: dict[str, DatacubeStream], row: object, kind: str
) -> None:
    with pytest.raises(RowError) as raised:
        streams["share_hour"].parse_rows({"list": [row]}, WINDOW, "wxprop", "wxprop share_hour")
    assert str(raised.value) == (
        f"wxprop share_hour: a row is a {kind}, not an object; row: {row!r}"
    )
