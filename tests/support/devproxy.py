"""A loopback credential proxy for tests, the demo and system tests (not for production).

It plays the local Aembit agent: ``GET /credentials/<provider>`` answers
``{"access_key_id", "secret_access_key", "expires_at"}`` (plus ``session_token`` when one is
configured), and it can misbehave on request, so the hostile cases are tested against a real
HTTP server. Keys come from the environment (``GHOST_DEV_PROXY_ACCESS_KEY_ID``,
``GHOST_DEV_PROXY_SECRET_ACCESS_KEY``, optional ``GHOST_DEV_PROXY_SESSION_TOKEN``) or a
0600 JSON file, never from argv.

Control endpoints (loopback only): ``POST /_control/mode`` with ``{"mode": "..."}`` switches
behaviour; ``GET /_control/requests`` lists every credential request seen (time, path,
``X-Request-ID``, ``User-Agent``), the stand-in for Aembit's audit log.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES_HELP = """\
ok                      the contract: 200 with keys valid for --ttl seconds
status:<code>           answer with that HTTP status (401, 403, 404, 500, 503, ...)
fail-then-ok:<n>        answer 500 n times, then behave like ok
retry-after:<secs>      answer 429 with Retry-After: <secs>, then ok
throttled:<secs>        answer 429 with Retry-After: <secs>, forever
reset                   accept the connection, then reset it (RST, no answer)
hang                    accept the connection, never answer
slow-headers:<secs>     wait <secs> before answering ok
trickle[:<secs>]        send headers, then a byte every <secs> (default 2) s
html                    200 with an HTML page
invalid-json            200 with broken JSON
array | string          200 with a JSON array / a JSON string
empty-object            200 with {}
missing:<field>         drop a field from the answer
null:<field>            the field is JSON null
null-string:<field>     the field is the string "null"
empty:<field>           the field is ""
blank:<field>           the field is whitespace
number:<field>          the field is a number
expired                 expires_at in the past
too-soon                expires_at in 30 s
too-far                 expires_at in 30 days
unparseable-expiry      expires_at is "next tuesday"
naive-expiry            expires_at has no timezone
unix-expiry             expires_at as integer Unix seconds (valid)
huge                    a 1 GiB body, streamed (the client must stop reading early)
aembit-unknown          Aembit Edge shape with credentialType Unknown
wrong-keys              valid shape, keys the S3 endpoint does not know
credential-process      200 in AWS credential_process shape (AccessKeyId, ..., Expiration)

