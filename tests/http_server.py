"""A real HTTP server on loopback that plays recorded (or made-up) responses, per path and
query, in order; and records what it was asked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """One response: status, headers, body; ``hang`` seconds of silence first; ``cut`` sends
    only this many bytes of the body (with the full Content-Length) and hangs up."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    cut: int | None = None


class SourceServer:
    """``routes`` maps "/path?query" to the replies for successive requests (the last one
    repeats); a target not in it gets ``otherwise(target)`` when given, else a 404.
    ``requests`` lists (target, headers) of every request."""

    def __init__(
        self,
        routes: dict[str, list[Reply]],
        otherwise: Callable[[str], Reply | None] = lambda target: None,
    ) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                fallback = otherwise(self.path) or Reply(404, b"not found")
                replies = server.routes.get(self.path) or [fallback]
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                if reply.hang:
                    time.sleep(reply.hang)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body if reply.cut is None else reply.body[: reply.cut])
                if reply.cut is not None:
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def asked(self, target: str) -> int:
        """How many requests asked for ``target``."""
        return sum(1 for path, _ in self.requests if path == target)

    def __enter__(self) -> SourceServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
