"""Bad settings end at once, before any API call, with one line naming the setting."""

from __future__ import annotations

import datetime as dt
import typing as t
import uuid

import pytest

from tap_wechat_share.redact import redact_text
from tap_wechat_share.tap import TapWeChatShare, check_config
from tests.conftest import APP_ID, APP_SECRET, bookmark, run_tap, sync

if t.TYPE_CHECKING:
    from pathlib import Path

    from tests.emulator import WeChatEmulator


def settings_errors(config: dict[str, t.Any]) -> list[str]:
    return check_config(config)[1]


GOOD: dict[str, t.Any] = {"app_id": "wx1", "app_secret": "s" * 16, "start_date": "2024-05-01"}


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        (
            {"start_date": "2024-13-01"},
            ["start_date: '2024-13-01' is not a date; write it as YYYY-MM-DD"],
        ),
        (
            {"start_date": "01/05/2024"},
            ["start_date: '01/05/2024' is not a date; write it as YYYY-MM-DD"],
        ),
        ({"start_date": 20240501}, ["start_date: 20240501 is not a date; write it as YYYY-MM-DD"]),
        (
            # Python 3.11's fromisoformat reads this ISO week date; 3.10's does not.
            {"start_date": "2024-W18-3"},
            ["start_date: '2024-W18-3' is not a date; write it as YYYY-MM-DD"],
        ),
        (
            {"end_date": "2024-5-1"},
            ["end_date: '2024-5-1' is not a date; write it as YYYY-MM-DD, or leave it out"],
        ),
        (
            {"end_date": "2024-04-30"},
            ["start_date 2024-05-01 is after end_date 2024-04-30; swap or correct them"],
        ),
        (
            {"lookback_days": -1},
            ["lookback_days: -1 is not allowed; give a whole number of at least 0"],
        ),
        (
            {"lookback_days": "3"},
            ["lookback_days: '3' is not allowed; give a whole number of at least 0"],
        ),
        (
            {"max_concurrent_requests": 0},
            ["max_concurrent_requests: 0 is not allowed; give a whole number from 1 to 32"],
        ),
        (
            {"max_concurrent_requests": 500},
            ["max_concurrent_requests: 500 is not allowed; give a whole number from 1 to 32"],
        ),
        ({"max_tries": 0}, ["max_tries: 0 is not allowed; give a whole number of at least 1"]),
        ({"request_timeout": 0}, ["request_timeout: 0 is not allowed; give seconds, above 0"]),
        (
            {"access_token_command_timeout": 0},
            ["access_token_command_timeout: 0 is not allowed; give seconds, above 0"],
        ),
        (
            {"state_message_interval": -1},
            ["state_message_interval: -1 is not allowed; give seconds, 0 or more"],
        ),
        (
            {"api_url": "api.weixin.qq.com"},
            ["api_url: 'api.weixin.qq.com' is not an http(s) URL; e.g. https://api.weixin.qq.com"],
        ),
        (
            {"app_secret": None},
            [
                (
                    "app_id wx1: give one of app_secret, access_token or access_token_command (the "
                    "account's credentials), or a top-level access_token_command for every account"
                )
            ],
        ),
        (
            {"access_token": "t" * 20},
            ["app_id wx1: give only one of app_secret, access_token, not several"],
        ),
        ({"app_id": None}, ["app_id: required (the Official Account's AppID), or give accounts"]),
        ({"start_date": None}, ["start_date: required, the first day to read as YYYY-MM-DD"]),
        (
            {"accounts": [{"app_id": "wx2", "access_token": "t" * 20}]},
            [
                (
                    "accounts is given, so app_id, app_secret must not be: put each account's "
                    "app_id and credentials in the list (a top-level access_token_command may "
                    "serve them all)"
                )
            ],
        ),
        (
            {"batch_config": {"encoding": {"format": "jsonl"}}},
            [
                (
                    "batch_config: this tap does not write BATCH messages (its bookmarks move per "
                    "day, and a STATE must never pass days whose rows are not yet delivered); "
                    "remove batch_config, records are written as RECORD messages"
                )
            ],
        ),
        (
            {"shard_count": 3, "shard_index": 3},
            ["shard_index: 3 is not allowed; give a whole number from 0 to 2"],
        ),
        (
            {"shard_count": 2, "shard_index": True},
            ["shard_index: True is not allowed; give a whole number from 0 to 1"],
        ),
        ({"shard_count": 0}, ["shard_count: 0 is not allowed; give a whole number of at least 1"]),
    ],
)
def test_each_bad_setting_gives_one_line_naming_it_and_what_to_do(
    change: dict[str, t.Any], errors: list[str]
) -> None:
    config = {k: v for k, v in (GOOD | change).items() if v is not None}
    assert settings_errors(config) == errors


def test_a_start_date_after_the_latest_published_day_is_named_with_bad_accounts_too() -> None:
    after = (
        "start_date 2026-11-29 is after the latest day WeChat has published (2026-11-28, China "
        "time: yesterday after 08:00 there); give an earlier start_date, or run later"
    )
    latest = dt.date(2026, 11, 28)
    assert check_config(GOOD | {"start_date": "2026-11-29"}, latest)[1] == [after]
    assert check_config({"start_date": "2026-11-29", "accounts": [5]}, latest)[1] == [
        "accounts[0]: must be an object with app_id and a credential",
        after,
    ]
    assert check_config(GOOD | {"state_message_interval": 0}, latest)[1] == []


def test_good_settings_have_no_errors() -> None:
    assert settings_errors(GOOD) == []
    assert settings_errors(GOOD | {"end_date": "2024-05-01", "lookback_days": 0}) == []


