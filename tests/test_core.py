"""The SDK's standard tap tests (singer_sdk.testing), against the emulator."""

from __future__ import annotations

import atexit

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_wechat_share.tap import TapWeChatShare
from tests.conftest import APP_ID, APP_SECRET, TODAY
from tests.emulator import WeChatEmulator

# The SDK builds its test class from a config at import time, so this emulator lives as long as
# the test session.
_EMULATOR = WeChatEmulator({APP_ID: APP_SECRET}, today=TODAY).start()
atexit.register(_EMULATOR.stop)

SAMPLE_CONFIG = {
    "app_id": APP_ID,
    "app_secret": APP_SECRET,
    "start_date": "2026-10-20",
    "end_date": "2026-11-05",
    "api_url": _EMULATOR.url,
}

TestTapWeChatShare = get_tap_test_class(
    tap_class=TapWeChatShare,
    config=SAMPLE_CONFIG,
    suite_config=SuiteConfig(max_records_limit=None),
)


def test_the_standard_stream_tests_cover_every_stream() -> None:
    """Each per-stream test of the SDK's suite runs for the four streams (SDK 0.54's ``params``)."""
    per_stream = {
        name: {param.id for param in params}
        for name, params in TestTapWeChatShare.params.items()
        if name.startswith("test_tap_stream_")
    }
    assert per_stream
    four = {"share_hour", "share_day", "article_share", "biz_share"}
    for name, ids in per_stream.items():
        assert {i.split(".", 1)[0] for i in ids} == four, name
