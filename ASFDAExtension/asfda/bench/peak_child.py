"""Peak memory of one scoring mode, measured in a fresh process.

In a long-lived process the allocator keeps freed blocks, so a later mode looks free. A child loads the
model and the volume, then samples its resident set while the mode runs once: the rise over the
resident set before the mode is what the mode itself needs. (ru_maxrss is no use here: importing torch
already sets a peak above any of these modes.) Run as `python -m asfda.bench.peak_child '<json>'`.
"""

from __future__ import annotations

import json
import sys


def main(spec: dict) -> dict:
    import numpy as np
    import torch

    from asfda.bench.memory import peak_memory
    from asfda.bench.speed import SpeedSettings, _config
    from asfda.inference import Predictor
    from asfda.model_store import FeaturePrior
    from asfda.networks import build_network
    from asfda.query.asd import mc_dropout_epistemic
    from asfda.query.signals import compute_signals

    torch.set_num_threads(1)
    settings = SpeedSettings(network=spec["network"], roi=tuple(spec["roi"]), device=spec["device"])
    config = _config(settings)
    predictor = Predictor(build_network(config), config, settings.device)
    # The volume is prepared by the parent: building it from the 1 mm template would set the peak here.
    volume = torch.as_tensor(np.load(spec["volume_path"]))
    with peak_memory(settings.device) as memory:
        if spec["mode"] == "inference":
            predictor.forward(volume, collect=False)
        elif spec["mode"] == "asfda_scoring":
            compute_signals(predictor, {"v": volume}, FeaturePrior(mean=np.zeros(1), var=np.ones(1)))
        else:
            mc_dropout_epistemic(predictor.mc_dropout_probs(volume, spec["samples"]))
    return {"rise_mb": memory["rss_rise_peak_mb"], "peak_mb": memory["rss_peak_mb"], **memory}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
