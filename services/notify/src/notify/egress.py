"""Where a webhook may go: only to public addresses, checked at send time, on the connection actually used.

A subscriber chooses its URL, so without this a subscription is a way into the province's network (metadata
services at 169.254.169.254, admin ports on loopback, private ranges) and the delivery outcome a port scanner. The
host is resolved here; every address it resolves to must be global unicast; the request then goes to the checked
address itself (Host header and TLS server name keep the original name, so certificates are still verified), so a
DNS answer that changes between the check and the connection (rebinding) cannot switch it. Literal forms such as
`0x7f000001`, `2130706433`, `[::1]` or `::ffff:127.0.0.1` resolve like any name and are refused the same way."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx


class RefusedAddress(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


@dataclass(frozen=True)
class Destination:
    url: httpx.URL  # with the checked address as host
    host: str  # the name to present (Host header, TLS server name)


def allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve(url: str, *, allow_private: bool = False) -> Destination:
    parsed = httpx.URL(url)
    host = parsed.host
    if not host:
        raise RefusedAddress("no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RefusedAddress("unresolvable") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses or not (allow_private or all(allowed(a) for a in addresses)):
        raise RefusedAddress("not a public address")
    return Destination(parsed.copy_with(host=str(addresses[0])), host)
