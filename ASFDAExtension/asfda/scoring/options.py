"""What changes a case's signals besides the model and the image: part of the signal cache's key."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Optional

from asfda.models.inference import Precision, resolve_precision
from asfda.query.asd import ForegroundRule
from asfda.query.dkd import KnowledgeSource

# Bumped whenever the meaning of a stored signal changes, so old cache rows are never read as new ones.
SIGNAL_FORMAT = 4


def default_loader_workers() -> int:
    # Reading and resampling overlap the network pass in other processes; one core stays for the pass itself.
    return max(0, min(4, (os.cpu_count() or 1) - 1))


@dataclass
class ScoringOptions:
    asd_rule: ForegroundRule = ForegroundRule.OTSU
    knowledge_source: Optional[KnowledgeSource] = None  # None: the best the model offers (see dkd.py)
    precision: Precision = Precision.AUTO  # bf16 on CUDA, fp32 on the CPU, by measurement (docs/benchmarks.md)
    loader_workers: Optional[int] = None  # None: default_loader_workers()
    chunk_size: int = 8  # a rank checks for waiting interactive jobs after this many newly scored cases

    def cache_key(self, device: str = "cpu") -> str:
        """Only what changes the numbers (the precision as it resolves on `device`); loader workers and chunk
        size do not."""
        fields = {
            "format": SIGNAL_FORMAT,
            "asd_rule": ForegroundRule(self.asd_rule).value,
            "knowledge_source": KnowledgeSource(self.knowledge_source).value if self.knowledge_source else None,
            "precision": resolve_precision(self.precision, device).value,
        }
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def workers(self) -> int:
        return default_loader_workers() if self.loader_workers is None else max(0, int(self.loader_workers))
