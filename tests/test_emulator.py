"""Tests of the WeChat API emulator itself (tests/emulator.py), over real HTTP on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import errno
import http.client
import json
import math
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests import emulator as emulator_module
from tests.emulator import (
    DAILY_PATH,
    HOURLY_PATH,
    LEGACY_TOKEN_PATH,
    STABLE_TOKEN_PATH,
    Call,
    Fault,
    WeChatEmulator,
    china_today,
    served_summary,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

APP = "wxtest0000000001"
APPSECRET = "test-secret-one"
APP2 = "wxtest0000000002"
APPSECRET2 = "test-secret-two"
TODAY = dt.date(2024, 3, 15)
YESTERDAY = TODAY - dt.timedelta(days=1)
TIMEOUT = 5.0
HOURLY_KEYS = {"ref_date", "ref_hour", "share_scene", "share_count", "share_user"}
DAILY_KEYS = {"ref_date", "share_scene", "share_count", "share_user"}


@pytest.fixture
def emulator() -> Iterator[WeChatEmulator]:
    with WeChatEmulator({APP: APPSECRET, APP2: APPSECRET2}, today=TODAY) as emu:
        yield emu


@pytest.fixture
def token(emulator: WeChatEmulator) -> str:
    return emulator.issue_token(APP)


def stable_token(
    emu: WeChatEmulator, app: str = APP, appsecret: str = APPSECRET, *, force: bool = False
) -> dict[str, Any]:
    body = {
        "grant_type": "client_credential",
        "appid": app,
        "secret": appsecret,
        "force_refresh": force,
    }
    response = requests.post(emu.url + STABLE_TOKEN_PATH, json=body, timeout=TIMEOUT)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def datacube(
    emu: WeChatEmulator,
    token: str | None,
    begin: dt.date | str,
    end: dt.date | str | None = None,
    *,
    path: str = HOURLY_PATH,
) -> requests.Response:
    end = begin if end is None else end
    body = {"begin_date": str(begin), "end_date": str(end)}
    params = {} if token is None else {"access_token": token}
    return requests.post(emu.url + path, params=params, json=body, timeout=TIMEOUT)


def impatient_hourly(emu: WeChatEmulator, token: str, day: dt.date, timeout: float) -> None:
    """An hourly request that gives up after ``timeout`` seconds (it must time out)."""
    body = {"begin_date": str(day), "end_date": str(day)}
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            emu.url + HOURLY_PATH, params={"access_token": token}, json=body, timeout=timeout
        )


def rows_of(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200
    payload = response.json()
    assert "errcode" not in payload, payload
    rows: list[dict[str, Any]] = payload["list"]
    return rows


def errcode_of(response: requests.Response) -> int:
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    errcode: int = response.json()["errcode"]
    return errcode


def causes(error: BaseException) -> list[BaseException]:
    """``error``, the exceptions it was raised from, and the exceptions in their args."""
    found: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.append(current)
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [link for link in (current.__cause__, current.__context__) if link is not None]
    return found


def busy_day(emu: WeChatEmulator, app: str = APP) -> dt.date:
    """The latest day up to yesterday with at least 10 hourly rows."""
    day = YESTERDAY
    while len(emu.hourly_rows(app, day)) < 10:
        day -= dt.timedelta(days=1)
    return day


def empty_day(emu: WeChatEmulator, app: str = APP) -> dt.date:
    day = YESTERDAY
    while emu.hourly_rows(app, day):
        day -= dt.timedelta(days=1)
    return day


# --------------------------------------------------------------------------- tokens


def test_stable_token_returns_the_same_token_while_valid(emulator: WeChatEmulator) -> None:
    first = stable_token(emulator)
    second = stable_token(emulator)
    other = stable_token(emulator, APP2, APPSECRET2)
    assert first["expires_in"] == 7200
    assert first["access_token"] == second["access_token"]
    assert other["access_token"] != first["access_token"]
    assert len(first["access_token"]) >= 32
    assert rows_of(datacube(emulator, first["access_token"], busy_day(emulator)))


def test_force_refresh_gives_a_new_token_and_invalidates_the_previous(
    emulator: WeChatEmulator,
) -> None:
    day = busy_day(emulator)
    old = stable_token(emulator)["access_token"]
    new = stable_token(emulator, force=True)["access_token"]
    assert new != old
    assert errcode_of(datacube(emulator, old, day)) == 40001
    assert rows_of(datacube(emulator, new, day))
    assert stable_token(emulator)["access_token"] == new


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"grant_type": "client_credential", "appid": APP, "secret": "wrong"}, 40125),
        ({"grant_type": "client_credential", "appid": "wxunknown", "secret": APPSECRET}, 40013),
        ({"grant_type": "password", "appid": APP, "secret": APPSECRET}, 40002),
        ({"appid": APP, "secret": APPSECRET}, 40002),
        ({"grant_type": "client_credential", "secret": APPSECRET}, 41002),
        ({"grant_type": "client_credential", "appid": APP}, 41004),
        ({"grant_type": "client_credential", "appid": APP, "secret": APPSECRET2}, 40125),
    ],
)
def test_stable_token_refuses_bad_credentials(
    emulator: WeChatEmulator, body: dict[str, str], errcode: int
) -> None:
    response = requests.post(emulator.url + STABLE_TOKEN_PATH, json=body, timeout=TIMEOUT)
    assert errcode_of(response) == errcode
    assert "access_token" not in response.json()
    assert emulator.calls_to(STABLE_TOKEN_PATH)[0].outcome == f"errcode {errcode}"


def test_stable_token_refuses_a_body_that_is_not_json(emulator: WeChatEmulator) -> None:
    response = requests.post(emulator.url + STABLE_TOKEN_PATH, data=b"appid=x", timeout=TIMEOUT)
    assert errcode_of(response) == 47001


def test_legacy_token_endpoint_is_recorded_and_refused(emulator: WeChatEmulator) -> None:
    params = {"grant_type": "client_credential", "appid": APP, "secret": APPSECRET}
    response = requests.get(emulator.url + LEGACY_TOKEN_PATH, params=params, timeout=TIMEOUT)
    assert errcode_of(response) == 40164
    assert "not in whitelist" in response.json()["errmsg"]
    assert "access_token" not in response.json()
    [call] = emulator.calls_to(LEGACY_TOKEN_PATH)
    assert call.app_id == APP
    assert call.outcome == "errcode 40164"


def test_bad_or_missing_token_is_40001(emulator: WeChatEmulator) -> None:
    day = busy_day(emulator)
    assert errcode_of(datacube(emulator, None, day)) == 40001
    assert errcode_of(datacube(emulator, "not-a-token", day)) == 40001
    response = datacube(emulator, "not-a-token", day, path=DAILY_PATH)
    assert errcode_of(response) == 40001
    assert response.json()["errmsg"].startswith("invalid credential")


def test_rotate_token_invalidates_every_token_of_the_app(emulator: WeChatEmulator) -> None:
    day = busy_day(emulator)
    issued = emulator.issue_token(APP)
    stable = stable_token(emulator)["access_token"]
    other_app = emulator.issue_token(APP2)
    assert issued != stable
    assert rows_of(datacube(emulator, issued, day))
    emulator.rotate_token(APP)
    assert errcode_of(datacube(emulator, issued, day)) == 40001
    assert errcode_of(datacube(emulator, stable, day)) == 40001
    assert rows_of(datacube(emulator, other_app, day)) == emulator.hourly_rows(APP2, day)
    renewed = stable_token(emulator)["access_token"]
    assert renewed not in {issued, stable}
    assert rows_of(datacube(emulator, renewed, day))


# --------------------------------------------------------------------------- data


def test_hourly_answer_serves_the_day_rows(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    response = datacube(emulator, token, day)
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Content-Length"]) == len(response.content)
    rows = rows_of(response)
    assert rows == emulator.hourly_rows(APP, day)
    assert rows == sorted(rows, key=lambda row: (row["ref_hour"], row["share_scene"]))
    for row in rows:
        assert set(row) == HOURLY_KEYS
        assert row["ref_date"] == day.isoformat()
        assert row["ref_hour"] in range(0, 2400, 100)
        assert row["share_scene"] in {1, 2, 255}
        assert 1 <= row["share_user"] <= row["share_count"]


def test_daily_answer_serves_seven_days_in_day_order(emulator: WeChatEmulator, token: str) -> None:
    begin = YESTERDAY - dt.timedelta(days=6)
    rows = rows_of(datacube(emulator, token, begin, YESTERDAY, path=DAILY_PATH))
    expected = [
        row for offset in range(7) for row in emulator.daily_rows(APP, begin + dt.timedelta(offset))
    ]
    assert rows == expected
    assert [row["ref_date"] for row in rows] == sorted(row["ref_date"] for row in rows)
    assert {row["ref_date"] for row in rows} <= {
        (begin + dt.timedelta(offset)).isoformat() for offset in range(7)
    }
    for row in rows:
        assert set(row) == DAILY_KEYS


def test_daily_rows_agree_with_hourly_rows_over_30_days(emulator: WeChatEmulator) -> None:
    empty_days = 0
    incomplete_hours = 0
    night_rows = day_rows = 0
    for offset in range(30):
        day = YESTERDAY - dt.timedelta(days=offset)
        hourly = emulator.hourly_rows(APP, day)
        daily = emulator.daily_rows(APP, day)
        if not hourly:
            empty_days += 1
            assert daily == []
            continue
        by_scene: dict[int, list[dict[str, Any]]] = defaultdict(list)
        by_hour: dict[int, int] = defaultdict(int)
        for row in hourly:
            assert int(row["share_count"]) > 0
            by_scene[int(row["share_scene"])].append(row)
            by_hour[int(row["ref_hour"])] += 1
        assert [row["share_scene"] for row in daily] == sorted(by_scene)
        for row in daily:
            scene_rows = by_scene[int(row["share_scene"])]
            assert row["share_count"] == sum(hour["share_count"] for hour in scene_rows)
            assert max(hour["share_user"] for hour in scene_rows) <= int(row["share_user"])
            assert int(row["share_user"]) <= sum(hour["share_user"] for hour in scene_rows)
        incomplete_hours += sum(1 for count in by_hour.values() if count < 3)
        night_rows += sum(by_hour[hour] for hour in (100, 200, 300, 400))
        day_rows += sum(by_hour[hour] for hour in (1000, 1100, 1200, 1300))
    assert 1 <= empty_days <= 12
    assert incomplete_hours > 0
    assert night_rows * 4 < day_rows


def test_data_is_deterministic_per_seed_and_app() -> None:
    day = dt.date(2023, 6, 1)
    days = [day + dt.timedelta(offset) for offset in range(10)]
    first = WeChatEmulator(seed="s")
    again = WeChatEmulator(seed="s")
    other_seed = WeChatEmulator(seed="t")
    assert [first.hourly_rows(APP, d) for d in days] == [again.hourly_rows(APP, d) for d in days]
    assert [first.daily_rows(APP, d) for d in days] == [again.daily_rows(APP, d) for d in days]
    assert [first.hourly_rows(APP, d) for d in days] != [first.hourly_rows(APP2, d) for d in days]
    assert [first.hourly_rows(APP, d) for d in days] != [
        other_seed.hourly_rows(APP, d) for d in days
    ]


def test_rows_helpers_return_copies() -> None:
    emu = WeChatEmulator()
    day = dt.date(2023, 6, 1)
    while not emu.hourly_rows(APP, day):
        day += dt.timedelta(days=1)
    emu.hourly_rows(APP, day)[0]["share_count"] = -1
    emu.daily_rows(APP, day)[0]["share_count"] = -1
    assert emu.hourly_rows(APP, day)[0]["share_count"] != -1
    assert emu.daily_rows(APP, day)[0]["share_count"] != -1


def test_generation_is_deterministic_across_emulators() -> None:
    # Was a timed test (< 1 s for 3 years): timings belong in the benchmarks, not in tests.
    days = [dt.date(2021, 1, 1) + dt.timedelta(offset) for offset in range(0, 1095, 37)]
    first, second = WeChatEmulator(), WeChatEmulator()
    assert [first.hourly_rows(APP, d) for d in days] == [second.hourly_rows(APP, d) for d in days]
    assert [first.daily_rows(APP, d) for d in days] == [second.daily_rows(APP, d) for d in days]
    assert any(first.hourly_rows(APP, d) for d in days)


# --------------------------------------------------------------------------- date rules


@pytest.mark.parametrize(
    ("path", "begin", "end"),
    [
        (HOURLY_PATH, YESTERDAY - dt.timedelta(days=1), YESTERDAY),  # 2 days > 1
        (DAILY_PATH, YESTERDAY - dt.timedelta(days=7), YESTERDAY),  # 8 days > 7
        (HOURLY_PATH, TODAY, TODAY),  # end_date after yesterday
        (DAILY_PATH, YESTERDAY, TODAY),
        (DAILY_PATH, YESTERDAY, YESTERDAY - dt.timedelta(days=1)),  # begin after end
        (HOURLY_PATH, dt.date(2014, 11, 30), dt.date(2014, 11, 30)),  # before 2014-12-01
    ],
)
def test_date_range_errors(
    emulator: WeChatEmulator, token: str, path: str, begin: dt.date, end: dt.date
) -> None:
    response = datacube(emulator, token, begin, end, path=path)
    assert errcode_of(response) == 61501
    assert response.json()["errmsg"] == "date range error"


def test_date_range_limits_are_inclusive(emulator: WeChatEmulator, token: str) -> None:
    first = dt.date(2014, 12, 1)
    assert rows_of(datacube(emulator, token, first)) == emulator.hourly_rows(APP, first)
    assert isinstance(rows_of(datacube(emulator, token, YESTERDAY)), list)
    week = datacube(emulator, token, YESTERDAY - dt.timedelta(days=6), YESTERDAY, path=DAILY_PATH)
    assert isinstance(rows_of(week), list)


@pytest.mark.parametrize(
    "body",
    [
        b'{"begin_date": "2024/03/01", "end_date": "2024/03/01"}',
        b'{"begin_date": "2024-3-1", "end_date": "2024-3-1"}',
        b'{"begin_date": "2024-02-30", "end_date": "2024-02-30"}',
        b'{"begin_date": "2024-03-01"}',
        b'{"begin_date": 20240301, "end_date": 20240301}',
        b"begin_date=2024-03-01",
        b"",
    ],
)
def test_date_format_errors(emulator: WeChatEmulator, token: str, body: bytes) -> None:
    response = requests.post(
        emulator.url + HOURLY_PATH, params={"access_token": token}, data=body, timeout=TIMEOUT
    )
    assert errcode_of(response) == 61500


def test_default_today_is_the_china_date(monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulator's clock is frozen at TODAY: the test cannot straddle China's midnight.
    monkeypatch.setattr(emulator_module, "china_today", lambda: TODAY)
    with WeChatEmulator({APP: APPSECRET}) as emu:
        assert emu.today == TODAY
        token = emu.issue_token(APP)
        assert isinstance(rows_of(datacube(emu, token, YESTERDAY)), list)
        assert errcode_of(datacube(emu, token, TODAY)) == 61501


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 15:59 UTC is 23:59 in China; 16:00 UTC is already the next day there.
        (dt.datetime(2024, 3, 14, 15, 59, tzinfo=dt.timezone.utc), dt.date(2024, 3, 14)),
        (dt.datetime(2024, 3, 14, 16, 0, tzinfo=dt.timezone.utc), dt.date(2024, 3, 15)),
    ],
)
def test_china_today_turns_at_china_midnight(now: dt.datetime, expected: dt.date) -> None:
    assert china_today(now) == expected


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_datacube_requires_post(emulator: WeChatEmulator, token: str, method: str) -> None:
    response = requests.request(
        method, emulator.url + HOURLY_PATH, params={"access_token": token}, timeout=TIMEOUT
    )
    assert errcode_of(response) == 43002
    assert emulator.calls[0].outcome == "errcode 43002"


def test_unknown_path_is_404_and_recorded(emulator: WeChatEmulator) -> None:
    response = requests.post(emulator.url + "/datacube/getusersummary", json={}, timeout=TIMEOUT)
    assert response.status_code == 404
    [call] = emulator.calls
    assert call.path == "/datacube/getusersummary"
    assert call.outcome == "http 404"


# --------------------------------------------------------------------------- faults


def test_errcode_fault_applies_times_then_is_used_up(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("errcode", path=HOURLY_PATH, times=2))
    emulator.add_fault(Fault("errcode", path=DAILY_PATH, errcode=45009, errmsg="quota"))
    for _ in range(2):
        response = datacube(emulator, token, day)
        assert response.json() == {"errcode": -1, "errmsg": "system error"}
    assert rows_of(datacube(emulator, token, day)) == emulator.hourly_rows(APP, day)
    assert datacube(emulator, token, day, path=DAILY_PATH).json() == {
        "errcode": 45009,
        "errmsg": "quota",
    }
    assert rows_of(datacube(emulator, token, day, path=DAILY_PATH))
    outcomes = [call.outcome for call in emulator.calls]
    assert outcomes == ["errcode -1", "errcode -1", "ok", "errcode 45009", "ok"]


def test_http_fault_answers_an_html_error_page(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("http", status=502))
    emulator.add_fault(Fault("http", status=503))
    response = datacube(emulator, token, day)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text
    assert datacube(emulator, token, day).status_code == 503
    assert rows_of(datacube(emulator, token, day))
    assert [call.outcome for call in emulator.calls] == ["http 502", "http 503", "ok"]


def test_html_fault_answers_a_proxy_page_with_status_200(
    emulator: WeChatEmulator, token: str
) -> None:
    emulator.add_fault(Fault("html"))
    response = datacube(emulator, token, busy_day(emulator))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match=r"Expecting value"):
        response.json()
    assert emulator.calls[0].outcome == "html"


def test_reset_fault_resets_the_connection(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("reset", path=HOURLY_PATH))
    with pytest.raises(requests.ConnectionError) as excinfo:
        datacube(emulator, token, day)
    # A real reset (RST), not a clean close (http.client's RemoteDisconnected has no errno).
    assert any(
        isinstance(error, ConnectionResetError) and error.errno == errno.ECONNRESET
        for error in causes(excinfo.value)
    )
    assert rows_of(datacube(emulator, token, day))
    assert [call.outcome for call in emulator.calls] == ["reset", "ok"]


def test_delay_fault_delays_then_answers_normally(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("delay", delay=0.6))
    emulator.add_fault(Fault("delay", delay=0.2))
    impatient_hourly(emulator, token, day, 0.15)
    started = time.monotonic()
    assert rows_of(datacube(emulator, token, day)) == emulator.hourly_rows(APP, day)
    assert time.monotonic() - started >= 0.2
    assert emulator.wait_idle(2.0)
    first, second = emulator.calls
    assert first.finished - first.started >= 0.6
    assert first.outcome in {"ok", "aborted"}
    assert second.outcome == "ok"


def test_rotate_fault_rotates_the_token_mid_run(emulator: WeChatEmulator) -> None:
    day = busy_day(emulator)
    old = stable_token(emulator)["access_token"]
    emulator.add_fault(Fault("rotate", path=HOURLY_PATH))
    assert errcode_of(datacube(emulator, old, day)) == 40001
    assert errcode_of(datacube(emulator, old, day)) == 40001  # stays invalid
    assert emulator.calls_to(HOURLY_PATH)[0].outcome == "errcode 40001"
    new = stable_token(emulator)["access_token"]
    assert new != old
    assert rows_of(datacube(emulator, new, day))


def test_rotate_fault_respects_the_app_filter(emulator: WeChatEmulator) -> None:
    day = busy_day(emulator)
    mine = emulator.issue_token(APP)
    other = emulator.issue_token(APP2)
    emulator.add_fault(Fault("rotate", app_id=APP))
    assert rows_of(datacube(emulator, other, day)) == emulator.hourly_rows(APP2, day)
    assert errcode_of(datacube(emulator, mine, day)) == 40001
    assert errcode_of(datacube(emulator, mine, day)) == 40001
    assert rows_of(datacube(emulator, other, day)) == emulator.hourly_rows(APP2, day)


@pytest.mark.parametrize("path", [HOURLY_PATH, DAILY_PATH])
def test_stray_fault_adds_two_rows_three_years_early(
    emulator: WeChatEmulator, token: str, path: str
) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("stray", path=path))
    rows = rows_of(datacube(emulator, token, day, path=path))
    clean = emulator.hourly_rows(APP, day) if path == HOURLY_PATH else emulator.daily_rows(APP, day)
    assert rows[2:] == clean
    assert [row["ref_date"] for row in rows[:2]] == [day.replace(year=day.year - 3).isoformat()] * 2
    keys = HOURLY_KEYS if path == HOURLY_PATH else DAILY_KEYS
    assert all(set(row) == keys for row in rows[:2])
    assert emulator.calls[0].outcome == "ok stray"


def test_duplicate_fault_repeats_the_first_row(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("duplicate", times=2))
    rows = rows_of(datacube(emulator, token, day))
    assert rows[:-1] == emulator.hourly_rows(APP, day)
    assert rows[-1] == rows[0]
    assert rows_of(datacube(emulator, token, empty_day(emulator))) == []


def test_bad_hour_fault_adds_an_impossible_hour(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("bad_hour"))
    rows = rows_of(datacube(emulator, token, day))
    assert rows[:-1] == emulator.hourly_rows(APP, day)
    assert rows[-1]["ref_hour"] == 1250
    assert set(rows[-1]) == HOURLY_KEYS


def test_negative_fault_adds_a_negative_count(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("negative"))
    rows = rows_of(datacube(emulator, token, day))
    assert rows[:-1] == emulator.hourly_rows(APP, day)
    assert rows[-1]["share_count"] == -3
    assert set(rows[-1]) == HOURLY_KEYS


def test_missing_key_fault_adds_a_row_without_scene(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("missing_key", path=DAILY_PATH))
    rows = rows_of(datacube(emulator, token, day, path=DAILY_PATH))
    assert rows[:-1] == emulator.daily_rows(APP, day)
    assert set(rows[-1]) == DAILY_KEYS - {"share_scene"}


def test_digit_strings_fault_gives_counts_as_strings(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("digit_strings"))
    rows = rows_of(datacube(emulator, token, day))
    expected = emulator.hourly_rows(APP, day)
    for row in expected:
        row["share_count"] = str(row["share_count"])
        row["share_user"] = str(row["share_user"])
    assert rows == expected


def test_no_list_fault_answers_an_empty_object(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("no_list"))
    response = datacube(emulator, token, day)
    assert response.status_code == 200
    assert response.json() == {}
    assert rows_of(datacube(emulator, token, day))
    assert [call.outcome for call in emulator.calls] == ["no_list", "ok"]


def test_data_faults_wait_for_a_successful_answer(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("duplicate"))
    assert errcode_of(datacube(emulator, "bad-token", day)) == 40001
    rows = rows_of(datacube(emulator, token, day))
    assert len(rows) == len(emulator.hourly_rows(APP, day)) + 1


def test_fault_filters_on_day_app_and_path(emulator: WeChatEmulator) -> None:
    day = busy_day(emulator)
    other_day = day - dt.timedelta(days=1)
    mine = emulator.issue_token(APP)
    other = emulator.issue_token(APP2)
    emulator.add_fault(Fault("errcode", path=HOURLY_PATH, day=day.isoformat(), app_id=APP))
    assert isinstance(rows_of(datacube(emulator, mine, other_day)), list)  # other day
    assert isinstance(rows_of(datacube(emulator, other, day)), list)  # other app
    assert isinstance(rows_of(datacube(emulator, mine, day, path=DAILY_PATH)), list)  # other path
    assert errcode_of(datacube(emulator, mine, day)) == -1
    assert isinstance(rows_of(datacube(emulator, mine, day)), list)  # used up


def test_fault_on_stable_token_matches_the_body_appid(emulator: WeChatEmulator) -> None:
    emulator.add_fault(Fault("errcode", path=STABLE_TOKEN_PATH, app_id=APP2, errcode=45009))
    assert "access_token" in stable_token(emulator)
    assert stable_token(emulator, APP2, APPSECRET2)["errcode"] == 45009
    assert "access_token" in stable_token(emulator, APP2, APPSECRET2)


def test_forever_fault_and_clear_faults(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    emulator.add_fault(Fault("http", status=500, times=-1))
    assert [datacube(emulator, token, day).status_code for _ in range(4)] == [500] * 4
    emulator.clear_faults()
    assert rows_of(datacube(emulator, token, day))


def test_fault_rejects_unknown_kind_and_bad_times() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="times"):
        Fault("errcode", times=0)


# --------------------------------------------------------------------------- serving


def test_parallel_requests_are_all_answered_concurrently(
    emulator: WeChatEmulator, token: str
) -> None:
    emulator.latency = 0.3
    days = [YESTERDAY - dt.timedelta(days=offset) for offset in range(8)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda day: rows_of(datacube(emulator, token, day)), days))
    elapsed = time.monotonic() - started
    assert answers == [emulator.hourly_rows(APP, day) for day in days]
    assert elapsed < 8 * 0.3 / 2
    calls = emulator.calls
    assert len(calls) == 8
    assert all(call.finished - call.started >= 0.3 for call in calls)
    assert max(call.started for call in calls) < min(call.finished for call in calls)


def test_keep_alive_serves_several_requests_on_one_connection(
    emulator: WeChatEmulator, token: str
) -> None:
    day = busy_day(emulator)
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=TIMEOUT)
    try:
        body = json.dumps({"begin_date": str(day), "end_date": str(day)})
        sockets = []
        for _ in range(3):
            connection.request("POST", f"{HOURLY_PATH}?access_token={token}", body)
            response = connection.getresponse()
            payload = response.read()
            assert response.status == 200
            assert int(response.getheader("Content-Length", "-1")) == len(payload)
            assert json.loads(payload)["list"] == emulator.hourly_rows(APP, day)
            sockets.append(connection.sock)
        assert sockets[0] is not None
        assert all(sock is sockets[0] for sock in sockets)
    finally:
        connection.close()


def test_calls_record_every_request(emulator: WeChatEmulator, token: str) -> None:
    day = busy_day(emulator)
    stable_token(emulator, appsecret="wrong")
    datacube(emulator, token, day)
    datacube(emulator, token, day - dt.timedelta(days=6), day, path=DAILY_PATH)
    emulator.add_fault(Fault("reset"))
    with pytest.raises(requests.ConnectionError):
        datacube(emulator, "nope", day)
    calls = emulator.calls
    assert [call.path for call in calls] == [
        STABLE_TOKEN_PATH,
        HOURLY_PATH,
        DAILY_PATH,
        HOURLY_PATH,
    ]
    assert [call.app_id for call in calls] == [APP, APP, APP, None]
    assert [call.outcome for call in calls] == ["errcode 40125", "ok", "ok", "reset"]
    assert calls[1].token == token
    assert calls[0].token is None
    assert (calls[2].begin_date, calls[2].end_date) == (str(day - dt.timedelta(days=6)), str(day))
    assert all(call.started <= call.finished for call in calls)
    assert [call.started for call in calls] == sorted(call.started for call in calls)
    assert emulator.calls_to(DAILY_PATH) == [calls[2]]
    assert token not in repr(calls[1])


def test_calls_is_a_snapshot_and_reset_calls_forgets(emulator: WeChatEmulator) -> None:
    stable_token(emulator)
    snapshot = emulator.calls
    snapshot.clear()
    snapshot_again = emulator.calls
    snapshot_again[0].outcome = "tampered"
    assert [call.outcome for call in emulator.calls] == ["ok"]
    emulator.reset_calls()
    assert emulator.calls == []
    assert emulator.calls_to(STABLE_TOKEN_PATH) == []


def test_pending_calls_are_recorded_on_arrival(emulator: WeChatEmulator, token: str) -> None:
    emulator.add_fault(Fault("delay", delay=0.4))
    day = busy_day(emulator)
    thread = threading.Thread(target=datacube, args=(emulator, token, day))
    thread.start()
    deadline = time.monotonic() + 2
    while not emulator.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    [pending] = emulator.calls
    assert pending.outcome == "pending"
    assert math.isnan(pending.finished)
    thread.join()
    assert emulator.wait_idle(2.0)
    [done] = emulator.calls
    assert done.outcome == "ok"


def test_nothing_is_printed(
    emulator: WeChatEmulator, token: str, capfd: pytest.CaptureFixture[str]
) -> None:
    day = busy_day(emulator)
    stable = stable_token(emulator)["access_token"]
    datacube(emulator, token, day)
    requests.get(emulator.url + "/nowhere", params={"access_token": token}, timeout=TIMEOUT)
    emulator.add_fault(Fault("reset"))
    with pytest.raises(requests.ConnectionError):
        datacube(emulator, token, day)
    emulator.add_fault(Fault("delay", delay=0.3))
    impatient_hourly(emulator, token, day, 0.05)
    assert emulator.wait_idle(2.0)
    emulator.stop()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert token not in out + err
    assert stable not in out + err


def test_start_stop_lifecycle() -> None:
    emu = WeChatEmulator({APP: APPSECRET}, today=TODAY)
    with pytest.raises(RuntimeError):
        _ = emu.url
    assert emu.start() is emu
    try:
        assert emu.url.startswith("http://127.0.0.1:")
        with pytest.raises(RuntimeError):
            emu.start()
        url = emu.url
        assert "access_token" in stable_token(emu)
    finally:
        emu.stop()
    with pytest.raises(RuntimeError):
        _ = emu.url
    with pytest.raises(requests.ConnectionError):
        requests.post(url + STABLE_TOKEN_PATH, json={}, timeout=TIMEOUT)
    emu.stop()  # a second stop does nothing


def test_call_is_a_plain_dataclass() -> None:
    hidden = "a-token-that-must-not-show"
    call = Call(HOURLY_PATH, APP, "2024-01-01", "2024-01-01", hidden, "ok", 1.0, 2.0)
    assert call.token == hidden
    assert hidden not in repr(call)


# --------------------------------------------------------------------------- command line


def _emulator_process() -> subprocess.Popen[str]:
    """``python tests/emulator.py`` knowing APP and APP2, on a free port."""
    script = Path(__file__).with_name("emulator.py")
    command = [sys.executable, str(script), "--port", "0", "--app", f"{APP}:{APPSECRET}"]
    command += ["--app", f"{APP2}:{APPSECRET2}", "--today", TODAY.isoformat(), "--latency", "0.01"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _listening_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=10), "the emulator did not start"
    line = process.stdout.readline()
    assert line.startswith("emulator listening on http://127.0.0.1:")
    url = line.split()[-1]
    assert not url.endswith(":0")
    return url


def _ask(url: str, path: str, token: str, begin: dt.date, end: dt.date) -> requests.Response:
    return requests.post(
        url + path,
        params={"access_token": token},
        json={"begin_date": str(begin), "end_date": str(end)},
        timeout=TIMEOUT,
    )


def _token(url: str, app: str, secret: str) -> str:
    body = {"grant_type": "client_credential", "appid": app, "secret": secret}
    token: str = requests.post(url + STABLE_TOKEN_PATH, json=body, timeout=TIMEOUT).json()[
        "access_token"
    ]
    return token


def test_command_line_serves_until_sigterm_then_tells_its_calls() -> None:
    with _emulator_process() as process:
        try:
            url = _listening_url(process)
            token = _token(url, APP, APPSECRET)
            assert isinstance(rows_of(_ask(url, HOURLY_PATH, token, YESTERDAY, YESTERDAY)), list)
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.read().splitlines() == [
            "emulator served 2 calls, per endpoint and app:",
            f"  /cgi-bin/stable_token       {APP}  1 call",
            (
                f"  /datacube/getusersharehour  {APP}  1 call, 1 day {YESTERDAY}..{YESTERDAY}, "
                "each once"
            ),
        ]
        assert process.stderr.read() == ""


def test_command_line_tells_its_calls_after_ctrl_c() -> None:
    """Per endpoint and app: the token calls, the days answered, a day answered twice, failures."""
    week = YESTERDAY - dt.timedelta(days=6)
    with _emulator_process() as process:
        try:
            url = _listening_url(process)
            first, second = _token(url, APP, APPSECRET), _token(url, APP2, APPSECRET2)
            for day in (week, YESTERDAY, YESTERDAY):
                _ask(url, HOURLY_PATH, first, day, day).raise_for_status()
            _ask(url, DAILY_PATH, first, week, YESTERDAY).raise_for_status()
            _ask(url, DAILY_PATH, second, week, YESTERDAY).raise_for_status()
            _ask(url, DAILY_PATH, second, YESTERDAY, TODAY).raise_for_status()  # 61501: today
        finally:
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        lines = process.stdout.read().splitlines()
    assert lines == [
        "emulator served 8 calls, per endpoint and app:",
        f"  /cgi-bin/stable_token       {APP}  1 call",
        f"  /cgi-bin/stable_token       {APP2}  1 call",
        f"  /datacube/getusershare      {APP}  1 call, 7 days {week}..{YESTERDAY}, each once",
        (
            f"  /datacube/getusershare      {APP2}  2 calls (1 not answered with data), 7 days "
            f"{week}..{YESTERDAY}, each once"
        ),
        (
            f"  /datacube/getusersharehour  {APP}  3 calls, 2 days {week}..{YESTERDAY}, "
            f"answered more than once: {YESTERDAY} x2"
        ),
    ]


def test_served_summary_of_no_calls() -> None:
    assert served_summary([]) == ["emulator served no calls"]
