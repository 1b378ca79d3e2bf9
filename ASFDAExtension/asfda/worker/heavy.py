"""A bound on concurrent heavy requests (label uploads, image downloads): each holds a volume in memory.

Beyond the bound a request is answered at once with 503 and `Retry-After`, instead of queueing
volumes in memory until the API process is killed (and its job child with it).
"""

from __future__ import annotations

import threading
from typing import Annotated, Iterator

from fastapi import Depends, HTTPException, Request

RETRY_AFTER_S = 2


class HeavySlots:
    def __init__(self, limit: int):
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def try_acquire(self) -> bool:
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        self._slots.release()


def heavy_slot(request: Request) -> Iterator[None]:
    """Dependency: hold one heavy slot for the request, or refuse with 503 when none is free."""
    slots: HeavySlots = request.app.state.heavy
    if not slots.try_acquire():
        raise HTTPException(
            503,
            f"the worker is busy with {slots.limit} uploads or downloads; retry in {RETRY_AFTER_S} s",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    try:
        yield
    finally:
        slots.release()


# Routes declare `_slot: HeavySlot` to run inside the bound.
HeavySlot = Annotated[None, Depends(heavy_slot)]
