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
from dipstop.fitting import FitSettings

SCHEMA_VERSION = 3  # 1 -> 2: one run spec for bench and calibration; 3: its fit settings


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
        elif row[0] in ("1", "2"):
            migrate(self.db)
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
    return StoredRun(key, upgrade_spec(json.loads(spec)), json.loads(summary), series)


# Store schema 1 -> 2 -> 3: bench and calibration runs become one kind of run spec (2),
# which records the fit settings besides the protocol's (3).
#
# Schema 1 had two spec layouts: bench runs ({"kind": "bench", ..., "every", "wmv_window",
# "ema_weight"}) and calibration runs ({"kind": "calibration", "crop", "width", "lr",
# "z_noise_std", "iters", ...}). Schema 2 has one (`dipstop.lab.runs.RunSpec.as_dict`): the
# protocol as a dict, and every criterion's and average's settings by name. The upgrade
# rewrites each spec to what it would be under schema 2 and rekeys the row; series and
# summaries are unchanged. Schema 1 calibration specs did not record the protocol's name; every
# one dipstop wrote was made under the "cpu" protocol, which is what they get. Specs without
# fit settings were recorded with FitSettings' defaults, which is what they get.


def upgrade_spec(spec: dict) -> dict:
    """An older run spec as the current schema writes it (a current one comes back equal).

    >>> old = {"kind": "calibration", "image": "a.jpg", "image_sha256": "ab", "crop": 128,
    ...        "sigma": 25.0, "seed": 0, "width": 64, "lr": 0.01, "z_noise_std": 0.1,
    ...        "iters": 3000}
    >>> new = upgrade_spec(old)
    >>> new["protocol"]["max_iters"], new["criteria"], new["averages"]
    (3000, {'cifs': {'every': 1}}, {})
    """
    spec = _upgrade_layout(spec)
    if "fit" not in spec:
        spec = {**spec, "fit": FitSettings().result_settings()}
    return spec


def _upgrade_layout(spec: dict) -> dict:
    """Schema 1's two spec layouts as schema 2's one."""
    kind = spec.get("kind")
    common = {k: spec[k] for k in ("image", "image_sha256", "sigma", "seed")}
    if kind == "bench":
        every = spec["every"]
        return {
            "kind": "run",
            "dataset": spec["dataset"],
            **common,
            "protocol": spec["protocol"],
            "criteria": {
                "cifs": {"every": 1},
                "wmv": {"every": 1, "window": spec["wmv_window"]},
                "brisque": {"every": every},
                "niqe": {"every": every},
            },
            "averages": {"ema": {"kind": "ema", "weight": spec["ema_weight"]}},
            "ssim": ["", "ema"],
        }
    if kind == "calibration":
        return {
            "kind": "run",
            "dataset": None,
            **common,
            "protocol": {
                "name": "cpu",
                "width": spec["width"],
                "max_iters": spec["iters"],
                "crop": spec["crop"],
                "lr": spec["lr"],
                "z_noise_std": spec["z_noise_std"],
            },
            "criteria": {"cifs": {"every": 1}},
            "averages": {},
            "ssim": [],
        }
    return spec


def migrate(db: sqlite3.Connection) -> int:
    """Upgrade every row of an older store in one transaction; returns how many changed."""
    rows = db.execute("SELECT key, spec FROM runs").fetchall()
    changed = 0
    with db:
        for key, text in rows:
            new = upgrade_spec(json.loads(text))
            new_key = run_key(new)
            if new_key == key:
                continue
            if db.execute("SELECT 1 FROM runs WHERE key=?", (new_key,)).fetchone():
                db.execute("DELETE FROM runs WHERE key=?", (key,))  # already there, upgraded
            else:
                db.execute(
                    "UPDATE runs SET key=?, kind=?, spec=? WHERE key=?",
                    (new_key, new["kind"], json.dumps(new, sort_keys=True), key),
                )
            changed += 1
        db.execute("UPDATE meta SET value=? WHERE name='schema'", (str(SCHEMA_VERSION),))
    return changed
