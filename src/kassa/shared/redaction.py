"""Keeping secrets out of log lines: URLs are logged with scheme, host and path only.

A webhook URL may carry a token in its query string (`https://hooks.example/in?token=...`) or,
if someone got one past validation, credentials in its authority; neither belongs in a log.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["RedactUrls", "redact_urls", "url_for_log"]

# An http(s) URL inside free text: up to the next whitespace or quote.
_URL_IN_TEXT = re.compile(r"""\bhttps?://[^\s"'<>]+""", re.IGNORECASE)


def url_for_log(url: str) -> str:
    """`scheme://host[:port]/path` of `url`: no user info, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    netloc = (f"[{host}]" if ":" in host else host) + ("" if port is None else f":{port}")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact_urls(text: str) -> str:
    """`text` with every http(s) URL in it reduced by `url_for_log`."""
    return _URL_IN_TEXT.sub(lambda m: url_for_log(m.group(0)), text)


class RedactUrls(logging.Filter):
    """A logging filter that applies `redact_urls` to the formatted message of each record
    (for loggers of libraries that log full URLs, such as httpx's request line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_urls(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
