"""Transitional old names of the token sources, now SDK authenticators in ``authenticators.py``.

Only until ``tap.py`` imports from :mod:`tap_wechat_share.authenticators`; then delete this file.
"""

from tap_wechat_share.authenticators import AccessTokenAuthenticator as TokenProvider
from tap_wechat_share.authenticators import CommandTokenAuthenticator as CommandTokenProvider
from tap_wechat_share.authenticators import ReadyTokenAuthenticator as ReadyTokenProvider
from tap_wechat_share.authenticators import StableTokenAuthenticator as StableTokenProvider

__all__ = ["CommandTokenProvider", "ReadyTokenProvider", "StableTokenProvider", "TokenProvider"]
