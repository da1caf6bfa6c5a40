"""tap-wechat-share: WeChat Official Account share analytics as a Singer tap."""

from importlib.metadata import version

__version__ = version("tap-wechat-share")
"""The installed package's version; pyproject.toml is the one place it is set."""
