"""Resumable results: one JSON line per finished run, keyed by its effective configuration. Several shard
processes may append to one file: appends hold a file lock, and `refresh` reads what the others added."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

from filelock import FileLock


class ResultStore:
    def __init__(self, folder: Path):
        self.path = Path(folder) / "runs.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock")
        self.rows: Dict[str, Dict] = {}
        self.refresh()

    def refresh(self) -> None:
        if not self.path.exists():
            return
        with self._lock:
            text = self.path.read_text()
        for line in text.splitlines():
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: that run simply runs again
                self.rows[row["key"]] = row

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def add(self, key: str, row: Dict) -> None:
        row = {**row, "key": key}
        with self._lock, open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
        self.rows[key] = row
