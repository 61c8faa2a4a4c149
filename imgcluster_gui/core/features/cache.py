"""On-disk feature cache: a second run over the same images extracts nothing.

An entry is keyed by the *content* of the image file (a BLAKE2b hash of its bytes) and by a
*model key* naming everything that changes the numbers (backbone, layer, weights identity,
preprocessing, code version).  Two different ``img001.png`` in two folders therefore never share
features, and a renamed or moved file is still found.

Storage is one SQLite database (standard library, safe across processes and crashes): each
completed batch is committed in one transaction, so a crash or a cancel leaves either the whole
batch or nothing, never a partial vector (SQLite's journal does what "write a temp file, then
``os.replace``" does, without a file per batch; 100k images stay one file).  Vectors are stored as
float32 bytes and read back as float32.

Hashing every file on each run would cost as much as reading the whole folder, so the hash of a
file is remembered together with its size, modification and change time and inode, the way git's
index does; a file whose stat changed is hashed again.

The cache is an accelerator, never a reason for a run to fail: a write that cannot be made (the
database locked by another process for longer than :data:`WRITE_TIMEOUT_S`, a full disk, a
read-only folder) raises at once from :meth:`FeatureCache.put_many`, and the extraction goes on
without storing (with a warning); remembered file hashes that cannot be written are just not
remembered (:attr:`FeatureCache.write_error` says why).

The location is the ``root`` argument, else ``features`` in the app's cache folder
(:func:`~imgcluster_gui.core.storage.cache_dir`: ``$IMGCLUSTER_CACHE_DIR`` or the platformdirs
user cache folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from ..progress import ProgressLike, check, ensure
from ..storage import cache_dir

PathLike = Union[str, os.PathLike]

DATABASE_NAME = "features.sqlite3"
# Files hashed between two progress calls (each one a cancel point).
_HASH_CHUNK = 256
# SQLite's default limit on "?" parameters is 999 in old builds.
_SQL_CHUNK = 900
# Seconds a read or the schema set-up waits for another process's lock (WAL readers rarely wait).
_BUSY_TIMEOUT_S = 30.0
# Seconds a write waits: another instance commits a batch in milliseconds, so a lock held longer
# is someone else's (a database browser, a stuck process) and waiting 30 s per batch helps nobody.
WRITE_TIMEOUT_S = 2.0


def default_cache_dir() -> Path:
    """``$IMGCLUSTER_CACHE_DIR/features`` when set, else ``<user cache dir>/imgcluster/features``."""
    return cache_dir("features")


def content_hash(path: PathLike) -> str:
    """BLAKE2b-160 hex digest of a file's bytes (the content part of a cache key)."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)  # hashlib releases the GIL on large buffers: threads help
    return digest.hexdigest()


def _model_id(model_key: str) -> str:
    return hashlib.sha256(model_key.encode("utf-8")).hexdigest()[:32]


