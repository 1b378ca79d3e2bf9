"""The clinician's loop on one datastore, one call per step (rank, infer, adapt, evaluate, write back).

Faces (cli, worker, demo, bench) use `LoopSession` and the request objects, never the engine's internals.
"""

from asfda.loop.annotator import RoundResult, simulated_round
from asfda.loop.device import resolve_device
from asfda.loop.requests import AdaptRequest, RankRequest
from asfda.loop.session import LoopSession, SessionSettings

__all__ = [
    "AdaptRequest",
    "LoopSession",
    "RankRequest",
    "RoundResult",
    "SessionSettings",
    "resolve_device",
    "simulated_round",
]
