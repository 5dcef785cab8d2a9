"""Customer credentials: a client-supplied base URL is used only if its host is on router.allowed_hosts
and every address it resolves to is public (no loopback, private, link-local or metadata addresses)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from quasar.errors import InvalidRequest


async def check_base_url(url: str, allowed_hosts: list[str], param: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidRequest("A customer base_url must be an https:// URL.", param=param)
    host = parts.hostname.lower()
    if host not in {h.lower() for h in allowed_hosts}:
        raise InvalidRequest(f"The base_url host '{host}' is not on this server's router.allowed_hosts.", param=param)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        raise InvalidRequest(f"The base_url host '{host}' does not resolve.", param=param) from None
    for info in infos:
        if not ipaddress.ip_address(info[4][0]).is_global:
            raise InvalidRequest(f"The base_url host '{host}' resolves to a non-public address.", param=param)
