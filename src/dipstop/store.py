"""The results store: one SQLite file, one row per finished run, keyed by a hash of its spec.

A run's key is the sha256 of the canonical JSON of everything that determines it (image,
sigma, seed, protocol, dipstop's store version), so re-running a grid skips finished runs
and never duplicates one. Rows are written in one transaction when a run finishes: a crash
or kill -9 loses at most the run in progress. Per-iteration series are stored as a
compressed NumPy archive in the same row.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dipstop.errors import DipstopError

SCHEMA_VERSION = 1


def run_key(spec: dict) -> str:
    """sha256 of the canonical JSON of a run spec (sorted keys, no whitespace)."""
    canon = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


@dataclass
class StoredRun:
    key: str
    spec: dict
    summary: dict
    series: dict[str, np.ndarray]


class ResultStore:
    """A SQLite results store; safe to reopen after an interruption.

    >>> import tempfile, os
    >>> store = ResultStore(os.path.join(tempfile.mkdtemp(), "r.sqlite"))
    >>> key = store.put({"sigma": 25}, {"t": np.arange(3)}, {"psnr": 30.0})
    >>> store.has(key), store.get(key).summary["psnr"]
    (True, 30.0)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise DipstopError(f"results store {self.path} is not a file; give a .sqlite path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE IF NOT EXISTS runs (
                    key TEXT PRIMARY KEY, kind TEXT, spec TEXT, summary TEXT,
                    series BLOB, finished REAL);
                """
            )
            row = self.db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise DipstopError(f"{self.path} is not a dipstop results store ({exc})") from exc
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif row[0] != str(SCHEMA_VERSION):
            raise DipstopError(
                f"{self.path} was written by store schema {row[0]}, this dipstop reads "
                f"{SCHEMA_VERSION}; use a new store path or the dipstop version that wrote it"
            )

    def has(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE key=?", (key,)).fetchone() is not None

    def put(self, spec: dict, series: dict[str, np.ndarray], summary: dict) -> str:
        """Store a finished run atomically; returns its key. Re-putting a key replaces it."""
        key = run_key(spec)
        buf = io.BytesIO()
        np.savez_compressed(buf, **series)
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    spec.get("kind", ""),
                    json.dumps(spec, sort_keys=True),
                    json.dumps(summary),
                    buf.getvalue(),
                    time.time(),
                ),
            )
        return key

    def get(self, key: str) -> StoredRun:
        row = self.db.execute(
            "SELECT key, spec, summary, series FROM runs WHERE key=?", (key,)
        ).fetchone()
        if row is None:
            raise KeyError(key)
        return _decode(row)

    def runs(self, kind: str | None = None) -> Iterator[StoredRun]:
        """All stored runs (of one kind if given), oldest first."""
        sql = "SELECT key, spec, summary, series FROM runs"
        args: tuple = ()
        if kind is not None:
            sql += " WHERE kind=?"
            args = (kind,)
        for row in self.db.execute(sql + " ORDER BY finished", args).fetchall():
            yield _decode(row)

    def close(self) -> None:
        self.db.close()


def _decode(row: tuple) -> StoredRun:
    key, spec, summary, blob = row
    with np.load(io.BytesIO(blob)) as npz:
        series = {k: npz[k] for k in npz.files}
    return StoredRun(key, json.loads(spec), json.loads(summary), series)
