"""Loopback fakes of the published credential APIs the sources talk to (tests only).

- :class:`AembitEdgeFake`: Aembit's Edge API (``/edge/v1/auth``, ``/edge/v1/credentials``)
  following the schemas in ``shared/reference/aembit-edge-api``; like the real one it answers
  200 with ``credentialType: "Unknown"`` when no policy matches.
- :class:`CloudflareFake`: ``POST /accounts/{id}/r2/temp-access-credentials`` with Cloudflare's
  envelope (``success``, ``errors``, ``result``) and no expiry in the answer.
- :class:`InjectingProxy`: the credential proxy that adds the parent API token on the way out,
  as a reverse proxy (base URL pointed at it) or an explicit HTTP proxy (absolute-form).

Each records what it saw (never a secret) as the stand-in for the provider's audit log, and can
be told to misbehave with ``mode``.
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Reply = tuple[int, bytes]
App = Callable[[str, str, Mapping[str, str], bytes], Reply]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def do_GET(self) -> None:
        """Serve a GET."""
        self._handle()

    def do_POST(self) -> None:
        """Serve a POST."""
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length", "0") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload = self.server.app(self.command, self.path, headers, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: App) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app


class Loopback:
    """A threaded HTTP server on 127.0.0.1 serving one ``app``."""

    def __init__(self, app: App) -> None:
        self._server = _Server(app)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """Return ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _json(status: int, obj: object) -> Reply:
    return status, json.dumps(obj).encode()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class AembitEdgeFake:
    """Aembit's Edge API for one client workload, one server workload and one policy."""

    client_id: str
    identity_token: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    server_host: str
    server_port: int
    ttl_seconds: int = 1800
    mode: str = "ok"
    bearer: str = field(default_factory=lambda: "aembit-bearer-" + secrets.token_urlsafe(18))
    events: list[dict[str, Any]] = field(default_factory=list)

    def app(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Serve one request."""
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return _json(400, {"error": "bad json"})
        if method == "POST" and path == "/edge/v1/auth":
            return self._auth(request)
        if method == "POST" and path == "/edge/v1/credentials":
            return self._credentials(request, headers)
        return _json(404, {"error": "not found"})

    def _auth(self, request: dict[str, Any]) -> Reply:
        proof = (request.get("client") or {}).get("oidc", {}).get("identityToken")
        ok = request.get("clientId") == self.client_id and proof == self.identity_token
        self.events.append({"event": "auth", "clientId": request.get("clientId"),
                            "attested": ok, "time": _iso(datetime.now(UTC))})
        if self.mode == "auth-401" or not ok:
            return _json(401, {"error": "attestation failed"})
        if self.mode == "auth-500":
            return _json(500, {"error": "internal"})
        if self.mode == "auth-garbage":
            return 200, b"<html>maintenance</html>"
        return _json(200, {"accessToken": self.bearer, "tokenType": "Bearer",
                           "expiresIn": 3600, "refreshToken": None})

    def _credentials(self, request: dict[str, Any], headers: Mapping[str, str]) -> Reply:
        if headers.get("authorization") != f"Bearer {self.bearer}":
            return _json(401, {"error": "bad bearer"})
        server = request.get("server") or {}
        matched = (server.get("host"), server.get("port")) == (self.server_host, self.server_port)
        now = datetime.now(UTC)
        data = {"awsAccessKeyId": self.access_key_id,
                "awsSecretAccessKey": self.secret_access_key,
                "awsSessionToken": self.session_token}
        answer: dict[str, Any] = {"credentialType": "AwsStsFederation",
                                  "expiresAt": _iso(now + timedelta(seconds=self.ttl_seconds)),
                                  "data": data}
        if self.mode == "unknown" or not matched:
            answer = {"credentialType": "Unknown", "expiresAt": None, "data": {}}
        elif self.mode == "empty-data":
            answer["data"] = {}
        elif self.mode == "null-data":
            answer["data"] = dict.fromkeys(data)
        elif self.mode == "null-expiry":
            answer["expiresAt"] = None
        elif self.mode == "expired":
            answer["expiresAt"] = _iso(now - timedelta(seconds=60))
        elif self.mode == "api-key":
            answer = {"credentialType": "ApiKey", "expiresAt": answer["expiresAt"],
                      "data": {"apiKey": self.secret_access_key}}
        elif self.mode == "creds-403":
            return _json(403, {"error": "forbidden"})
        self.events.append({"event": "access.credential", "server": server,
                            "credentialType": answer["credentialType"], "time": _iso(now),
                            "request_id": headers.get("x-request-id")})
        return _json(200, answer)


@dataclass
class CloudflareFake:
    """Cloudflare's R2 temp-access-credentials endpoint for one account and parent token."""

    account_id: str
    parent_token: str
    parent_access_key_id: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Serve one request."""
        if method != "POST" or path != f"/accounts/{self.account_id}/r2/temp-access-credentials":
            return _error(404, 7003, "Could not route to path")
        request = json.loads(body or b"{}")
        authorised = headers.get("authorization") == f"Bearer {self.parent_token}"
        self.requests.append({"body": request, "authorised": authorised,
                              "request_id": headers.get("x-request-id")})
        if not authorised:
            return _error(403, 10000, "Authentication error")
        if request.get("bucket") != self.bucket:
            return _error(404, 10006, "The specified bucket does not exist.")
        if (request.get("permission") != "object-read-write"
                or request.get("parentAccessKeyId") != self.parent_access_key_id):
            return _error(400, 10025, "Invalid permission or parent access key")
        result = {"accessKeyId": self.access_key_id, "secretAccessKey": self.secret_access_key,
                  "sessionToken": self.session_token}
        if self.mode == "success-false":
            return _json(200, {"success": False, "errors": [{"code": 10001, "message":
                               "Unable to mint credentials"}], "messages": [], "result": None})
        if self.mode == "no-session-token":
            del result["sessionToken"]
        if self.mode == "status-500":
            return _error(500, 10002, "Internal error")
        if self.mode == "garbage":
            return 200, b"upstream connect error"
        return _json(200, {"success": True, "errors": [], "messages": [], "result": result})


def _error(status: int, code: int, message: str) -> Reply:
    return _json(status, {"success": False, "errors": [{"code": code, "message": message}],
                          "messages": [], "result": None})


@dataclass
class InjectingProxy:
    """A credential proxy that adds ``Authorization: Bearer <token>`` and forwards upstream."""

    upstream: str
    token: str
    seen: list[dict[str, Any]] = field(default_factory=list)

    def app(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Forward one request (origin-form or absolute-form path) with the token added."""
        target = urlsplit(path)
        origin_path = target.path + (f"?{target.query}" if target.query else "")
        self.seen.append({"path": origin_path, "absolute_form": bool(target.scheme),
                          "arrived_with_authorization": "authorization" in headers})
        forwarded = {k: v for k, v in headers.items()
                     if k in ("content-type", "accept", "user-agent", "x-request-id")}
        forwarded["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.upstream + origin_path, data=body,
                                         headers=forwarded, method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
