"""Who is on the other end of a request: the TCP peer, or — when the peer is a reverse proxy the settings trust
(`server.trusted_proxies`, e.g. the nginx of deploy/) — the client it names in X-Forwarded-For.

The console's and the API's audit entries and the /metrics allow-list read `client_address()`. Without trusted
proxies it is the peer: X-Forwarded-For is anyone's to write, so it is only believed from a trusted peer, and
then only as far as the hops it names are trusted too (the rightmost untrusted address is the client).
aiohttp-remotes was considered: its filtered mode believes the header from any peer, its strict mode refuses
requests from an untrusted peer (a local `curl /readyz`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import hdrs, web

_CLIENT = web.RequestKey("client_address", str)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.Request) -> str | None:
    return request.get(_CLIENT, request.remote)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address, networks: list[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def forwarded_client(peer: str | None, forwarded_for: Iterable[str], networks: list[Network]) -> str | None:
    """The client behind a chain of proxies: walking X-Forwarded-For from the right while the hop is trusted.
    The peer itself, when it is not trusted or a hop is not an address."""
    if not _trusted(_address(peer), networks):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return client  # garbage in the header: go no further than what was believed so far
        client = str(address)
        if not _trusted(address, networks):
            break
    return client


def install(app: web.Application, trusted_proxies: Iterable[str]) -> None:
    networks = [ipaddress.ip_network(cidr.strip()) for cidr in trusted_proxies]
    if not networks:
        return  # the peer is the client: nothing to do per request

    @web.middleware
    async def behind_proxy(request: web.Request, handler) -> web.StreamResponse:
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
        if forwarded:
            request[_CLIENT] = forwarded_client(request.remote, forwarded, networks)
        return await handler(request)

    app.middlewares.append(behind_proxy)
