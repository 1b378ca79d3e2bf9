"""Bearer-token check for every path but /health (pure ASGI, so it runs before any body is read).

Two kinds of token: the worker's shared token (an administrator, `--token`) and each annotator's own
token (`--annotators FILE`); the latter also names the annotator for the routes (scope state).
"""

from __future__ import annotations

import hmac
import json
from typing import Dict, Optional

OPEN_PATHS = frozenset({"/health"})


class BearerTokenMiddleware:
    def __init__(self, app, token: Optional[str], annotator_tokens: Optional[Dict[str, str]] = None):
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.annotators = [(f"Bearer {t}".encode(), name) for t, name in (annotator_tokens or {}).items()]

    def _who(self, given: bytes):
        """(accepted, annotator name or None). Every token is compared, so timing tells nothing."""
        # compare_digest: the time taken must not tell how much of a guessed token was right.
        admin = bool(self.expected) and hmac.compare_digest(given, self.expected)
        named = None
        for expected, name in self.annotators:
            if hmac.compare_digest(given, expected):
                named = name
        return admin or named is not None, named

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        accepted, annotator = self._who(dict(scope["headers"]).get(b"authorization", b""))
        if accepted:
            if annotator:
                scope.setdefault("state", {})["annotator"] = annotator
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
