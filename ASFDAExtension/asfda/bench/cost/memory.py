"""Peak memory of one measured block: process RSS sampled in a thread, Python heap, and CUDA when used.

tracemalloc alone misses torch's CPU tensors (allocated in C++), and ru_maxrss only ever grows over the
process, so the resident set is sampled during the block and reported as its rise above the start.
"""

from __future__ import annotations

import threading
import tracemalloc
from contextlib import contextmanager
from typing import Dict, Iterator

import psutil
import torch


@contextmanager
def peak_memory(device: str = "cpu", interval_s: float = 0.002) -> Iterator[Dict[str, float]]:
    process = psutil.Process()
    found: Dict[str, float] = {}
    start = process.memory_info().rss
    peak = [start]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tracemalloc.start()
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        found["python_heap_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        found["rss_rise_peak_mb"] = (peak[0] - start) / 2**20
        found["rss_peak_mb"] = peak[0] / 2**20
        if cuda:
            found["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
