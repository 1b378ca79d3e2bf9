"""The local worker: a FastAPI service over one datastore with a single GPU job queue (see docs/worker.md).
The CLI starts it through `app` and `settings`; `tokens` is the datastore's own token file.

The public face is the modules named in `__all__`; the others are internal to the package.
"""

__all__ = [
    "app",
    "settings",
    "tokens",
]
