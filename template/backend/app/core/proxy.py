"""The client's address and scheme, decided in one place for the whole app.

A client can write any X-Forwarded-For it likes, and a proxy appends to it, so only what
the deployment's own proxies wrote is believed: the header a platform's proxy sets
itself (CLIENT_IP_HEADER), or the entry FORWARDED_HOPS from the right of
X-Forwarded-For. With neither set, the connection's peer is the client and forwarded
headers are ignored. `python -m app` turns uvicorn's own proxy handling off, so that
nothing else rewrites the address.
"""

from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.config import Settings

FORWARDED_FOR = b"x-forwarded-for"
FORWARDED_PROTO = b"x-forwarded-proto"


def _address(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def forwarded_client(
    headers: list[tuple[bytes, bytes]], header: bytes | None, hops: int
) -> str | None:
    """The client address the deployment's proxies report, or None to keep the peer."""
    if header is not None:
        # A proxy that sets the header replaces what the client sent; should both reach
        # the app, the proxy's comes last.
        values = [value for name, value in headers if name == header]
        return _address(values[-1].decode("latin-1")) if values else None
    if hops:
        # Several header lines form one list, in order (RFC 9110, section 5.3).
        entries = [
            entry
            for name, value in headers
            if name == FORWARDED_FOR
            for entry in value.decode("latin-1").split(",")
        ]
        # Fewer entries than proxies: the request did not come through all of them.
        return _address(entries[-hops]) if len(entries) >= hops else None
    return None


def forwarded_proto(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The scheme the nearest proxy reports (its entry is the last), if it says one."""
    values = [value for name, value in headers if name == FORWARDED_PROTO]
    if not values:
        return None
    proto = values[-1].decode("latin-1").rsplit(",", 1)[-1].strip().lower()
    return proto if proto in {"http", "https"} else None


class ClientAddressMiddleware:
    """Sets the ASGI scope's client (and scheme) from the trusted proxies' headers."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        header = settings.CLIENT_IP_HEADER
        self.header = header.lower().encode("latin-1") if header else None
        self.hops = settings.FORWARDED_HOPS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"} and (self.header or self.hops):
            headers = scope["headers"]
            client = forwarded_client(headers, self.header, self.hops)
            if client is not None:
                port = scope["client"][1] if scope.get("client") else 0
                scope["client"] = (client, port)
            proto = forwarded_proto(headers)
            if proto is not None:
                secure = proto == "https"
                if scope["type"] == "websocket":
                    scope["scheme"] = "wss" if secure else "ws"
                else:
                    scope["scheme"] = proto
        await self.app(scope, receive, send)
