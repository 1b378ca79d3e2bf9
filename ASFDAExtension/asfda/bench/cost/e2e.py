"""`asfda bench e2e`: the clinician's loop through the command line, timed as a user would see it.

A pool of synthetic volumes, then `asfda rank`, the same rank again (same model: served from the signal
cache), two `asfda label submit`, and `asfda adapt`; each command is a fresh process, so start-up, model
loading and data reading count, as they do for a user. Adapt's time outside training is its wall time
minus the training seconds it records in the new version's metrics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from asfda.bench.cost.pool import write_pool


@dataclass
class EndToEndSettings:
    volumes: int = 24
    shape: Tuple[int, int, int] = (256, 256, 224)
    device: str = "cpu"
    steps: int = 20
    labels: int = 2
    roi: Tuple[int, int, int] = (96, 96, 96)


def _timed(command: List[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "asfda", *command], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def write_labels(root: Path, count: int) -> List[Path]:
    """Labels of the synthetic bodies of the first `count` volumes (written beside the datastore)."""
    import nibabel as nib

    paths = []
    for index in range(count):
        image = nib.load(str(root / "images" / f"vol{index:04d}.nii"))
        label = (np.asarray(image.dataobj) > 25).astype(np.uint8)  # the synthetic body, plus a little noise
        path = root.parent / f"label{index}.nii.gz"
        nib.save(nib.Nifti1Image(label, image.affine), str(path))
        paths.append(path)
    return paths


def run_e2e(settings: EndToEndSettings, out: Path) -> Dict:
    from asfda.bench.cost.speed import REALISTIC_NETWORKS
    from asfda.data.datastore import Datastore

    out = Path(out)
    root = out / "datastore"
    unet = REALISTIC_NETWORKS["unet"]["network_args"]
    write_pool(root, settings.shape, settings.volumes, roi=settings.roi, network_args=unet)
    store = ["--datastore", str(root)]
    compute = [*store, "--device", settings.device]
    result: Dict = {"settings": asdict(settings)}
    result["rank_s"] = _timed(["rank", *compute, "--k", str(settings.labels)])
    result["rerank_s"] = _timed(["rank", *compute, "--k", str(settings.labels)])
    for index, path in enumerate(write_labels(root, settings.labels)):
        _timed(["label", "submit", *store, f"vol{index:04d}", str(path), "--author", "bench"])
    result["adapt_s"] = _timed(["adapt", *compute, "--steps", str(settings.steps)])
    newest = Datastore(root, create=False).models.versions()[-1]
    # All trainings of the round (the validation gate trains a model per fold before the published one).
    result["adapt_training_s"] = float(newest.metrics.get("training_seconds_total", newest.metrics["seconds"]))
    result["adapt_outside_training_s"] = result["adapt_s"] - result["adapt_training_s"]
    result["rank_s_per_volume"] = result["rank_s"] / settings.volumes
    (out / "e2e.json").write_text(json.dumps(result, indent=2))
    return result


def format_e2e(result: Dict) -> str:
    s = result["settings"]
    return "\n".join(
        [
            f"# End to end through the CLI: {s['volumes']} volumes of {'x'.join(map(str, s['shape']))}, "
            f"{s['device']}, adapt {s['steps']} steps on {s['labels']} labels",
            "",
            "| rank s (per volume) | re-rank s | adapt s | of which training s | outside training s |",
            "|---|---|---|---|---|",
            f"| {result['rank_s']:.1f} ({result['rank_s_per_volume']:.2f}) | {result['rerank_s']:.1f} | "
            f"{result['adapt_s']:.1f} | {result['adapt_training_s']:.1f} | {result['adapt_outside_training_s']:.1f} |",
        ]
    )
