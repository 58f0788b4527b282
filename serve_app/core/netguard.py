"""Outbound HTTP on a tenant's behalf (image URLs, webhooks): only to globally routable
addresses, to the very address that was checked, within one total deadline.

- `address_allowed`: `is_global`, and for an IPv6 address that carries an IPv4 one (mapped,
  IPv4-compatible, 6to4, NAT64, Teredo) that IPv4 address too: `2002:7f00:1::` is 127.0.0.1.
- `resolve`: one DNS lookup; every address it gives must be allowed (a name that also resolves
  somewhere private is refused whole), and the request then goes to the first of them with the
  name as `Host` (and as TLS SNI), so a second lookup can never point it elsewhere (DNS
  rebinding).
- `pinned_stream`: the request itself, bounded by a total deadline rather than per read, so a
  server that drips one byte a second cannot hold the caller.
- `fetch`: a GET through all of the above (image inputs, adapters by URL), redirects checked
  hop by hop, with a byte cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import AsyncIterator
from urllib.parse import urljoin, urlsplit, urlunsplit

from serve_app.core.errors import (
    ForbiddenURLError,
    ImageFetchError,
    InvalidRequestError,
    PayloadTooLargeError,
    TesseraError,
)

MAX_REDIRECTS = 3

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

# IANA's special-purpose ranges, checked besides `is_global`: Python's own table differs from
# one patch release to the next (192.0.0.0/24's exceptions, 64:ff9b:1::/48), and the guard must
# not change with the interpreter.
SPECIAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/8", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20",
    "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for, in each form that carries one."""
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client)
    if any(ip in net for net in NAT64) or int(ip) >> 32 == 0:  # NAT64, IPv4-compatible
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def address_allowed(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        if any(not address_allowed(v4) for v4 in embedded_ipv4(ip)):
            return False
    if any(ip.version == net.version and ip in net for net in SPECIAL):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback
                                 or ip.is_link_local or ip.is_unspecified)


@dataclass(frozen=True)
class Target:
    """A URL as it will be requested: its parts, and the address that was checked."""

    url: str
    scheme: str
    host: str
    port: int
    address: str

    @property
    def pinned_url(self) -> str:
        """The URL with the checked address in place of the name."""
        literal = f"[{self.address}]" if ":" in self.address else self.address
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, f"{literal}:{self.port}", parts.path or "/",
                           parts.query, ""))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def parse(url: str, *, param: str, error: type[TesseraError] = ForbiddenURLError
          ) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; any malformed URL is the client's 400."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on 99999 or "abc"
        host = parts.hostname
    except ValueError as exc:
        raise InvalidRequestError(f"{param} is not a valid URL: {exc}", param=param) from None
    if parts.scheme not in ("http", "https") or not host:
        raise error(f"{param}: only http(s) URLs are allowed", param=param)
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def resolve(url: str, *, param: str, allow_private: bool,
            error: type[TesseraError] = ForbiddenURLError) -> Target:
    """Resolve once and check every address. Blocking (DNS): call it in a thread."""
    scheme, host, port = parse(url, param=param, error=error)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImageFetchError(f"{param}: cannot resolve {host}: {exc}", param=param) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not allow_private:
        for ip in addresses:
            if not address_allowed(ip):
                raise error(f"{param}: {host} resolves to an address that is not publicly "
                            "routable (loopback, private, link-local, shared or reserved); such "
                            "URLs are not allowed", param=param)
    return Target(url, scheme, host, port, str(addresses[0]))


async def resolve_async(url: str, *, param: str, allow_private: bool,
                        error: type[TesseraError] = ForbiddenURLError) -> Target:
    return await asyncio.to_thread(resolve, url, param=param, allow_private=allow_private,
                                   error=error)


@contextlib.asynccontextmanager
async def pinned_stream(client, method: str, target: Target, *, headers: dict | None = None,
                        content: bytes | None = None) -> AsyncIterator:
    """The request sent to the checked address, the name as Host (and SNI for https)."""
    request = client.build_request(
        method, target.pinned_url, headers={**(headers or {}), "host": target.host_header},
        content=content,
        extensions={"sni_hostname": target.host} if target.scheme == "https" else None)
    response = await client.send(request, stream=True, follow_redirects=False)
    try:
        yield response
    finally:
        await response.aclose()


async def within(deadline_s: float, coro, *, what: str, param: str):
    """The coroutine, or ImageFetchError once deadline_s has passed in all."""
    try:
        return await asyncio.wait_for(coro, deadline_s)
    except asyncio.TimeoutError:
        raise ImageFetchError(f"{param}: {what} took longer than {deadline_s:g} s in all",
                              param=param) from None


async def fetch(url: str, *, param: str, max_bytes: int, timeout_s: float,
                allow_private: bool, what: str = "the image") -> bytes:
    """GET an image (or `what` else): each hop resolved and checked once and requested at that
    address (redirects followed only after their own check), the whole fetch within timeout_s,
    stopped at max_bytes."""
    return await within(
        timeout_s, _fetch(url, param=param, max_bytes=max_bytes, allow_private=allow_private,
                          what=what),
        what=f"fetching {url}", param=param)


async def _fetch(url: str, *, param: str, max_bytes: int, allow_private: bool,
                 what: str) -> bytes:
    import httpx

    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = await resolve_async(url, param=param, allow_private=allow_private)
            try:
                async with pinned_stream(client, "GET", target) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise ImageFetchError(f"{param}: GET {url} answered "
                                              f"{response.status_code}", param=param)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > max_bytes:
                        raise PayloadTooLargeError(
                            f"{param}: {what} at {url} is over {max_bytes} bytes",
                            param=param)
                    chunks, total = [], 0
                    async for chunk in response.aiter_bytes():
                        total += len(chunk)
                        if total > max_bytes:
                            raise PayloadTooLargeError(
                                f"{param}: {what} at {url} is over {max_bytes} bytes",
                                param=param)
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                raise ImageFetchError(f"{param}: could not fetch {url}: {exc}",
                                      param=param) from None
    raise ImageFetchError(f"{param}: more than {MAX_REDIRECTS} redirects", param=param)
