"""Scoring a datastore's pool: cases streamed through a DataLoader (or Ray actors), per-case signals cached
per model content. Higher layers (loop, faces) import these names from here."""

from asfda.scoring.cache import SignalCache, SignalKey
from asfda.scoring.options import SIGNAL_FORMAT, ScoringOptions
from asfda.scoring.pool import CaseScorer, PoolSignals, Yielded, add_epistemic, score_pool
from asfda.scoring.ray_options import ADDRESS_ENV, DataAccess, RayOptions
from asfda.scoring.ray_pool import RayPoolScorer
from asfda.scoring.stream import stream_cases

__all__ = [
    "ADDRESS_ENV",
    "SIGNAL_FORMAT",
    "CaseScorer",
    "DataAccess",
    "PoolSignals",
    "RayOptions",
    "RayPoolScorer",
    "ScoringOptions",
    "SignalCache",
    "SignalKey",
    "Yielded",
    "add_epistemic",
    "score_pool",
    "stream_cases",
]