Connect timeouts need no mode: see Blackhole (a listener whose backlog is full).
"""


@dataclass
class ProxyState:
    """Mutable state of the dev proxy: keys, behaviour, and the request log."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    ttl_seconds: int = 3600
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keys_payload(self, now: datetime) -> dict[str, Any]:
        """Return the contract answer for ``now``."""
        payload: dict[str, Any] = {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "expires_at": (now + timedelta(seconds=self.ttl_seconds))
            .isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        if self.session_token:
            payload["session_token"] = self.session_token
        return payload


def _mutate(payload: dict[str, Any], how: str, name: str) -> dict[str, Any]:
    out = dict(payload)
    if how == "missing":
        out.pop(name, None)
    else:
        out[name] = {"null": None, "null-string": "null", "empty": "", "blank": "   ",
                     "number": 12345}[how]
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the request log is the audit trail."""

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _hostile(self, name: str, good: dict[str, Any]) -> None:
        """Answers a hostile review sent (each once crashed a run into exit 70)."""
        body = json.dumps(good).encode()
        ctype = "application/json"
        if name == "superscript-expiry":  # "²".isdigit() is True, int("²") raises
            body = json.dumps({**good, "expires_at": "\u00b2"}).encode()
        elif name == "overflow-expiry":  # parses, but overflows datetime in UTC
            body = json.dumps({**good, "expires_at": "9999-12-31T23:59:59-14:00"}).encode()
        elif name == "huge-int-expiry":  # past int()'s 4300-digit limit
            body = body.replace(json.dumps(good["expires_at"]).encode(), b"9" * 5000)
        elif name == "huge-digit-string-expiry":
            body = json.dumps({**good, "expires_at": "9" * 5000}).encode()
        elif name == "deep-nesting":  # RecursionError in json.loads, well under the size cap
            body = body[:-1] + b', "x": ' + b"[" * 20000 + b"]" * 20000 + b"}"
        elif name == "lone-surrogate":  # a str that cannot be encoded into rclone's environment
            body = body.replace(b'"access_key_id": "', b'"access_key_id": "\\ud800', 1)
        elif name == "quoting-credential-type":  # its value must not reach any message
            body = json.dumps({"credentialType": "LEAKME-credtype", "data": {}}).encode()
        elif name == "quoting-content-type":
            ctype = "text/x-LEAKME-ctype"
        self._send(200, body, ctype)

    def do_POST(self) -> None:
        """Handle ``/_control/mode``."""
        state = self.server.state
        if self.path != "/_control/mode":
            self._json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length", "0") or 0)
        try:
            mode = json.loads(self.rfile.read(length))["mode"]
        except (ValueError, KeyError, TypeError):
            self._json(400, {"error": "expected {\"mode\": ...}"})
            return
        with state.lock:
            state.mode = str(mode)
            state.counter = 0
        self._json(200, {"mode": state.mode})

    def do_GET(self) -> None:
        """Handle credential requests and ``/_control/requests``."""
        state = self.server.state
        if self.path == "/_control/requests":
            with state.lock:
                self._json(200, list(state.requests))
            return
        if not self.path.startswith("/credentials/"):
            self._json(404, {"error": "no such provider"})
            return
        now = self.server.clock()
        with state.lock:
            state.counter += 1
            count = state.counter
            mode = state.mode
            state.requests.append({
                "time": now.isoformat(timespec="milliseconds"),
                "monotonic": time.monotonic(),
                "path": self.path,
                "request_id": self.headers.get("X-Request-ID"),
                "user_agent": self.headers.get("User-Agent"),
                "mode": mode,
            })
        self._answer(mode, count, now)

    def _answer(self, mode: str, count: int, now: datetime) -> None:
        state = self.server.state
        kind, _, arg = mode.partition(":")
        good = state.keys_payload(now)
        if kind == "ok":
            self._json(200, good)
        elif kind == "status":
            self._json(int(arg), {"error": f"mode {mode}"})
        elif kind == "fail-then-ok":
            if count <= int(arg):
                self._json(500, {"error": "transient"})
            else:
                self._json(200, good)
        elif kind == "retry-after":
            if count == 1:
                self._json(429, {"error": "slow down"}, headers={"Retry-After": arg or "1"})
            else:
                self._json(200, good)
        elif kind == "throttled":
            self._json(429, {"error": "slow down"}, headers={"Retry-After": arg or "1"})
        elif kind == "reset":
            # SO_LINGER with a zero timeout turns close() into a RST.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif kind == "hang":
            time.sleep(3600)
        elif kind == "slow-headers":
            time.sleep(float(arg))
            self._json(200, good)
        elif kind == "trickle":
            body = json.dumps(good).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(float(arg or 2))
            except OSError:
                return
        elif kind == "html":
            self._send(200, b"<html><body>Login required</body></html>", "text/html")
        elif kind == "invalid-json":
            self._send(200, b'{"access_key_id": "AK', "application/json")
        elif kind == "array":
            self._json(200, [good])
        elif kind == "string":
            self._json(200, "access granted")
        elif kind == "empty-object":
            self._json(200, {})
        elif kind in ("missing", "null", "null-string", "empty", "blank", "number"):
            self._json(200, _mutate(good, kind, arg))
        elif kind in ("expired", "too-soon", "too-far"):
            delta = {"expired": -60, "too-soon": 30, "too-far": 30 * 86400}[kind]
            good["expires_at"] = (now + timedelta(seconds=delta)).isoformat()
            self._json(200, good)
        elif kind == "unparseable-expiry":
            good["expires_at"] = "next tuesday"
            self._json(200, good)
        elif kind == "naive-expiry":
            good["expires_at"] = (now + timedelta(seconds=state.ttl_seconds)).replace(
                tzinfo=None).isoformat(timespec="seconds")
            self._json(200, good)
        elif kind == "unix-expiry":
            good["expires_at"] = int(now.timestamp()) + state.ttl_seconds
            self._json(200, good)
        elif kind == "huge":
            chunk = b" " * (1 << 20)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if arg != "chunked":
                self.send_header("Content-Length", str(1024 * len(chunk)))
            self.end_headers()
            try:
                for _ in range(1024):
                    self.wfile.write(chunk)
            except OSError:
                return
        elif kind == "aembit-unknown":
            self._json(200, {"credentialType": "Unknown", "expiresAt": None, "data": {}})
        elif kind == "hostile":
            self._hostile(arg, good)
        elif kind == "wrong-keys":
            good["access_key_id"] = "WRONGKEY" + state.access_key_id[8:]
            good["secret_access_key"] = "wrong-" + state.secret_access_key[6:]
            self._json(200, good)
        elif kind == "credential-process":
            process = {"Version": 1, "AccessKeyId": good["access_key_id"],
                       "SecretAccessKey": good["secret_access_key"],
                       "Expiration": good["expires_at"]}
            if "session_token" in good:
                process["SessionToken"] = good["session_token"]
            self._json(200, process)
        else:
            self._json(500, {"error": f"unknown dev-proxy mode {mode}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: ProxyState,
                 clock: Callable[[], datetime]) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.clock = clock


class DevProxy:
    """A running dev proxy (in a background thread), for tests and the demo."""

    def __init__(self, state: ProxyState, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.state = state
        self._server = _Server((host, port), state, clock)
        # A short poll interval makes stop() quick (shutdown waits for one poll).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def port(self) -> int:
        """Return the bound port."""
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """Return ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, provider: str = "r2-backup") -> str:
        """Return the credential URL for ``provider``."""
        return f"{self.base_url}/credentials/{provider}"

    def start(self) -> DevProxy:
        """Start serving in the background; return self."""
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


class Blackhole:
    """A loopback listener that never completes a handshake: connecting to it times out.

    Its accept queue is filled at once and never drained; Linux then drops further SYNs
    (tcp_conn_request: listen overflow), so a client sees a connect timeout, the way an
    agent that is up but wedged, or a firewall that drops packets, looks from outside.
    """

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self._fillers: list[socket.socket] = []
        for _ in range(4):  # backlog 0 still queues one; a few more fill the SYN queue
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self._listener.getsockname())
            self._fillers.append(filler)
        time.sleep(0.2)

    @property
    def url(self) -> str:
        """Return a credential URL pointing at the black hole."""
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/credentials/r2-backup"

    def close(self) -> None:
        """Close every socket."""
        for sock in [*self._fillers, self._listener]:
            sock.close()
