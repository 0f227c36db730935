"""Log lines name URLs by scheme, host and path only: no query string, fragment or credentials."""

from __future__ import annotations

import logging

from kassa.shared.redaction import RedactUrls, redact_urls, url_for_log


def test_a_url_for_the_log_keeps_scheme_host_port_and_path_only() -> None:
    assert url_for_log("https://hooks.example:8443/in/x?token=s3cret#frag") == "https://hooks.example:8443/in/x"
    assert url_for_log("http://user:pw@[::1]:9/a?b=1") == "http://[::1]:9/a"
    assert url_for_log("http://x:notaport/") == "<unparseable url>"


def test_every_url_inside_a_message_is_redacted() -> None:
    line = 'HTTP Request: POST http://127.0.0.1:9/h?token=abc "HTTP/1.1 200 OK" then HTTPS://b.example/?k=v'
    assert redact_urls(line) == 'HTTP Request: POST http://127.0.0.1:9/h "HTTP/1.1 200 OK" then https://b.example/'


def test_the_logging_filter_redacts_the_formatted_message_of_a_record() -> None:
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s", ("POST", "http://h/p?token=t"), None
    )
    assert RedactUrls().filter(record)
    assert record.getMessage() == "HTTP Request: POST http://h/p"
    assert "token" not in record.getMessage()
