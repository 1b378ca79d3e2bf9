"""Per-case signals in the datastore's SQLite, keyed by case, model version, image fingerprint and options.

Model versions are immutable folders and the fingerprint changes whenever the image file is replaced,
so a hit is always the signal that scoring would compute again. Each case is committed as soon as it is
scored: a cancelled or killed rank keeps what it finished, and the next one resumes from there.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np

from asfda.core.sqlite_db import connect
from asfda.data.state import utc_now
from asfda.query.signals import CaseSignals

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    case_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    options_key TEXT NOT NULL,
    dkd REAL,
    asd REAL NOT NULL,
    entropy REAL NOT NULL,
    foreground_fraction REAL NOT NULL,
    foreground_voxels INTEGER NOT NULL,
    knowledge_source TEXT NOT NULL,
    arrays BLOB NOT NULL,
    scored_at TEXT NOT NULL,
    PRIMARY KEY (case_id, model_version, fingerprint, options_key)
);
CREATE TABLE IF NOT EXISTS epistemic (
    case_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    options_key TEXT NOT NULL,
    samples INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (case_id, model_version, fingerprint, options_key, samples)
);
"""


@dataclass(frozen=True)
class SignalKey:
    case_id: str
    model_version: str
    fingerprint: str
    options_key: str

    def as_row(self) -> tuple:
        return (self.case_id, self.model_version, self.fingerprint, self.options_key)


def _pack(signal: CaseSignals) -> bytes:
    buffer = io.BytesIO()
    arrays = {
        "feature": np.asarray(signal.feature, dtype=np.float64),
        "class_entropy": np.asarray(signal.class_entropy, dtype=np.float64),
        "knowledge_matched": np.asarray(signal.knowledge_matched, dtype=np.float64),
    }
    for index, (mean, var) in enumerate(zip(signal.layer_means, signal.layer_vars)):
        arrays[f"mean_{index}"], arrays[f"var_{index}"] = mean, var
    np.savez(buffer, names=np.array(json.dumps(signal.layer_names)), **arrays)
    return buffer.getvalue()


def _unpack(case_id: str, row, blob: bytes) -> CaseSignals:
    data = np.load(io.BytesIO(blob))
    names = json.loads(str(data["names"]))
    return CaseSignals(
        case_id=case_id,
        dkd=float("nan") if row["dkd"] is None else row["dkd"],
        asd=row["asd"],
        entropy=row["entropy"],
        feature=data["feature"],
        layer_means=[data[f"mean_{i}"] for i in range(len(names))],
        layer_vars=[data[f"var_{i}"] for i in range(len(names))],
        foreground_fraction=row["foreground_fraction"],
        knowledge_source=row["knowledge_source"],
        layer_names=names,
        foreground_voxels=row["foreground_voxels"],
        class_entropy=[float(v) for v in data["class_entropy"]],
        knowledge_matched=float(data["knowledge_matched"]) if "knowledge_matched" in data.files else 1.0,
    )


class SignalCache:
    def __init__(self, db_path: Path):
        self.path = Path(db_path)
        with connect(self.path) as db:
            db.executescript(_SCHEMA)

    def get_many(self, keys: Iterable[SignalKey]) -> Dict[str, CaseSignals]:
        found: Dict[str, CaseSignals] = {}
        with connect(self.path) as db:
            for key in keys:
                row = db.execute(
                    "SELECT * FROM signals WHERE case_id=? AND model_version=? AND fingerprint=? AND options_key=?",
                    key.as_row(),
                ).fetchone()
                if row is not None:
                    found[key.case_id] = _unpack(key.case_id, row, row["arrays"])
        return found

    def put(self, key: SignalKey, signal: CaseSignals) -> None:
        dkd = None if signal.dkd is None or np.isnan(signal.dkd) else float(signal.dkd)
        with connect(self.path) as db:
            db.execute(
                "INSERT OR REPLACE INTO signals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *key.as_row(),
                    dkd,
                    float(signal.asd),
                    float(signal.entropy),
                    float(signal.foreground_fraction),
                    int(signal.foreground_voxels),
                    signal.knowledge_source,
                    _pack(signal),
                    utc_now(),
                ),
            )

    def get_epistemic(self, key: SignalKey, samples: int) -> Optional[float]:
        with connect(self.path) as db:
            row = db.execute(
                "SELECT value FROM epistemic WHERE case_id=? AND model_version=? AND fingerprint=? AND options_key=?"
                " AND samples=?",
                (*key.as_row(), samples),
            ).fetchone()
        return None if row is None else float(row["value"])

    def put_epistemic(self, key: SignalKey, samples: int, value: float) -> None:
        with connect(self.path) as db:
            db.execute("INSERT OR REPLACE INTO epistemic VALUES (?, ?, ?, ?, ?, ?)", (*key.as_row(), samples, value))