def _stat_signature(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (int(stat.st_size), int(stat.st_mtime_ns), int(stat.st_ctime_ns), int(stat.st_ino))


class FeatureCache:
    """Features stored on disk by (file content, model key).

    Parameters
    ----------
    root : path, optional
        Folder of the cache; default :func:`default_cache_dir`. Created on first write.

    Notes
    -----
    One instance may be used from any one thread at a time (a lock guards the connection); several
    processes may share a folder (SQLite locking).
    """

    def __init__(self, root: Optional[PathLike] = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self._connection: Optional[sqlite3.Connection] = None
        self._lock = threading.RLock()
        #: Why the last write failed (``None`` while writes succeed): hashes and features that
        #: could not be stored are simply computed again next time.
        self.write_error: Optional[str] = None

    # ------------------------------------------------------------------ connection
    @property
    def database_path(self) -> Path:
        return self.root / DATABASE_NAME

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.root.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.database_path, timeout=_BUSY_TIMEOUT_S, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable up to the last commit
            with connection:
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS models (model_id TEXT PRIMARY KEY, description TEXT NOT NULL)"
                )
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS features (model_id TEXT NOT NULL, "
                    "content_key TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, "
                    "PRIMARY KEY (model_id, content_key)) WITHOUT ROWID"
                )
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS file_hashes (path BLOB PRIMARY KEY, "
                    "size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, "
                    "content_key TEXT NOT NULL)"
                )
                # Capture time / GPS by content (core/photo_meta.py): a second scan reads no EXIF.
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS photo_meta (reader TEXT NOT NULL, content_key TEXT NOT NULL, "
                    "meta BLOB NOT NULL, PRIMARY KEY (reader, content_key)) WITHOUT ROWID"
                )
            self._connection = connection
        return self._connection

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction that waits at most :data:`WRITE_TIMEOUT_S` for a lock."""
        with self._lock:
            try:
                connection = self._connect()  # inside: a read-only or full disk fails here too
                connection.execute(f"PRAGMA busy_timeout = {int(WRITE_TIMEOUT_S * 1000)}")
                try:
                    with connection:  # one transaction: committed whole or rolled back
                        yield connection
                finally:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            except (sqlite3.Error, OSError) as exc:
                self.write_error = f"{type(exc).__name__}: {exc}"
                raise
            self.write_error = None

    def close(self) -> None:
        """Close the database (it is reopened on next use)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureCache(root={str(self.root)!r})"

    # ------------------------------------------------------------------ content keys
    def key_for(self, path: PathLike) -> str:
        """The content key of one file (hashed, or remembered while its stat is unchanged).

        Raises
        ------
        OSError
            The file cannot be read.
        """
        keys, failures = self.keys_for([path])
        if failures:
            raise OSError(failures[0][1])
        return keys[0]  # type: ignore[return-value]

    def keys_for(
        self, paths: Sequence[PathLike], progress: ProgressLike = None, n_threads: int = 4
    ) -> tuple[list[Optional[str]], list[tuple[int, str]]]:
        """Content keys of many files.

        Parameters
        ----------
        paths : sequence of path
        progress : callable, optional
            Receives the fraction of files done; may raise :class:`~..progress.Cancelled`.
        n_threads : int
            Threads hashing files whose stat changed (hashing releases the GIL).

        Returns
        -------
        keys : list of (str or None)
            One per path; ``None`` where the file could not be read.
        failures : list of (index, reason)

        Notes
        -----
        The hashes are remembered in the database when it can be written; when it cannot, the
        keys are still right and :attr:`write_error` (cleared at the start of each call) says why.
        """
        progress = ensure(progress)
        self.write_error = None  # an earlier failure is not this call's
        n = len(paths)
        keys: list[Optional[str]] = [None] * n
        failures: list[tuple[int, str]] = []
        encoded = [os.fsencode(os.path.abspath(os.fspath(p))) for p in paths]
        signatures: list[Optional[tuple[int, int, int, int]]] = [None] * n
        for index, path in enumerate(paths):
            try:
                signatures[index] = _stat_signature(os.stat(path))
            except OSError as exc:
                failures.append((index, _os_reason(exc)))
            if index % _HASH_CHUNK == 0:
                check(progress, "Checking files")
        remembered = self._remembered_hashes(encoded, signatures)
        to_hash = [i for i in range(n) if signatures[i] is not None and i not in remembered]
        for index, key in remembered.items():
            keys[index] = key
        done = n - len(to_hash)
        progress(done / max(n, 1), "Hashing files")
        new_rows = []
        with ThreadPoolExecutor(max_workers=max(1, n_threads)) as pool:
            for start in range(0, len(to_hash), _HASH_CHUNK):
                chunk = to_hash[start : start + _HASH_CHUNK]
                for index, outcome in zip(chunk, pool.map(_hash_or_reason, [paths[i] for i in chunk])):
                    digest, reason = outcome
                    if digest is None:
                        failures.append((index, reason))
                        continue
                    keys[index] = digest
                    new_rows.append((encoded[index], *signatures[index], digest))  # type: ignore[misc]
                done += len(chunk)
                progress(done / max(n, 1), "Hashing files")  # a cancel point per chunk
        self._remember_hashes(new_rows)
        failures.sort()
        return keys, failures

    def _remembered_hashes(
        self, encoded: list[bytes], signatures: list[Optional[tuple[int, int, int, int]]]
    ) -> dict[int, str]:
        if not self.database_path.exists():
            return {}
        found: dict[int, str] = {}
        index_of = {path: i for i, path in enumerate(encoded)}
        with self._lock:
            connection = self._connect()
            for start in range(0, len(encoded), _SQL_CHUNK):
                chunk = encoded[start : start + _SQL_CHUNK]
                rows = connection.execute(
                    f"SELECT path, size, mtime_ns, ctime_ns, inode, content_key FROM file_hashes "
                    f"WHERE path IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for path, size, mtime_ns, ctime_ns, inode, key in rows:
                    index = index_of[bytes(path)]
                    if signatures[index] == (size, mtime_ns, ctime_ns, inode):
                        found[index] = key
        return found

    def _remember_hashes(self, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            with self._writing() as connection:
                connection.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?)", rows)
        except (sqlite3.Error, OSError):
            return  # an optimisation only: the files are hashed again next time (write_error says why)

    # ------------------------------------------------------------------ features
    def get_many(self, keys: Iterable[str], model_key: str) -> dict[str, np.ndarray]:
        """Stored vectors of ``keys`` under ``model_key``.

        Returns
        -------
        dict of str to ndarray of shape (D,), float32
            Only the keys found (a damaged row is treated as missing).
        """
        found: dict[str, np.ndarray] = {}
        query = "SELECT content_key, dim, vector FROM features WHERE model_id = ? AND content_key IN"
        for key, dim, blob in self._rows_for_keys(query, _model_id(model_key), keys):
            if len(blob) == dim * 4:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def _rows_for_keys(self, query: str, scope: str, keys: Iterable[str]) -> list[tuple]:
        """The rows of ``query`` (ending in ``content_key IN``, its one ``?`` = ``scope``) for ``keys``.

        In chunks of :data:`_SQL_CHUNK` keys (SQLite's limit on parameters); no rows without a database.
        """
        wanted = list(dict.fromkeys(k for k in keys if k))
        if not wanted or not self.database_path.exists():
            return []
        rows: list[tuple] = []
        with self._lock:
            connection = self._connect()
            for start in range(0, len(wanted), _SQL_CHUNK):
                chunk = wanted[start : start + _SQL_CHUNK]
                placeholders = ",".join("?" * len(chunk))
                rows += connection.execute(f"{query} ({placeholders})", [scope, *chunk]).fetchall()
        return rows

    def put_many(self, model_key: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Store vectors under ``model_key`` in one transaction (all of them or none).

        Parameters
        ----------
        model_key : str
            Everything that changes the numbers (see ``extract.model_key``).
        vectors : mapping of str to array of shape (D,)
            Content key -> feature vector (stored as float32).

        Raises
        ------
        sqlite3.Error or OSError
            The database cannot be written: locked by another process for more than
            :data:`WRITE_TIMEOUT_S`, the disk full, the folder read-only.  Nothing was stored;
            :attr:`write_error` says why.
        """
        if not vectors:
            return
        model_id = _model_id(model_key)
        rows = []
        for key, vector in vectors.items():
            flat = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            if not np.all(np.isfinite(flat)):
                continue  # never persist NaN/inf: the next run extracts the image again
            rows.append((model_id, key, int(flat.shape[0]), flat.tobytes()))
        with self._writing() as connection:
            connection.execute("INSERT OR IGNORE INTO models VALUES (?, ?)", (model_id, model_key))
            connection.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)", rows)

    # ------------------------------------------------------------------ photo metadata
    def get_photo_meta(self, keys: Iterable[str], reader: str) -> dict[str, np.ndarray]:
        """Remembered metadata rows (``core.photo_meta`` tables, float64) of ``keys`` read by ``reader``.

        Returns
        -------
        dict of str to ndarray of shape (6,), float64
            Only the keys found (a damaged row is treated as missing).
        """
        found: dict[str, np.ndarray] = {}
        query = "SELECT content_key, meta FROM photo_meta WHERE reader = ? AND content_key IN"
        for key, blob in self._rows_for_keys(query, reader, keys):
            if len(blob) % 8 == 0 and blob:
                found[key] = np.frombuffer(blob, dtype=np.float64).copy()
        return found

    def put_photo_meta(self, reader: str, rows: Mapping[str, np.ndarray]) -> None:
        """Remember metadata rows by content key in one transaction (raises like :meth:`put_many`)."""
        if not rows:
            return
        values = [
            (reader, key, np.ascontiguousarray(row, dtype=np.float64).reshape(-1).tobytes())
            for key, row in rows.items()
        ]
        with self._writing() as connection:
            connection.executemany("INSERT OR REPLACE INTO photo_meta VALUES (?, ?, ?)", values)

    def count(self, model_key: Optional[str] = None) -> int:
        """Number of stored vectors (of one model key, or in all)."""
        if not self.database_path.exists():
            return 0
        with self._lock:
            connection = self._connect()
            if model_key is None:
                return int(connection.execute("SELECT COUNT(*) FROM features").fetchone()[0])
            return int(
                connection.execute(
                    "SELECT COUNT(*) FROM features WHERE model_id = ?", (_model_id(model_key),)
                ).fetchone()[0]
            )

    def model_keys(self) -> list[str]:
        """Model keys that have entries (readable descriptions)."""
        if not self.database_path.exists():
            return []
        with self._lock:
            rows = self._connect().execute("SELECT description FROM models ORDER BY description").fetchall()
        return [row[0] for row in rows]

    # ------------------------------------------------------------------ housekeeping
    def clear(self) -> None:
        """Remove every stored feature and remembered hash."""
        with self._lock:
            self.close()
            for suffix in ("", "-wal", "-shm", "-journal"):
                path = self.database_path.with_name(DATABASE_NAME + suffix)
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError:
                    # Another process holds the file open (Windows): empty it instead.
                    connection = self._connect()
                    with connection:
                        for table in ("features", "models", "file_hashes", "photo_meta"):
                            connection.execute(f"DELETE FROM {table}")
                    connection.execute("VACUUM")
                    return

    def size_bytes(self) -> int:
        """Bytes the cache uses on disk."""
        if not self.root.is_dir():
            return 0
        total = 0
        for path in self.root.iterdir():
            try:
                if path.is_file():
                    total += path.stat().st_size
            except OSError:
                continue
        return total


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not an image"
    return f"cannot read file: {exc.strerror or exc}"


def _hash_or_reason(path: PathLike) -> tuple[Optional[str], str]:
    try:
        return content_hash(path), ""
    except OSError as exc:
        return None, _os_reason(exc)
