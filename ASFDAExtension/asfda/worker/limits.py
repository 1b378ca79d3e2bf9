"""Request body size limit: rejected up front by Content-Length and again while the body streams in."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException


def too_large(limit: int) -> str:
    return f"request body is larger than the worker's limit of {limit} bytes (--max-upload-mb)"


class BodySizeLimitMiddleware:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # Answer before reading a byte of the body: a client sending gigabytes learns at once.
            body = json.dumps({"detail": too_large(self.max_bytes)}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return None
        received = 0

        async def counted_receive():
            # Chunked bodies carry no length: count as they arrive and stop at the limit.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(status_code=413, detail=too_large(self.max_bytes))
            return message

        return await self.app(scope, counted_receive, send)
