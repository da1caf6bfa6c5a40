"""tap-wechat-share: WeChat Official Account share analytics as a Singer tap."""