@pytest.mark.parametrize(
    ("accounts", "named"),
    [
        ([{"app_secret": "s" * 16}], "accounts[0]: needs an app_id"),
        ([{"app_id": "wx2"}], "accounts[0] (wx2): give one of"),
        (
            [{"app_id": "wx2", "app_secret": "s" * 16, "access_token_command": "echo x"}],
            "accounts[0] (wx2): give only one of app_secret, access_token_command",
        ),
        (
            [
                {"app_id": "wx2", "access_token": "t" * 9},
                {"app_id": "wx2", "access_token": "u" * 9},
            ],
            "accounts[1]: app_id wx2 is listed twice",
        ),
    ],
)
def test_account_list_errors(accounts: list[dict[str, t.Any]], named: str) -> None:
    config = {"start_date": "2024-05-01", "accounts": accounts}
    assert any(named in error for error in settings_errors(config))


@pytest.mark.parametrize(
    ("config", "errors"),
    [
        (
            {"accounts": [{"app_id": "wx2", "access_token": "t" * 9}], "accounts_file": "a.csv"},
            ["accounts and accounts_file are both given; keep one of them"],
        ),
        (
            {"accounts_file": "a.csv", "app_secret": "s" * 16},
            [
                (
                    "accounts_file is given, so app_secret must not be: put each account's "
                    "app_id and credentials in the list (a top-level access_token_command may "
                    "serve them all)"
                )
            ],
        ),
        (
            {"accounts": [{"app_id": "wx 2", "access_token": "t" * 9}]},
            ["accounts[0]: app_id 'wx 2' has spaces; give the AppID alone"],
        ),
        (
            {"accounts": [{"app_id": "wx2", "access_token": 12345678}]},
            ["accounts[0] (wx2): access_token must be text"],
        ),
    ],
)
def test_how_accounts_are_given_is_checked_line_by_line(
    config: dict[str, t.Any], errors: list[str]
) -> None:
    assert settings_errors({"start_date": "2024-05-01", **config}) == errors


def test_credentials_in_an_accounts_list_are_registered_for_redaction() -> None:
    # New on every run: the registry is per process, and a mutation run forks its tests from a
    # process that has run them all once already.
    secret = f"listed-{uuid.uuid4().hex}"
    settings_errors(
        {"start_date": "2024-05-01", "accounts": [{"app_id": "wx2", "app_secret": secret}]}
    )
    assert redact_text(f"x {secret} y") == "x <redacted> y"


def test_cli_rejects_bad_settings_before_any_call_without_traceback(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    config = {
        "app_id": APP_ID,
        "app_secret": APP_SECRET,
        "start_date": "2026-11-10",
        "end_date": "2026-11-01",
        "lookback_days": -2,
        "api_url": emulator.url,
    }
    out = run_tap(config, tmp_path)
    assert out.exit_code != 0
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    error_lines = [line for line in out.stderr.splitlines() if "ERROR" in line]
    assert any("start_date 2026-11-10 is after end_date 2026-11-01" in line for line in error_lines)
    assert any("lookback_days: -2 is not allowed" in line for line in error_lines)
    assert emulator.calls == []
    assert APP_SECRET not in out.stderr


def test_start_date_before_wechat_data_is_clamped_with_a_warning(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    out = sync(
        config
        | {"start_date": "2014-11-29", "end_date": "2014-12-02", "max_concurrent_requests": 1}
    )
    assert out.exit_code == 0
    assert [c.begin_date for c in emulator.calls_to("/datacube/getusersharehour")] == [
        "2014-12-01",
        "2014-12-02",
    ]
    assert "start_date 2014-11-29 is before WeChat's data begins; reading from 2014-12-01" in [
        r.getMessage() for r in caplog.records
    ]
    assert bookmark(out.final_state, "share_hour") == "2014-12-02"


def test_settings_come_from_environment_variables(
    emulator: WeChatEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAP_WECHAT_SHARE_APP_ID", APP_ID)
    monkeypatch.setenv("TAP_WECHAT_SHARE_APP_SECRET", APP_SECRET)
    monkeypatch.setenv("TAP_WECHAT_SHARE_START_DATE", "2026-11-01")
    monkeypatch.setenv("TAP_WECHAT_SHARE_END_DATE", "2026-11-02")
    monkeypatch.setenv("TAP_WECHAT_SHARE_API_URL", emulator.url)
    tap = TapWeChatShare(config=None, parse_env_config=True, validate_config=True)
    assert tap.config["app_id"] == APP_ID
    assert tap.run.last_day.isoformat() == "2026-11-02"
    out = run_tap({}, tmp_path, extra_args=("--config=ENV",))
    assert out.exit_code == 0, out.stderr
    assert {r["ref_date"] for r in out.records("share_hour")} <= {"2026-11-01", "2026-11-02"}
    assert len(emulator.calls_to("/datacube/getusersharehour")) == 2


def test_every_credential_is_a_secret_setting_at_the_top_level_and_in_accounts() -> None:
    # Meltano keeps secret settings out of meltano.yml and hides them in `meltano config`.
    properties = TapWeChatShare.config_jsonschema["properties"]
    secret = {"type": ["string", "null"], "secret": True, "writeOnly": True}
    item = properties["accounts"]["items"]
    for where in (properties, item["properties"]):
        for name in ("app_secret", "access_token", "access_token_command"):
            assert {k: v for k, v in where[name].items() if k != "description"} == secret
            assert where[name]["description"] == properties[name]["description"]
    assert [name for name, p in properties.items() if p.get("secret")] == [
        "app_secret",
        "access_token",
        "access_token_command",
        "accounts",
    ]
    assert (item["required"], item["additionalProperties"]) == (["app_id"], False)
