"""Per-case signals in the datastore's SQLite, keyed by case, model, image fingerprint and options.

The model part of the key is the version folder's content id with the asfda, MONAI and torch versions
(not the version name: a folder re-created under the same name or a config edited in place holds other
content), and the image fingerprint changes whenever the image's bytes may have, so a hit is always the
signal that scoring would compute again. Each case is committed as soon as it is scored: a cancelled or
killed rank keeps what it finished, and the next one resumes from there. Entries of models that are
neither the active version nor its parent are pruned (`prune_signal_cache`), so the cache stays bounded.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

import monai
import numpy as np
import torch

from asfda import __version__ as asfda_version
from asfda.core.sqlite_db import connect
from asfda.data.datastore import Datastore
from asfda.data.state import utc_now
from asfda.query.signals import CaseSignals

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    case_id TEXT NOT NULL,
    model_key TEXT NOT NULL,
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
    PRIMARY KEY (case_id, model_key, fingerprint, options_key)
);
CREATE TABLE IF NOT EXISTS epistemic (
    case_id TEXT NOT NULL,
    model_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    options_key TEXT NOT NULL,
    samples INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (case_id, model_key, fingerprint, options_key, samples)
);
"""
_TABLES = ("signals", "epistemic")


def model_cache_key(content_id: str) -> str:
    """The model part of a signal's key: the same content under other library versions may score otherwise."""
    blob = f"{content_id}|asfda {asfda_version}|monai {monai.__version__}|torch {torch.__version__}"
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SignalKey:
    case_id: str
    model_key: str  # model_cache_key of the scoring model's content id
    fingerprint: str
    options_key: str

    def as_row(self) -> tuple:
        return (self.case_id, self.model_key, self.fingerprint, self.options_key)


def _pack(signal: CaseSignals) -> bytes:
    buffer = io.BytesIO()
    arrays = {
        "feature": np.asarray(signal.feature, dtype=np.float64),
        "class_entropy": np.asarray(signal.class_entropy, dtype=np.float64),
        "knowledge_matched": np.asarray(signal.knowledge_matched, dtype=np.float64),
        "class_voxels": np.asarray(signal.class_voxels, dtype=np.int64),
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
        # Entries written before per-class counts were kept: [] (the strategies that need them say so).
        class_voxels=[int(v) for v in data["class_voxels"]] if "class_voxels" in data.files else [],
    )


def _drop_name_keyed_tables(db) -> None:
    # Caches written before content ids were keyed by version name: exactly what could serve stale
    # signals, and recomputable, so they go.
    for table in _TABLES:
        columns = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
        if "model_version" in columns:
            db.execute(f"DROP TABLE {table}")


class SignalCache:
    def __init__(self, db_path: Path):
        self.path = Path(db_path)
        with connect(self.path) as db:
            _drop_name_keyed_tables(db)
            db.executescript(_SCHEMA)

    def get_many(self, keys: Iterable[SignalKey]) -> Dict[str, CaseSignals]:
        found: Dict[str, CaseSignals] = {}
        with connect(self.path) as db:
            for key in keys:
                row = db.execute(
                    "SELECT * FROM signals WHERE case_id=? AND model_key=? AND fingerprint=? AND options_key=?",
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
                "SELECT value FROM epistemic WHERE case_id=? AND model_key=? AND fingerprint=? AND options_key=?"
                " AND samples=?",
                (*key.as_row(), samples),
            ).fetchone()
        return None if row is None else float(row["value"])

    def put_epistemic(self, key: SignalKey, samples: int, value: float) -> None:
        with connect(self.path) as db:
            db.execute("INSERT OR REPLACE INTO epistemic VALUES (?, ?, ?, ?, ?, ?)", (*key.as_row(), samples, value))

    def model_keys(self) -> Set[str]:
        with connect(self.path) as db:
            return {r["model_key"] for table in _TABLES for r in db.execute(f"SELECT DISTINCT model_key FROM {table}")}

    def prune(self, keep: Iterable[str]) -> int:
        """Drop every entry whose model key is not in `keep`; returns how many rows went."""
        keep = sorted(set(keep))
        marks = ", ".join("?" for _ in keep)
        removed = 0
        with connect(self.path) as db:
            for table in _TABLES:
                removed += db.execute(f"DELETE FROM {table} WHERE model_key NOT IN ({marks})", keep).rowcount
        return removed


def kept_versions(store: Datastore) -> List[str]:
    """The active version and its parent: the models a rank or an adapt (or a rollback) scores with next."""
    active = store.models.active_version()
    if active is None:
        return []
    parent = next((v.parent for v in store.models.versions() if v.version == active), None)
    return [active] + ([parent] if parent and parent in {v.version for v in store.models.versions()} else [])


def prune_signal_cache(store: Datastore) -> int:
    """Drop cached signals of models that are neither active nor the active one's parent (~200 KiB per case
    and version for SwinUNETR-48); returns how many rows went. Without an active model nothing is dropped."""
    versions = kept_versions(store)
    if not versions:
        return 0
    keep = [model_cache_key(store.models.content_id(v)) for v in versions]
    return SignalCache(store.root / "asfda.db").prune(keep)
