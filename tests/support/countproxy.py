"""A loopback proxy that counts S3 requests by class, in front of ``rclone serve s3``.

For the request-count smoke test and ``make bench`` (not shipped). Every request is forwarded
unchanged, the ``Host`` header included, so SigV4 signatures stay valid and the endpoint
behind still enforces its keys. Classes: ``LIST`` (GET on a bucket, or with ``list-type``),
``HEAD``, ``GET`` (an object), ``PUT``, ``PUT-part`` (multipart, ``uploadId``), ``POST``,
``DELETE``; R2 bills LIST/PUT/POST as Class A and HEAD/GET as Class B.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                  "upgrade"})
CLASS_A = ("LIST", "PUT", "PUT-part", "POST")
CLASS_B = ("HEAD", "GET")


def classify_request(method: str, target: str) -> str:
    """Return the class of one S3 request (``GET /bucket?list-type=2`` -> ``LIST``)."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    segments = [s for s in parts.path.split("/") if s]
    if method == "GET" and (len(segments) <= 1 or "list-type" in query):
        return "LIST"
    if method == "PUT" and "uploadId" in query:
        return "PUT-part"
    return method


class CountingProxy:
    """A threaded HTTP proxy on 127.0.0.1 that counts what passes through to ``upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _upstream(self) -> http.client.HTTPConnection:
                conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
                    local.conn = conn
                return conn

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.counts[classify_request(self.command, self.path)] += 1
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    body: bytes | None = self._read_chunked()
                else:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                for attempt in (1, 2):  # a kept-alive upstream connection may have closed
                    conn = self._upstream()
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        data = resp.read()
                        break
                    except (http.client.HTTPException, OSError):
                        conn.close()
                        local.conn = None
                        if attempt == 2:
                            raise
                self.send_response_only(resp.status, resp.reason)
                head = self.command == "HEAD"
                for name, value in resp.getheaders():
                    # HEAD keeps the object's Content-Length; other answers get the body's.
                    if name.lower() not in _HOP and (name.lower() != "content-length" or head):
                        self.send_header(name, value)
                if not head:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _read_chunked(self) -> bytes:
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()

            # http.server dispatches on these names.
            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """Return the URL to give rclone as the S3 endpoint."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CountingProxy:
        """Start serving in a background thread; return self."""
        self._thread.start()
        return self

    def take(self) -> dict[str, int]:
        """Return the counts since the last call and reset them."""
        with self._lock:
            snapshot = dict(self.counts)
            self.counts.clear()
        return snapshot

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
