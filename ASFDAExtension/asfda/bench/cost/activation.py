"""`asfda bench activation`: how long after training the new version is in use (issue 18, "the model first").

The same datastore, labels and recipe twice through the loop the worker's job runs (LoopSession.adapt):
once in the product's order (the published version trained and activated, its advisory k-fold verdict after)
and once in the old order (the k fold models first, then the published one). Both report the time until the
new version is active against the time the published version itself trained.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Tuple

from asfda.bench.cost.e2e import write_labels
from asfda.bench.cost.pool import write_pool
from asfda.data.datastore import Datastore
from asfda.data.label_submit import LabelSubmission, submit_label
from asfda.loop import AdaptRequest, LoopSession, SessionSettings


@dataclass
class ActivationSettings:
    volumes: int = 40
    shape: Tuple[int, int, int] = (64, 64, 64)
    labels: int = 4
    steps: int = 80
    device: str = "cpu"


def _one_order(root: Path, settings: ActivationSettings, verdict_after: bool) -> Dict:
    session = LoopSession.open(root, SessionSettings(device=settings.device))
    request = AdaptRequest(steps=settings.steps, gate_verdict_after=verdict_after)
    started = time.perf_counter()
    result = session.adapt(request)
    active_s = time.perf_counter() - started
    trained_s = float(result.metrics["seconds"])  # the published version's own training
    # every training before the version was active: the published one alone, or the fold models first
    before_active_s = float(result.metrics.get("training_seconds_total", trained_s))
    verdict_s = 0.0
    if result.gate.get("pending"):
        began = time.perf_counter()
        result.gate = session.verdict(result.version, request)
        verdict_s = time.perf_counter() - began
    return {
        "active_s": active_s,
        "published_training_s": trained_s,
        "trained_before_active_s": before_active_s,
        "active_over_training": active_s / trained_s if trained_s else float("nan"),
        "verdict_s": verdict_s,
        "verdict": result.gate.get("verdict"),
        "activated": result.activated,
    }


def run_activation(settings: ActivationSettings, out: Path) -> Dict:
    """Both orders on copies of one datastore (same volumes, labels, untrained UNet v0001)."""
    out = Path(out)
    base = out / "datastore"
    if base.exists():
        shutil.rmtree(base)
    write_pool(base, settings.shape, settings.volumes, roi=settings.shape)
    store = Datastore(base)
    model = store.models.load()
    for index, path in enumerate(write_labels(base, settings.labels)):
        submission = LabelSubmission(f"vol{index:04d}", path, "bench", "cli")
        submit_label(store, submission, model.config, model.version)
    result: Dict = {"settings": asdict(settings)}
    for name, verdict_after in (("model first", True), ("verdict first", False)):
        root = out / name.replace(" ", "-")
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(base, root)
        result[name] = _one_order(root, settings, verdict_after)
    (out / "activation.json").write_text(json.dumps(result, indent=2))
    return result


def format_activation(result: Dict) -> str:
    s = result["settings"]
    lines = [
        f"# Time to the new version: {s['volumes']} volumes of {'x'.join(map(str, s['shape']))}, {s['labels']} "
        f"labels, {s['steps']} steps, {s['device']}",
        "",
        "| order | active after s | published version trained s | active / trained | verdict after s | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("model first", "verdict first"):
        r = result[name]
        lines.append(
            f"| {name} | {r['active_s']:.1f} | {r['published_training_s']:.1f} | {r['active_over_training']:.2f}x | "
            f"{r['verdict_s']:.1f} | {r['verdict']} |"
        )
    return "\n".join(lines)
