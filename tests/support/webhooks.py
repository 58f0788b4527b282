"""A webhook receiver a test starts on 127.0.0.1, for every dialect's webhook tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Keeps each POST as (headers with lower-case names, body); fails its first `fail_first`
    requests with a 500 so a test can watch the retries."""

    def __init__(self, fail_first: int = 0):
        self.requests: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list:
        return [json.loads(body) for _, body in self.requests]

    def until(self, ready: Callable[[Receiver], bool], timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while not ready(self) and time.time() < deadline:
            time.sleep(0.05)
        assert ready(self), self.requests

    def wait(self, count: int, timeout: float = 30.0) -> None:
        self.until(lambda r: len(r.requests) >= count, timeout)

    def close(self):
        self.server.shutdown()
