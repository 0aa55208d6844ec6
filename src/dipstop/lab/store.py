"""The results store: one SQLite file, one row per finished run, keyed by a hash of its spec.

A run's key is the sha256 of the canonical JSON of everything that determines it (image,
sigma, seed, protocol, dipstop's store version), so re-running a grid skips finished runs
and never duplicates one. Rows are written in one transaction when a run finishes: a crash
or kill -9 loses at most the run in progress. Per-iteration series are stored as a
compressed NumPy archive in the same row.

Several processes may share a store. Writes wait for another process's lock (SQLite's busy
timeout, then retries) rather than lose a finished run; a lock held longer is reported as a
lock. Benches claim a run before computing it (the `claims` table: owner, host, pid and a
heartbeat), so two benches on one store never compute the same run; the claim of a process
that died (on this host), or whose heartbeat stopped `STALE_SECONDS` ago, is taken over.
The report opens a store read-only (`readonly=True`), which changes nothing in any file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sqlite3
import threading
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from dipstop.checkpoints import run_key  # the store keys runs as checkpoints name them
from dipstop.errors import DipstopError
from dipstop.fitting import FitSettings
from dipstop.lambda_table import lam_for_sigma

SCHEMA_VERSION = 3  # 1 -> 2: one run spec for bench and calibration; 3: its fit settings
OLDER_SCHEMAS = ("1", "2")  # migrated on a writable open (`migrate`)
RUN_COLUMNS = ("key", "kind", "spec", "summary", "series", "finished")
BUSY_SECONDS = 10.0  # SQLite waits this long for another process's lock, per attempt
ATTEMPTS = 30  # then tries again, up to this many times (5 minutes in all)
RETRY_PAUSE = 1.0  # seconds between attempts
HEARTBEAT_SECONDS = 60.0  # a bench refreshes its claims this often
STALE_SECONDS = 600.0  # a claim not refreshed for this long is taken over

T = TypeVar("T")


@dataclass
class StoredRun:
    """One finished run as the store holds it.

    Attributes
    ----------
    key : str
        `run_key(spec)`.
    spec : dict
        What determines the run (upgraded to the current schema).
    summary : dict
        Per-run numbers (peak PSNR, seconds, pixels, ...).
    series : dict of ndarray
        Per-iteration series by name ("mse", "psnr", "jpeg_bytes", ...).
    """

    key: str
    spec: dict
    summary: dict
    series: dict[str, np.ndarray]

    def table_lam(self, table: dict, sigma: float | None = None) -> float:
        """The lam `denoise` takes from `table` for this run's image: at `sigma` (default the
        run's estimated sigma, else its true one) and the run's own pixel count, so a table
        calibrated at several sizes answers for the size the run was fitted at.

        >>> run = StoredRun("k", {"sigma": 25.0}, {"pixels": 40_000}, {})
        >>> table = {"entries": [{"sigma": 25.0, "lam": 10.0, "pixels": 10_000},
        ...                      {"sigma": 25.0, "lam": 40.0, "pixels": 160_000}]}
        >>> round(run.table_lam(table), 6), round(run.table_lam(table, sigma=50.0), 6)
        (20.0, 20.0)
        """
        if sigma is None:
            sigma = self.summary.get("sigma_estimated", self.spec["sigma"])
        return lam_for_sigma(sigma, table, self.summary["pixels"])


class ResultStore:
    """A SQLite results store; safe to reopen after an interruption and to share.

    `readonly` opens an existing store for reading only (the report): a file that is not a
    dipstop store is refused and left as it was. A writable open creates the file (and its
    folder) if needed and migrates an older schema's rows (`migrate`).

    Parameters
    ----------
    path : str or Path
        The SQLite file.
    readonly : bool
        Open an existing store without changing anything in it.

    Raises
    ------
    DipstopError
        If `path` is not a dipstop store (or, read-only, does not exist), was written by a
        newer schema, or stays locked by another process.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.sqlite")
    >>> store = ResultStore(path)
    >>> key = store.put({"sigma": 25}, {"t": np.arange(3)}, {"psnr": 30.0})
    >>> store.has(key), store.get(key).summary["psnr"]
    (True, 30.0)
    >>> reader = ResultStore(path, readonly=True)
    >>> reader.get(key).series["t"]
    array([0, 1, 2])
    >>> reader.put({"sigma": 50}, {}, {})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dipstop.errors.DipstopError: ...r.sqlite was opened read-only; open it without readonly
    >>> reader.close(); store.close()
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        if self.path.exists() and not self.path.is_file():
            raise DipstopError(f"results store {self.path} is not a file; give a .sqlite path")
        if readonly and not self.path.is_file():
            raise DipstopError(f"no results store at {self.path}; check the path")
        try:
            if readonly:
                uri = "file:" + urllib.parse.quote(str(self.path.resolve())) + "?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, timeout=BUSY_SECONDS)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=BUSY_SECONDS)
            self.db.isolation_level = None  # transactions are explicit: BEGIN IMMEDIATE
            self._retry(self._open)
        except sqlite3.DatabaseError as exc:
            raise DipstopError(
                f"{self.path} is not a dipstop results store ({exc}); give the path of a store "
                "written by dipstop bench or calibrate, or a new path"
            ) from exc

    older = False  # an older schema, read-only: specs are upgraded as they are read

    def _open(self) -> None:
        """Check (and, unless read-only, create or complete) the tables."""
        tables = {
            name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if tables and not {"meta", "runs"} <= tables:
            raise DipstopError(
                f"{self.path} is an SQLite file but not a dipstop results store (its tables: "
                f"{', '.join(sorted(tables))}); give a new store path"
            )
        if not tables and self.readonly:
            raise DipstopError(
                f"{self.path} is not a dipstop results store (it holds no tables); give the "
                "path of a store written by dipstop bench or calibrate"
            )
        if tables:
            columns = tuple(row[1] for row in self.db.execute("PRAGMA table_info(runs)"))
            if columns != RUN_COLUMNS:
                raise DipstopError(
                    f"the runs table of {self.path} has columns ({', '.join(columns)}), a "
                    f"dipstop store's has ({', '.join(RUN_COLUMNS)}); it was not written by "
                    "dipstop: give a new store path"
                )
            row = self.db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
            self.older = row is not None and row[0] in OLDER_SCHEMAS
            if self.older and not self.readonly:
                self._in_transaction(migrate)  # one-shot; read-only stores upgrade as read
                self.older = False
            elif row is not None and row[0] not in (str(SCHEMA_VERSION), *OLDER_SCHEMAS):
                raise DipstopError(
                    f"{self.path} was written by store schema {row[0]}, this dipstop reads "
                    f"{SCHEMA_VERSION}; use a new store path or the dipstop version that wrote it"
                )
            if self.readonly or ("claims" in tables and row is not None):
                return
        self._in_transaction(self._create)  # retried with the rest of `_open`

    def _create(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, kind TEXT, spec TEXT, "
            "summary TEXT, series BLOB, finished REAL)"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT, host TEXT, "
            "pid INTEGER, claimed_at REAL)"
        )
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def has(self, key: str) -> bool:
        """Whether the run of `key` is stored (finished)."""
        return self._retry(
            lambda: self.db.execute("SELECT 1 FROM runs WHERE key=?", (key,)).fetchone() is not None
        )

    def put(self, spec: dict, series: dict[str, np.ndarray], summary: dict) -> str:
        """Store a finished run atomically; returns its key. Re-putting a key replaces it.

        Waits for another process's write lock (minutes) rather than lose the run; any claim
        on the run goes with it.

        Parameters
        ----------
        spec : dict
            What determines the run; its key is `run_key(spec)`.
        series : dict of ndarray
            Per-iteration series, stored as a compressed NumPy archive.
        summary : dict
            Per-run numbers, stored as JSON.

        Returns
        -------
        str
            The run's key.

        Raises
        ------
        DipstopError
            If the store is read-only or stays locked.

        Examples
        --------
        >>> import tempfile, os
        >>> store = ResultStore(os.path.join(tempfile.mkdtemp(), "r.sqlite"))
        >>> key = store.put({"sigma": 25}, {"psnr": np.zeros(3)}, {"peak_psnr": 0.0})
        >>> key == run_key({"sigma": 25}), store.put({"sigma": 25}, {}, {}) == key
        (True, True)
        >>> store.get(key).series, len(list(store.runs()))
        ({}, 1)
        >>> store.close()
        """
        key = run_key(spec)
        buf = io.BytesIO()
        np.savez_compressed(buf, **series)
        row = (
            key,
            spec.get("kind", ""),
            json.dumps(spec, sort_keys=True),
            json.dumps(summary),
            buf.getvalue(),
            time.time(),
        )

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?)", row)
            db.execute("DELETE FROM claims WHERE key=?", (key,))

        self._transaction(write)
        return key

    def get(self, key: str) -> StoredRun:
        """The stored run of `key`: KeyError when there is none, DipstopError when its row
        is corrupt.

        Parameters
        ----------
        key : str
            `run_key(spec)` of the run.

        Returns
        -------
        StoredRun

        Examples
        --------
        >>> import tempfile, os
        >>> store = ResultStore(os.path.join(tempfile.mkdtemp(), "r.sqlite"))
        >>> key = store.put({"sigma": 25}, {"psnr": np.array([20.0, 21.5])}, {})
        >>> store.get(key).spec, store.get(key).series["psnr"]
        ({'sigma': 25}, array([20. , 21.5]))
        >>> store.get("no such key")
        Traceback (most recent call last):
        ...
        KeyError: 'no such key'
        >>> store.close()
        """
        row = self._retry(
            lambda: self.db.execute(
                "SELECT key, spec, summary, series FROM runs WHERE key=?", (key,)
            ).fetchone()
        )
        if row is None:
            raise KeyError(key)
        try:
            return _decode(row, self.older)
        except _Corrupt as exc:
            raise DipstopError(_corrupt_message(self.path, key, exc)) from None

    def runs(self, kind: str | None = None) -> Iterator[StoredRun]:
        """All stored runs (of one kind if given), oldest first; corrupt rows are skipped
        with a warning naming their key.

        Parameters
        ----------
        kind : str, optional
            Only runs whose spec's "kind" is this ("run" for every run dipstop records now).

        Yields
        ------
        StoredRun

        Examples
        --------
        >>> import tempfile, os
        >>> store = ResultStore(os.path.join(tempfile.mkdtemp(), "r.sqlite"))
        >>> for sigma in (25, 50):
        ...     _ = store.put({"kind": "run", "sigma": sigma}, {}, {})
        >>> _ = store.put({"kind": "other", "sigma": 75}, {}, {})
        >>> [r.spec["sigma"] for r in store.runs("run")]
        [25, 50]
        >>> store.close()
        """
        sql = "SELECT key, spec, summary, series FROM runs"
        args: tuple = ()
        if kind is not None:
            sql += " WHERE kind=?"
            args = (kind,)
        for row in self._retry(
            lambda: self.db.execute(sql + " ORDER BY finished", args).fetchall()
        ):
            try:
                yield _decode(row, self.older)
            except _Corrupt as exc:
                warnings.warn(
                    f"skipping a run: {_corrupt_message(self.path, row[0], exc)}", stacklevel=2
                )

    def claim(self, key: str) -> bool:
        """Claim the run of `key` for this store object's owner; False when it is stored or
        another live bench holds it. A claim of a dead process on this host, or one whose
        heartbeat is older than STALE_SECONDS, is taken over.

        Parameters
        ----------
        key : str
            `run_key(spec)` of the run.

        Returns
        -------
        bool
            Whether this store object now holds the claim (and should compute the run).

        Examples
        --------
        Two store objects on one file stand for two benches:

        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "r.sqlite")
        >>> a, b = ResultStore(path), ResultStore(path)
        >>> a.claim("k"), b.claim("k"), a.claim("k")
        (True, False, True)
        >>> a.release()
        >>> b.claim("k")
        True
        >>> a.close(); b.close()
        """

        def take(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM runs WHERE key=?", (key,)).fetchone() is not None:
                return False
            held = db.execute(
                "SELECT owner, host, pid, claimed_at FROM claims WHERE key=?", (key,)
            ).fetchone()
            if held is not None and held[0] != self.owner and _alive(*held[1:]):
                return False
            host, pid = socket.gethostname(), os.getpid()
            db.execute(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                (key, self.owner, host, pid, time.time()),
            )
            return True

        return self._transaction(take)

    def release(self) -> None:
        """Drop every claim this store object holds (one attempt: a claim left behind goes
        stale, and is taken over, once this process has ended)."""
        self._transaction(
            lambda db: db.execute("DELETE FROM claims WHERE owner=?", (self.owner,)), attempts=1
        )

    @contextlib.contextmanager
    def claiming(self, every: float | None = None) -> Iterator[None]:
        """Keep this object's claims alive (a heartbeat every `every` s, HEARTBEAT_SECONDS by
        default, on a thread) while the block runs, and release them when it ends."""
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(stop, every or HEARTBEAT_SECONDS), daemon=True
        )
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            try:
                self.release()
            except DipstopError as exc:  # left to go stale; the run is not lost either way
                warnings.warn(f"could not release claims ({exc})", stacklevel=3)

    def _heartbeat(self, stop: threading.Event, every: float) -> None:
        db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            while not stop.wait(every):
                with contextlib.suppress(sqlite3.Error):  # a lock: the next beat will do
                    db.execute(
                        "UPDATE claims SET claimed_at=? WHERE owner=?", (time.time(), self.owner)
                    )
        finally:
            db.close()

    def close(self) -> None:
        """Close the database connection (claims stay until released or stale)."""
        self.db.close()

    def _transaction(self, work: Callable[[sqlite3.Connection], T], attempts: int = 0) -> T:
        """`work(db)` in one write transaction, retried while another process holds a lock."""
        if self.readonly:
            raise DipstopError(f"{self.path} was opened read-only; open it without readonly")
        return self._retry(lambda: self._in_transaction(work), attempts)

    def _in_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(db)` in one write transaction, once: a lock raises OperationalError."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = work(self.db)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        return result

    def _retry(self, work: Callable[[], T], attempts: int = 0) -> T:
        """`work()`, tried `attempts` (default ATTEMPTS) times while it meets a lock."""
        attempts = attempts or ATTEMPTS
        for attempt in range(attempts):
            try:
                return work()
            except sqlite3.OperationalError as exc:
                if not _is_lock(exc):
                    raise DipstopError(
                        f"results store {self.path} failed ({exc}); check the file and its "
                        "folder are readable and writable"
                    ) from exc
                if attempt + 1 == attempts:
                    waited = attempts * BUSY_SECONDS + attempt * RETRY_PAUSE
                    raise DipstopError(
                        f"results store {self.path} is locked by another process (waited "
                        f"{waited:.0f} s); let that process finish or stop it, then rerun"
                    ) from exc
                time.sleep(RETRY_PAUSE)
        raise AssertionError("unreachable")


class _Corrupt(Exception):
    """A stored row that cannot be decoded."""


def _decode(row: tuple, older: bool = False) -> StoredRun:
    key, spec, summary, blob = row
    try:
        spec, summary = json.loads(spec), json.loads(summary)
    except (TypeError, ValueError) as exc:
        raise _Corrupt(f"its spec or summary is not JSON ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(summary, dict):
        raise _Corrupt("its spec or summary is not a JSON object")
    try:
        with np.load(io.BytesIO(blob)) as npz:
            series = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zip, pickle, truncation and type errors alike
        raise _Corrupt(f"its series are not a NumPy archive ({type(exc).__name__})") from None
    if older:  # a read-only store of an older schema: upgraded as read
        try:
            spec = upgrade_spec(spec)
        except (KeyError, TypeError) as exc:
            raise _Corrupt(f"its spec is not one of an older schema ({exc!r})") from None
    return StoredRun(key, spec, summary, series)


def _corrupt_message(path: Path, key: str, exc: Exception) -> str:
    return (
        f'run {key} in {path} is corrupt: {exc}; delete its row (sqlite3 {path} "DELETE FROM '
        f"runs WHERE key='{key}'\") and rerun to record it again"
    )


def _is_lock(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _alive(host: str, pid: int, claimed_at: float) -> bool:
    """Whether a claim's owner may still be running it."""
    if time.time() - claimed_at > STALE_SECONDS:
        return False
    if host != socket.gethostname():
        return True  # its heartbeat is recent: trust it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or not ours to ask
    return True


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

    Schema 1's bench and calibration specs become schema 2's one run spec; a run spec
    without fit settings gets `FitSettings`' defaults, with which it was recorded (schema 3).
    Writable stores migrate their rows once (`migrate`); read-only ones upgrade specs as
    they are read.

    Parameters
    ----------
    spec : dict
        A stored spec of any schema.

    Returns
    -------
    dict
        The spec under the current schema (a new dict when changed).

    Examples
    --------
    >>> old = {"kind": "calibration", "image": "a.jpg", "image_sha256": "ab", "crop": 128,
    ...        "sigma": 25.0, "seed": 0, "width": 64, "lr": 0.01, "z_noise_std": 0.1,
    ...        "iters": 3000}
    >>> new = upgrade_spec(old)
    >>> new["protocol"]["max_iters"], new["criteria"], new["averages"]
    (3000, {'cifs': {'every': 1}}, {})
    """
    spec = _upgrade_layout(spec)
    if spec.get("kind") == "run" and "fit" not in spec:
        spec = {**spec, "fit": FitSettings().result_settings()}
    return spec


def _upgrade_layout(spec: dict) -> dict:
    """Schema 1's two spec layouts as schema 2's one."""
    kind = spec.get("kind")
    if kind not in ("bench", "calibration"):
        return spec  # schema 2's layout, or not a run dipstop records
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
    """Upgrade every row of an older store (inside the caller's transaction); returns how
    many rows changed."""
    rows = db.execute("SELECT key, spec FROM runs").fetchall()
    changed = 0
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
