"""A feature store on disk for folders too large to hold in memory: rows appended as they come, read memory-mapped.

One folder holds three files:

``features.bin``
    The rows, ``(n_rows, dim)`` in ``float32`` or ``float16``, C order, appended chunk by chunk.  It is read
    through :class:`numpy.memmap`: a million 1280-d float32 rows (5.1 GB) cost no RAM until read, and the
    operating system pages them in and out as a consumer walks them.
``paths.jsonl``
    One JSON string per row (the image path; undecodable bytes kept as surrogate escapes, see ``os.fsencode``).
``store.json``
    The index: ``dim``, ``dtype``, the model key (what made the numbers), the number of committed rows and the
    committed byte length of ``paths.jsonl``, and the files that could not be read, with the reason.

Writes are crash- and cancel-safe without a database: a chunk's rows and paths are appended and flushed to disk
first, then ``store.json`` is replaced atomically.  Opening a store cuts both files back to the committed lengths,
so a chunk half-written when the process died is dropped and only that chunk is extracted again
(:func:`extract_to_store` resumes from the paths already stored).  The numbers are those of
:func:`~.extract.extract_features` (this module calls it on chunks of paths), so a store and an in-memory run
agree exactly.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from ..dataset import SkippedFile
from ..progress import ProgressLike, check, ensure, wrap_callback
from ..storage import atomic_write

if TYPE_CHECKING:
    from .extract import FeatureResult

PathLike = Union[str, os.PathLike]

STORE_FORMAT = 1
INDEX_NAME = "store.json"
ROWS_NAME = "features.bin"
PATHS_NAME = "paths.jsonl"
STORE_DTYPES = ("float32", "float16")
#: Images per :func:`extract_features` call: large enough that loading the network per chunk (about a second)
#: is a few per cent of the chunk's time on a CPU, small enough that a cancel loses little.
DEFAULT_CHUNK_SIZE = 2048
#: Rows converted per step when a float16 store is read as float32 (bounds the temporary).
READ_BLOCK_ROWS = 65536


class FeatureStoreError(Exception):
    """The folder is not a feature store, or not one these features fit (one-line message with the fix)."""


@dataclass
class StoreInfo:
    """What ``store.json`` says (the committed state)."""

    dim: int
    dtype: str
    model_key: str
    n_rows: int
    paths_bytes: int
    failed: list[SkippedFile]
    meta: dict[str, Any]


class FeatureStore:
    """Append-only, memory-mapped feature rows with their image paths.

    Use :meth:`create` for a new store, :meth:`open` for an existing one, :meth:`open_or_create` to resume.

    Parameters
    ----------
    root : path
        The store's folder.
    info : StoreInfo
        Its committed state (as read from or written to ``store.json``).
    """

    def __init__(self, root: PathLike, info: StoreInfo) -> None:
        self.root = Path(root)
        self.info = info
        self._paths: Optional[list[str]] = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls,
        root: PathLike,
        dim: int,
        dtype: str = "float32",
        model_key: str = "",
        meta: Optional[dict[str, Any]] = None,
    ) -> "FeatureStore":
        """A new, empty store in ``root`` (created if missing; refused if it already holds a store).

        Parameters
        ----------
        root : path
        dim : int
            Columns of every row.
        dtype : {'float32', 'float16'}
            How rows are kept on disk; float16 halves the disk and page-cache footprint (cosine to the float32
            row ~0.99999 for CNN features) and is read back as float32.
        model_key : str
            What made the numbers (:func:`~.extract.model_key`); appending is refused under another key.
        meta : dict, optional
            JSON-able extras kept in the index (backbone, layer, source folder).
        """
        if dtype not in STORE_DTYPES:
            raise ValueError(f"dtype must be one of {STORE_DTYPES}, got {dtype!r}")
        if int(dim) < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        folder = Path(root)
        if (folder / INDEX_NAME).exists():
            raise FeatureStoreError(f"{folder} already holds a feature store; open it instead")
        folder.mkdir(parents=True, exist_ok=True)
        for name in (ROWS_NAME, PATHS_NAME):
            (folder / name).write_bytes(b"")
        store = cls(folder, StoreInfo(int(dim), dtype, model_key, 0, 0, [], dict(meta or {})))
        store._commit()
        return store

    @classmethod
    def open(cls, root: PathLike) -> "FeatureStore":
        """An existing store, cut back to its last committed chunk (a chunk a crash left half-written is dropped).

        Raises
        ------
        FeatureStoreError
            ``root`` holds no store, or its index is unreadable or from a newer version.
        """
        folder = Path(root)
        index = folder / INDEX_NAME
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FeatureStoreError(
                f"{folder} is not a feature store (no {INDEX_NAME}); make one with `imgcluster extract`"
            ) from None
        except (OSError, ValueError) as exc:
            raise FeatureStoreError(f"the feature store index {index} cannot be read ({exc})") from None
        if not isinstance(data, dict) or int(data.get("format", 0)) > STORE_FORMAT:
            raise FeatureStoreError(f"{index} is from a newer imgcluster (format {data.get('format')!r})")
        try:
            info = StoreInfo(
                dim=int(data["dim"]),
                dtype=str(data["dtype"]),
                model_key=str(data.get("model_key", "")),
                n_rows=int(data["n_rows"]),
                paths_bytes=int(data["paths_bytes"]),
                failed=[SkippedFile(str(p), str(r)) for p, r in data.get("failed", [])],
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureStoreError(f"the feature store index {index} is damaged ({exc})") from None
        if info.dtype not in STORE_DTYPES:
            raise FeatureStoreError(f"{index} names an unknown dtype {info.dtype!r}")
        store = cls(folder, info)
        store._truncate_to_committed()
        return store

    @classmethod
    def open_or_create(
        cls,
        root: PathLike,
        dim: int,
        dtype: str = "float32",
        model_key: str = "",
        meta: Optional[dict[str, Any]] = None,
    ) -> "FeatureStore":
        """Resume the store in ``root`` when there is one (it must fit ``dim`` and ``model_key``), else create it."""
        if not (Path(root) / INDEX_NAME).exists():
            return cls.create(root, dim, dtype, model_key, meta)
        store = cls.open(root)
        if store.dim != int(dim):
            raise FeatureStoreError(f"{root} holds {store.dim}-d features, not {dim}-d; choose another --store folder")
        if model_key and store.info.model_key and store.info.model_key != model_key:
            raise FeatureStoreError(
                f"{root} holds features of another model ({store.info.model_key}); choose another --store folder"
            )
        return store

    # ------------------------------------------------------------------ reading
    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info.dtype)

    def __len__(self) -> int:
        return self.info.n_rows

    @property
    def failed(self) -> list[SkippedFile]:
        """Files that could not be read, with the reason (never retried by :func:`extract_to_store`)."""
        return list(self.info.failed)

    @property
    def paths(self) -> list[str]:
        """The image of each row, in row order (read once, then kept)."""
        if self._paths is None:
            with open(self.root / PATHS_NAME, "rb") as handle:
                raw = handle.read(self.info.paths_bytes)
            self._paths = [json.loads(line) for line in raw.splitlines()] if raw else []
        return list(self._paths)

    def rows(self) -> np.ndarray:
        """All rows as a read-only memory map of the stored dtype, ``(n_rows, dim)`` (no RAM until touched)."""
        if self.info.n_rows == 0:
            return np.zeros((0, self.dim), dtype=self.dtype)
        return np.memmap(self.root / ROWS_NAME, dtype=self.dtype, mode="r", shape=(self.info.n_rows, self.dim))

    def iter_blocks(self, block_rows: int = READ_BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """``(start_row, float32 block)`` over the store, ``block_rows`` at a time (bounded memory for any N)."""
        rows = self.rows()
        for start in range(0, rows.shape[0], block_rows):
            yield start, np.asarray(rows[start : start + block_rows], dtype=np.float32)

    def features(self) -> np.ndarray:
        """The rows as float32 for the core's numerical code.

        A float32 store gives its memory map itself (no copy: faiss and numpy read it in place, the page cache
        holds it); a float16 store is converted block by block into one float32 array, so the only temporary is
        one block.
        """
        rows = self.rows()
        if self.dtype == np.float32:
            return rows
        out = np.empty(rows.shape, dtype=np.float32)
        for start in range(0, rows.shape[0], READ_BLOCK_ROWS):
            out[start : start + READ_BLOCK_ROWS] = rows[start : start + READ_BLOCK_ROWS]
        return out

    def to_feature_result(self) -> "FeatureResult":
        """The store as the :class:`~.extract.FeatureResult` the pipeline takes (nothing extracted, all stored)."""
        from .extract import FeatureResult

        meta = self.info.meta
        backbones = [str(b) for b in meta.get("backbones", [])] or [str(meta.get("backbone", "store"))]
        return FeatureResult(
            features=self.features(),
            paths=[Path(p) for p in self.paths],
            failed=self.failed,
            n_extracted=0,
            n_cached=len(self),
            seconds=0.0,
            device="none",
            backbones=backbones,
            view_slices=[(0, self.dim)],
            model_keys=[self.info.model_key],
        )

    # ------------------------------------------------------------------ writing
    def append(self, paths: Sequence[PathLike], features: np.ndarray, failed: Iterable[SkippedFile] = ()) -> None:
        """Add one chunk: ``features[i]`` belongs to ``paths[i]``; ``failed`` are files of this chunk left out.

        The rows and paths reach the disk before the index names them, so after a crash or a cancel the store
        holds whole chunks only.
        """
        block = np.ascontiguousarray(features, dtype=self.dtype)
        names = [os.fsdecode(p) for p in paths]
        if block.ndim != 2 or block.shape[1] != self.dim or block.shape[0] != len(names):
            raise ValueError(f"expected ({len(names)}, {self.dim}) features, got {block.shape}")
        if not np.isfinite(block).all():
            raise ValueError("features contain NaN or infinite values")
        # ensure_ascii: a surrogate-escaped (undecodable) name is written as \udcXX, and json.loads gives it back.
        encoded = "".join(json.dumps(name) + "\n" for name in names).encode("ascii")
        for name, payload in ((ROWS_NAME, block.tobytes()), (PATHS_NAME, encoded)):
            with open(self.root / name, "ab") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        self.info.n_rows += block.shape[0]
        self.info.paths_bytes += len(encoded)
        self.info.failed.extend(failed)
        if self._paths is not None:
            self._paths.extend(names)
        self._commit()

    def _commit(self) -> None:
        info = self.info
        document = {
            "format": STORE_FORMAT,
            "dim": info.dim,
            "dtype": info.dtype,
            "model_key": info.model_key,
            "n_rows": info.n_rows,
            "paths_bytes": info.paths_bytes,
            "failed": [[s.path, s.reason] for s in info.failed],
            "meta": info.meta,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with atomic_write(self.root / INDEX_NAME, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(document, indent=1))

    def _truncate_to_committed(self) -> None:
        """Cut what a crash appended after the last commit; a file shorter than its commit is damage."""
        row_bytes = self.info.n_rows * self.dim * self.dtype.itemsize
        for name, committed in ((ROWS_NAME, row_bytes), (PATHS_NAME, self.info.paths_bytes)):
            target = self.root / name
            size = target.stat().st_size if target.exists() else -1
            if size < committed:
                raise FeatureStoreError(
                    f"the feature store file {target} is shorter than its index says ({size} < {committed} bytes); "
                    "the store is damaged: extract into a new --store folder"
                )
            if size > committed:
                with open(target, "r+b") as handle:
                    handle.truncate(committed)


def store_info_text(store: FeatureStore) -> str:
    """One line for people: rows, dims, dtype, size on disk, files skipped."""
    size = (store.root / ROWS_NAME).stat().st_size / 1e6
    return (
        f"{len(store)} images x {store.dim} ({store.info.dtype}, {size:.1f} MB) in {store.root}, "
        f"{len(store.info.failed)} skipped"
    )


def pending_paths(store: FeatureStore, paths: Sequence[PathLike]) -> list[Path]:
    """``paths`` not yet in ``store`` (neither stored nor recorded as unreadable), in input order."""
    done = set(store.paths) | {s.path for s in store.info.failed}
    return [Path(os.fsdecode(p)) for p in paths if os.fsdecode(p) not in done]


def extract_to_store(
    paths: Sequence[PathLike],
    store_dir: PathLike,
    backbone: Optional[str] = None,
    layer: Optional[str] = None,
    weights_path: Optional[PathLike] = None,
    device: str = "auto",
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    cache: Any = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    dtype: str = "float32",
    progress: ProgressLike = None,
    meta: Optional[dict[str, Any]] = None,
) -> FeatureStore:
    """Extract ``paths`` into the store at ``store_dir`` chunk by chunk, resuming what an earlier run left.

    Each chunk is one :func:`~.extract.extract_features` call whose rows are appended (and committed) before the
    next starts, so memory stays at one chunk's features whatever the number of images, and a cancel or a crash
    keeps every chunk already written: running the same command again extracts only the rest.

    Parameters
    ----------
    paths : sequence of path
        The images (typically ``scan_folder(...).paths``).
    store_dir : path
        The store's folder (created, or resumed when it holds a store of the same model).
    backbone, layer, weights_path, device, batch_size, num_workers, cache
        As in :func:`~.extract.extract_features` (``cache`` defaults to off: the store is the record).
    chunk_size : int
        Images per extraction call and per commit.
    dtype : {'float32', 'float16'}
        On-disk precision of a new store.
    progress : callable, optional
        A progress consumer; raising :class:`~..progress.Cancelled` stops after the current batch, keeping the
        chunks committed before it.
    meta : dict, optional
        Extras for the index (e.g. the source folder).

    Returns
    -------
    FeatureStore
    """
    from .backbones import DEFAULT_BACKBONE, get_backbone, resolve_layer
    from .extract import extract_features, model_key

    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    progress = ensure(progress)
    name = backbone or DEFAULT_BACKBONE
    layer_id = resolve_layer(name, layer)
    dim = get_backbone(name).feature_dims[layer_id]
    key = model_key(name, layer_id, weights_path)
    info = {"backbone": name, "backbones": [name], "layer": layer_id, **(meta or {})}
    store = FeatureStore.open_or_create(store_dir, dim, dtype, key, info)
    todo = pending_paths(store, paths)
    total, already = len(todo) + len(store) + len(store.info.failed), len(store) + len(store.info.failed)
    if already:
        progress.note(f"Resuming the feature store: {already} image(s) already there, {len(todo)} to extract")
    for start in range(0, len(todo), int(chunk_size)):
        check(progress, "Features: next chunk")
        chunk = todo[start : start + int(chunk_size)]
        done = already + start
        result = extract_features(
            chunk,
            backbone=name,
            layer=layer_id,
            weights_path=weights_path,
            device=device,
            batch_size=batch_size,
            num_workers=num_workers,
            cache=cache,
            progress=wrap_callback(
                progress, done / max(total, 1), (done + len(chunk)) / max(total, 1), f"{done}/{total} "
            ),
        )
        store.append(result.paths, result.features, result.failed)
    progress(1.0, f"Feature store: {store_info_text(store)}")
    return store
