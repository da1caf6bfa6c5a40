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
