"""Keeping secrets out of every line the tap writes.

Tokens travel in the URL's query string, and requests, urllib3 and retry libraries quote URLs in
their log lines and exception texts. So redaction happens where every log record is made
(:func:`logging.setLogRecordFactory`), whichever library logs it and at whichever level: each
record's message, arguments and exception text are rendered once and scrubbed of

- every secret the tap has seen this run (app secrets, tokens, what token commands printed), and
- anything shaped like a token or a secret: ``access_token=...`` in URLs, ``"access_token": "..."``
  and ``"secret": "..."`` in JSON.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback

REDACTED = "<redacted>"
_MIN_SECRET_LEN = 6  # shorter strings would blank out ordinary words

_PATTERNS = (
    re.compile(r"(?i)(access_token=)[^&\s'\"<>]+"),
    re.compile(
        r"(?i)(\"(?:access_token|authorizer_access_token|secret|app_secret)\"\s*:\s*\")[^\"]*"
    ),
    re.compile(r"(?i)('(?:access_token|authorizer_access_token|secret|app_secret)'\s*:\s*')[^']*"),
)

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: str | None) -> None:
    """Add ``value`` to the secrets scrubbed from every log line and error text."""
    global _secrets  # noqa: PLW0603 - one registry per process, like the logging module's
    if value and len(value) >= _MIN_SECRET_LEN and value not in _secrets:
        with _lock:
            _secrets = _secrets | {value}


def redact_text(text: str) -> str:
    """Return ``text`` with known secrets and token-shaped values replaced by ``<redacted>``."""
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redacting_factory(
    base: logging._LogRecordFactory,  # type: ignore[name-defined]
) -> logging._LogRecordFactory:  # type: ignore[name-defined]
    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record: logging.LogRecord = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed format: keep the raw text
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.rstrip("\n")
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return record

    factory.redacts_secrets = True  # type: ignore[attr-defined]
    return factory


def install_log_redaction() -> None:
    """Make every log record of this process redacted (idempotent)."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "redacts_secrets", False):
        logging.setLogRecordFactory(_redacting_factory(current))
