"""Bearer-token check for every path but /health (pure ASGI, so it runs before any body is read).

Two kinds of token: administrator tokens (the datastore's own DIR/worker-token, plus one from
ASFDA_WORKER_TOKEN or --token-file) and each annotator's own token (`--annotators FILE`); the latter
also names the annotator for the routes. The role goes into the request's scope state, where
`asfda.worker.roles.require_role` reads it.
"""

from __future__ import annotations

import hmac
import json
from typing import Dict, Iterable, Optional

from asfda.worker.roles import Role

OPEN_PATHS = frozenset({"/health"})


class BearerTokenMiddleware:
    def __init__(self, app, admin_tokens: Iterable[str], annotator_tokens: Optional[Dict[str, str]] = None):
        self.app = app
        self.admins = [f"Bearer {t}".encode() for t in admin_tokens if t]
        self.annotators = [(f"Bearer {t}".encode(), name) for t, name in (annotator_tokens or {}).items()]

    def _who(self, given: bytes):
        """(role, annotator name or None). Every token is compared, so timing tells nothing."""
        # compare_digest: the time taken must not tell how much of a guessed token was right.
        admin = False
        for expected in self.admins:
            admin |= hmac.compare_digest(given, expected)
        named = None
        for expected, name in self.annotators:
            if hmac.compare_digest(given, expected):
                named = name
        if admin:
            return Role.ADMIN, None
        return (Role.ANNOTATOR, named) if named is not None else (Role.OPEN, None)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        role, annotator = self._who(dict(scope["headers"]).get(b"authorization", b""))
        if role != Role.OPEN:
            state = scope.setdefault("state", {})
            state["role"] = role
            if annotator:
                state["annotator"] = annotator
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
