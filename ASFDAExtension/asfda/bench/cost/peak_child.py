"""Peak memory of one scoring mode, measured in a fresh process.

In a long-lived process the allocator keeps freed blocks, so a later mode looks free. A child loads the
model and the volume, then samples its resident set while the mode runs once: the rise over the
resident set before the mode is what the mode itself needs. (ru_maxrss is no use here: importing torch
already sets a peak above any of these modes.) Run as `python -m asfda.bench.cost.peak_child '<json>'`.
"""

from __future__ import annotations

import json
import sys


def main(spec: dict) -> dict:
    import numpy as np
    import torch

    from asfda.bench.cost.memory import peak_memory
    from asfda.bench.cost.speed import SpeedSettings, product_modes, product_scorer

    torch.set_num_threads(1)
    settings = SpeedSettings(
        network=spec["network"],
        roi=tuple(spec["roi"]),
        device=spec["device"],
        preset=spec.get("preset", "small"),
        sw_batch_size=spec.get("sw_batch_size", 1),
        precision=spec.get("precision", "fp32"),
    )
    modes = product_modes(product_scorer(settings), spec["samples"])
    # The volume is prepared by the parent: building it from the 1 mm template would set the peak here.
    volume = torch.as_tensor(np.load(spec["volume_path"]))
    with peak_memory(settings.device) as memory:
        modes[spec["mode"]](volume)
    return {"rise_mb": memory["rss_rise_peak_mb"], "peak_mb": memory["rss_peak_mb"], **memory}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
