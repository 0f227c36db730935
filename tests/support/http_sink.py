"""A recording HTTP server on a free loopback port (a thread): webhook receivers and OTLP sinks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


# Answers a POST: (status, body, content type).
Answer = Callable[[Request], tuple[int, bytes, str]]


def _ok(request: Request) -> tuple[int, bytes, str]:
    return 200, b"{}", "application/json"


class HttpSink:
    def __init__(self, answer: Answer = _ok) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                status, payload, media = answer(request)
                with sink.lock:
                    sink.requests.append(request)
                self.send_response(status)
                self.send_header("content-type", media)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def subscribe(client: httpx.AsyncClient, sink: HttpSink, event_types: list[str]) -> str:
    """Register `sink`/hook as the tenant's webhook endpoint; returns its signing secret."""
    created = await client.post("/v1/webhook-endpoints", json={"url": f"{sink.url}/hook", "event_types": event_types})
    assert created.status_code == 201, created.text
    secret: str = created.json()["secret"]
    return secret
