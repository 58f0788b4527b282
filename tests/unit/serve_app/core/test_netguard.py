"""The outbound-address guard, with address literals only: nothing here connects anywhere but
to a server the test starts on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serve_app.core import netguard
from serve_app.core.errors import (
    ForbiddenURLError,
    ImageFetchError,
    InvalidRequestError,
    WebhookURLError,
)

REFUSED = [
    "127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "100.100.100.200",  # shared address space (a cloud metadata address)
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.0.8",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1",
    "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1",
    "2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::",  # 6to4 of 127/10/169.254
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1",  # NAT64
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:db8::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e"]


@pytest.mark.parametrize("literal", REFUSED)
def test_refuses_every_address_that_is_not_globally_routable(literal):
    assert not netguard.address_allowed(ipaddress.ip_address(literal))


@pytest.mark.parametrize("literal", ALLOWED)
def test_allows_globally_routable_addresses(literal):
    assert netguard.address_allowed(ipaddress.ip_address(literal))


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://0177.0.0.1/",
                                 "http://127.1/", "http://[::ffff:7f00:1]/",
                                 "http://100.64.0.1/", "http://[fec0::1]:8080/x",
                                 "http://[2002:7f00:1::]/"])
def test_numeric_spellings_resolve_to_what_they_mean_and_are_refused(url):
    # getaddrinfo of a numeric host answers without asking DNS; nothing connects
    with pytest.raises(ForbiddenURLError):
        netguard.resolve(url, param="image_url", allow_private=False)


@pytest.mark.parametrize("url", ["http://example.com:99999/a.png", "http://example.com:abc/",
                                 "http://[::1/", "http://[zz::1]/"])
def test_malformed_urls_are_a_400(url):
    with pytest.raises(InvalidRequestError):
        netguard.parse(url, param="image_url")


def test_non_http_schemes_are_refused_with_the_callers_error():
    with pytest.raises(WebhookURLError):
        netguard.parse("file:///etc/passwd", param="webhook", error=WebhookURLError)


def test_a_name_is_resolved_once_and_refused_if_any_address_is_private(monkeypatch):
    answers = [("93.184.216.34",), ("127.0.0.1",)]
    calls = []

    def fake(host, port, *args, **kwargs):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a[0], port)) for a in answers]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(ForbiddenURLError):
        netguard.resolve("http://rebind.example/x.png", param="image_url", allow_private=False)
    assert calls == ["rebind.example"]


def test_dns_rebinding_cannot_move_the_request(monkeypatch):
    """The first lookup answers a public address, a second would answer loopback: the request
    goes to the checked address (here: one the test serves on 127.0.0.1 stands for it), and no
    second lookup happens."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lookups = []

    def fake(host, p, *args, **kwargs):
        lookups.append(host)
        # checked once (allow_private, so the loopback stand-in passes); a second lookup
        # would answer an address nobody listens on
        address = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, p))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    try:
        data = asyncio.run(netguard.fetch(f"http://images.example:{port}/a.png", param="image_url",
                                     max_bytes=100, timeout_s=5, allow_private=True))
    finally:
        server.shutdown()
    assert data == b"ok"
    assert lookups == ["images.example"]
    assert hits == [f"images.example:{port}"]


def test_a_slow_drip_server_is_cut_off_at_the_total_deadline():
    class Drip(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-length", "1000")
            self.end_headers()
            for _ in range(1000):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)  # each read is quick: only a total deadline ends it

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(ImageFetchError, match="longer than 1 s"):
            asyncio.run(netguard.fetch(f"http://127.0.0.1:{server.server_address[1]}/",
                                  param="image_url", max_bytes=10_000, timeout_s=1.0,
                                  allow_private=True))
    finally:
        server.shutdown()
    assert time.monotonic() - started < 3


def test_url_guard_refuses_private_addresses():
    from serve_app.core.errors import ForbiddenURLError
    from serve_app.core.netguard import resolve as check_url_allowed

    for url in ("http://127.0.0.1/x.png", "http://10.1.2.3/x.png", "http://169.254.169.254/",
                "http://[::1]/x.png", "http://192.168.0.1/", "file:///etc/passwd"):
        with pytest.raises(ForbiddenURLError):
            check_url_allowed(url, param="image", allow_private=False)
    check_url_allowed("http://127.0.0.1/x.png", param="image", allow_private=True)
