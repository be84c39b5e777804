"""A loopback receiver for alert tests: a healthchecks ping endpoint that enforces the real ping
API, and a webhook endpoint. Every request is recorded (method, path, body, and how
healthchecks would have read it).

The healthchecks rules are upstream's (healthchecks/healthchecks @29b5ec25, applied in the
same order as its ping view, so a test sees what a user would):

- routes (``hc/api/urls.py:33-46,75-78``): ``/ping/<uuid>`` and ``/ping/<uuid>/``, then
  ``/start``, ``/fail``, ``/log`` or ``/<exit status>``; the slug form
  ``/ping/<ping key>/<slug>[...]``; anything else is 404 (Django's resolver: a ``<uuid:>`` is
  lower-case hex with dashes, ``<int:>`` is ``[0-9]+``, so ``/-1`` and ``/start/`` are 404);
- an unknown check is 404 ``not found``, before anything else is looked at
  (``views.py:188-192``);
- an exit status above 255 is 400 ``invalid url format`` (``views.py:194-195``);
- a ``rid`` that is not a canonical UUID is 400 ``invalid uuid format`` (``views.py:232-236``,
  ``hc/lib/string.py``): the bug of issue 15 (a run id as ``rid``) fails here as it did there;
- the body: only the first ``PING_BODY_LIMIT`` (10,000) bytes are kept, the rest dropped
  without an error (``views.py:211``); a 200 answers ``OK`` with ``Ping-Body-Limit: 10000``;
- HEAD, GET and POST are the documented methods (``http_api.md:13``). Stricter than upstream
  (whose view accepts any method): anything else gets 405, to keep our client honest.

The hosted service's form, ``https://hc-ping.com/<uuid>`` (no ``/ping/``), is served too:
``hosted_healthcheck_url``. The webhook is ``/hook``. ``answer_with`` makes every endpoint fail.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

CHECK_UUID = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
PING_KEY = "fqOOd6-F4MMNuRO1Wqc93w"
SLUG = "ghost-backup"
BODY_LIMIT = 10_000  # healthchecks' PING_BODY_LIMIT default (hc/settings.py:272)

_RID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_SLUG = r"[-a-zA-Z0-9_]+"
_ACTION = r"(?:/(?P<action>start|fail|log|(?P<code>[0-9]+)))?"
_ROUTES = (
    re.compile(rf"^(?P<prefix>/ping|)/(?P<uuid>{_UUID})(?:/|{_ACTION})$"),
    re.compile(rf"^(?P<prefix>/ping|)/(?P<key>{_SLUG})/(?P<slug>{_SLUG}){_ACTION}$"),
)


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and (for pings it accepted) how healthchecks read it.

    ``kind`` is ``success``, ``start``, ``fail``, ``log`` or ``exit`` for an accepted ping,
    ``webhook`` for the webhook, and ``rejected`` for anything answered with an error.
    ``body`` is what was sent; ``stored`` what healthchecks keeps of it (the first 10,000
    bytes).
    """

    method: str
    path: str
    body: str
    status: int = 200
    kind: str = "rejected"
    exit_status: int | None = None
    rid: str | None = None

    @property
    def stored(self) -> str:
        """Return the part of the body healthchecks stores (its first 10,000 bytes)."""
        return self.body.encode()[:BODY_LIMIT].decode("utf-8", "replace")

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def _answer(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if status == 200:
            self.send_header("Ping-Body-Limit", str(BODY_LIMIT))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _record(self, received: Received) -> None:
        with self.server.lock:
            self.server.received.append(received)

    def _request(self) -> None:
        length = int(self.headers.get("Content-Length", "0") or 0)
        raw = self.rfile.read(length) if length else b""
        status, kind, code, rid = self._classify()
        if self.server.status != 200:  # answer_with(): the service is down or refusing
            status, kind = self.server.status, "rejected"
        self._record(Received(self.command, self.path, raw.decode("utf-8", "replace"), status,
                              kind, code, rid))
        self._answer(status, {200: "OK", 400: "invalid url format", 404: "not found",
                              405: "method not allowed"}.get(status, "error"))

    def _classify(self) -> tuple[int, str, int | None, str | None]:
        url = urlsplit(self.path)
        if url.path == "/hook":
            return (200 if self.command == "POST" else 405), "webhook", None, None
        if self.command not in ("HEAD", "GET", "POST"):
            return 405, "rejected", None, None
        match = next((m for r in _ROUTES if (m := r.match(url.path))), None)
        if match is None:
            return 404, "rejected", None, None
        g = match.groupdict()
        if g.get("slug") is not None and g["slug"] != g["slug"].lower():
            return 400, "rejected", None, None  # views.py:255-256
        check = g.get("uuid") or f"{g['key']}/{g['slug']}"
        if check not in (CHECK_UUID, f"{PING_KEY}/{SLUG}"):
            return 404, "rejected", None, None
        code = int(g["code"]) if g.get("code") else None
        if code is not None and code > 255:
            return 400, "rejected", None, None
        rid = parse_qs(url.query).get("rid", [None])[-1]
        if rid is not None and not _RID_RE.match(rid):
            return 400, "rejected", None, rid
        kind = "exit" if code is not None else (g.get("action") or "success")
        return 200, kind, code, rid

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = _request  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scheme = "http"
        if tls is not None:  # (certificate, key): serve HTTPS
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.status = 200


class AlertReceiver:
    """Healthchecks ping endpoint and webhook on 127.0.0.1, in a background thread."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self._server = _Server(tls)
        # A short poll interval makes stop() quick (shutdown waits for one poll).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Return ``http://127.0.0.1:<port>`` (``https://`` when serving TLS)."""
        return f"{self._server.scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def healthcheck_url(self) -> str:
        """Return the check's ping URL as a self-hosted healthchecks shows it (``/ping/<uuid>``)."""
        return f"{self.url}/ping/{CHECK_UUID}"

    @property
    def hosted_healthcheck_url(self) -> str:
        """Return the check's ping URL in hc-ping.com's form (``/<uuid>``, no ``/ping/``)."""
        return f"{self.url}/{CHECK_UUID}"

    @property
    def slug_healthcheck_url(self) -> str:
        """Return the check's slug ping URL (``/ping/<ping key>/<slug>``)."""
        return f"{self.url}/ping/{PING_KEY}/{SLUG}"

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
        return [r.json() for r in self.received if r.kind == "webhook"]

    def pings(self) -> list[Received]:
        """Return every request to the ping endpoint (accepted or not)."""
        return [r for r in self.received if r.path.split("?")[0] != "/hook"]

    def accepted_pings(self) -> list[Received]:
        """Return the pings healthchecks would have accepted (answered 200)."""
        return [r for r in self.pings() if r.status == 200]

    def ping_actions(self) -> list[str]:
        """Return each ping as healthchecks read it: ``start``, ``exit 0``, ``fail``, ``log``,
        ``success``, or ``rejected <status>``; all pings must share one rid (run)."""
        return [(f"exit {p.exit_status}" if p.kind == "exit" else p.kind) if p.status == 200
                else f"rejected {p.status}" for p in self.pings()]

    def bodies(self) -> list[str]:
        """Return every body (for the canary search)."""
        return [r.body for r in self.received]

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
