"""Host and Origin checks (pure ASGI, outermost): a web page in the clinician's browser gets nothing.

DNS rebinding points a page's own host name at 127.0.0.1, so the browser sends the worker requests
with `Host: evil.example:PORT`; a loopback worker therefore accepts only the loopback names with its
bound port. Any request a page makes to another site carries that page's `Origin` (or
`Sec-Fetch-Site: cross-site`); only the worker's own origin (its /docs page) is accepted.
"""

from __future__ import annotations

import json
from typing import FrozenSet, Optional

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def loopback_hosts(port: int) -> FrozenSet[str]:
    """Every Host header value a client of a loopback worker on `port` may send (lower case)."""
    hosts = {f"{name}:{port}" for name in LOOPBACK_NAMES}
    if port == 80:
        hosts |= set(LOOPBACK_NAMES)
    return frozenset(hosts)


async def _refuse(send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HostOriginMiddleware:
    """Refuse (403, one line) a foreign Host on a loopback worker, and any cross-origin request."""

    def __init__(self, app, allowed_hosts: Optional[FrozenSet[str]]):
        self.app = app
        self.allowed_hosts = allowed_hosts  # None: any Host (a networked worker; tokens guard it)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1").strip().lower()
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            shown = host[:80] or "(none)"
            return await _refuse(
                send,
                f"Host {shown!r} refused: this loopback worker answers only 127.0.0.1, localhost or [::1] on its port",
            )
        origin = headers.get(b"origin")
        if origin is not None:
            origin_text = origin.decode("latin-1").strip().lower()
            if origin_text not in (f"http://{host}", f"https://{host}"):
                return await _refuse(
                    send, f"Origin {origin_text[:80]!r} refused: web pages of other sites may not call the worker"
                )
        if headers.get(b"sec-fetch-site", b"").strip().lower() == b"cross-site":
            return await _refuse(send, "cross-site request refused: web pages of other sites may not call the worker")
        return await self.app(scope, receive, send)
