"""Bearer-token check for every path but /health (pure ASGI, so it runs before any body is read)."""

from __future__ import annotations

import hmac
import json

OPEN_PATHS = frozenset({"/health"})


class BearerTokenMiddleware:
    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        # compare_digest: the time taken must not tell how much of a guessed token was right.
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        body = json.dumps({"detail": "missing or wrong bearer token (header 'Authorization: Bearer <token>')"})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
