"""``X-Forwarded-*`` from the proxies the operator trusts, and from nobody else.

Behind a reverse proxy, the peer of every connection is the proxy: the
client's address, the scheme and the public host arrive in headers that
anyone could also send directly. They are applied only when the peer is in
``TASKVAULT_TRUSTED_PROXIES``; then the client is the rightmost address of
``X-Forwarded-For`` that is not itself a trusted proxy (the ones to its left
were written by whoever sent the request), and ``Link`` and ``Location``
URLs carry the public scheme and host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A host name or an IPv4 address, or a bracketed IPv6 address, with an optional port.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)
_SCHEMES = frozenset({"http", "https"})


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks; a bare address is a network of one."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


class ForwardedHeadersMiddleware:
    """Outermost layer: the client, scheme and host a trusted proxy says it saw."""

    def __init__(self, app: ASGIApp, trusted: tuple[Network, ...]) -> None:
        self.app = app
        self.trusted = trusted

    def _is_trusted(self, address: str) -> bool:
        ip = _address(address)
        return ip is not None and any(ip in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and self._is_trusted(client[0]):
            self._apply(scope)
        await self.app(scope, receive, send)

    def _apply(self, scope: Scope) -> None:
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        values = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        forwarded_for = values.get("x-forwarded-for")
        if forwarded_for:
            hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
            for hop in reversed(hops):
                ip = _address(hop)
                if ip is None:
                    break
                if not any(ip in network for network in self.trusted):
                    scope["client"] = (hop, 0)
                    break
        scheme = values.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        if scheme in _SCHEMES:
            scope["scheme"] = (
                "wss" if scope["type"] == "websocket" and scheme == "https" else scheme
            )
        host = values.get("x-forwarded-host", "").split(",")[-1].strip()
        if host and _HOST.fullmatch(host):
            scope["headers"] = [(n, v) for n, v in headers if n != b"host"] + [
                (b"host", host.encode("ascii"))
            ]


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None
