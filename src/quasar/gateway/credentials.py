"""Customer credentials: the SSRF guard for a client-supplied base URL.

A base URL is used only if it is https://, its host is on router.allowed_hosts, and every address the
host resolves to is public: no loopback, private, link-local (cloud metadata at 169.254.169.254), shared,
multicast, reserved or unspecified address, whether the host is a name or an address in any notation the
resolver takes (0x7f.1, 2130706433, 017700000001, 127.1) and whether an IPv6 address carries an IPv4 one
(::ffff:127.0.0.1, 6to4, Teredo, NAT64). The address checked is returned, and the request connects to it
alone (engines/http.py Pool `address`), with the URL's host in the Host header, TLS SNI and certificate
check: a name that resolves differently a moment later (DNS rebinding) is never looked up again. The HTTP
client follows no redirect, so an upstream cannot send a request on into private space either.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from quasar.errors import InvalidRequest

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: str) -> bool:
    """Whether an address (IPv4 or IPv6, as the resolver gives it) is one the open internet routes to."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and not is_public(str(inner)):
            return False
    return ip.is_global and not ip.is_multicast


async def check_base_url(url: str, allowed_hosts: list[str], param: str) -> str:
    """The address to connect to for a customer base URL, or a 400 naming `param` that says why not."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidRequest("A customer base_url must be an https:// URL.", param=param)
    host = parts.hostname.lower()
    if host not in {h.lower().strip("[]") for h in allowed_hosts}:
        raise InvalidRequest(f"The base_url host '{host}' is not on this server's router.allowed_hosts.", param=param)
    try:
        port = parts.port or 443
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        raise InvalidRequest(f"The base_url host '{host}' does not resolve.", param=param) from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(is_public(a) for a in addresses):
        raise InvalidRequest(f"The base_url host '{host}' resolves to a non-public address.", param=param)
    return addresses[0]
