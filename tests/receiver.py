"""A loopback HTTP receiver for alert tests: records every request (method, path, body).

It stands in for healthchecks.io and a webhook endpoint; ``answer_with`` makes it fail.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    method: str
    path: str
    body: str

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        with self.server.lock:
            self.server.received.append(Received(self.command, self.path, body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _record  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.status = 200


class AlertReceiver:
    """Webhook and healthcheck endpoint on 127.0.0.1, in a background thread."""

    def __init__(self) -> None:
        self._server = _Server()
        # A short poll interval makes stop() quick (shutdown waits for one poll).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Return ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def healthcheck_url(self) -> str:
        """Return a healthchecks.io-style ping URL on this receiver."""
        return f"{self.url}/hc/3f1c"

    @property
    def webhook_url(self) -> str:
        """Return a webhook URL on this receiver."""
        return f"{self.url}/hook"

    def answer_with(self, status: int) -> None:
        """Answer every later request with ``status``."""
        self._server.status = status

    @property
    def received(self) -> list[Received]:
        """Return a copy of every request so far."""
        with self._server.lock:
            return list(self._server.received)

    def webhooks(self) -> list[dict[str, Any]]:
        """Return the webhook bodies, parsed."""
        return [r.json() for r in self.received if r.path == "/hook"]

    def pings(self) -> list[Received]:
        """Return the healthcheck pings."""
        return [r for r in self.received if r.path.startswith("/hc/")]

    def bodies(self) -> list[str]:
        """Return every body (for the canary search)."""
        return [r.body for r in self.received]

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
