"""Where the app keeps its own files, and how every file it writes is written.

One home for two contracts that used to be repeated module by module:

* **Folders.**  :func:`cache_dir` (features, neighbour graphs, thumbnails, downloaded weights' index)
  and :func:`data_dir` (autosave, the export registry).  ``$IMGCLUSTER_CACHE_DIR`` and
  ``$IMGCLUSTER_DATA_DIR`` override them (the tests give each test its own); otherwise they are the
  platformdirs user folders of the app, without an "author" level (on Windows
  ``%LOCALAPPDATA%\\imgcluster\\Cache``, not ``imgcluster\\imgcluster\\Cache``).
* **Atomic writes.**  :func:`atomic_write` opens a temporary file beside the target and replaces the
  target only once the file is complete and synced, so a crash or a full disk never leaves half a
  file where a whole one was; :func:`atomic_copy` does the same for a copy.  A write that fails
  removes its temporary file; one that was killed (``kill -9``, power cut) leaves a hidden
  ``.<name>.XXXXXXXX.tmp`` behind, which :func:`remove_stale_temp_files` (called by the next save
  or open of a session) removes once it is older than :data:`STALE_TEMP_SECONDS`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

APP_NAME = "imgcluster"
CACHE_ENV_VAR = "IMGCLUSTER_CACHE_DIR"
DATA_ENV_VAR = "IMGCLUSTER_DATA_DIR"

__all__ = [
    "APP_NAME",
    "CACHE_ENV_VAR",
    "DATA_ENV_VAR",
    "STALE_TEMP_SECONDS",
    "StorageError",
    "atomic_copy",
    "atomic_write",
    "cache_dir",
    "data_dir",
    "remove_stale_temp_files",
]

# A temporary file of atomic_write untouched this long belongs to a write that was killed: a live
# write keeps its file's modification time fresh, so it is never removed under a running save.
STALE_TEMP_SECONDS = 300.0
_TEMP_SUFFIX = ".tmp"


class StorageError(OSError):
    """A file cannot be written where asked; ``str(e)`` is the user-facing reason."""


def cache_dir(*parts: str) -> Path:
    """The app's cache folder (or a sub-folder of it); not created.

    Parameters
    ----------
    *parts : str
        Sub-folder names, e.g. ``cache_dir("features")``.
    """
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        base = Path(override).expanduser()
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    return base.joinpath(*parts)


def data_dir(create: bool = True) -> Path:
    """The app's data folder (autosave, export registry); created unless ``create=False``."""
    override = os.environ.get(DATA_ENV_VAR)
    if override:
        folder = Path(override).expanduser()
    else:
        import platformdirs

        folder = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def _current_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any worker thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# tempfile.mkstemp makes files private (0600); a written file should get the usual permissions.
_NEW_FILE_MODE = 0o666 & ~_current_umask()


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def remove_stale_temp_files(path: PathLike, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Remove the temporary files that killed :func:`atomic_write` calls of ``path`` left behind.

    Only files named exactly as :func:`atomic_write` names them (``.<name>.XXXXXXXX.tmp`` beside
    ``path``), regular (never a link or a folder) and not modified for ``older_than`` seconds are
    removed; errors (a read-only folder, a file that vanished) are ignored.

    Parameters
    ----------
    path : path-like
        The target file whose leftovers to remove.
    older_than : float
        Minimum age in seconds (modification time) of a file removed.

    Returns
    -------
    list of Path
        The files removed.
    """
    target = Path(os.fsdecode(path))
    folder = target.parent if str(target.parent) else Path(".")
    # mkstemp's random part: 8 characters of [a-z0-9_].
    pattern = re.compile(re.escape(_temp_prefix(target)) + r"[a-z0-9_]{8}" + re.escape(_TEMP_SUFFIX))
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if (
                not entry.is_file(follow_symlinks=False)
                or now - entry.stat(follow_symlinks=False).st_mtime < older_than
            ):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    On any error the temporary file is removed and ``path`` is left as it was.  A replaced file
    keeps its permissions; a new one gets the usual ones (umask applied).  A killed write's
    temporary file stays: callers that rewrite one file again and again (the session) remove it
    with :func:`remove_stale_temp_files` (not done here: an export writes thousands of files into
    one folder, and each would list the folder).

    Parameters
    ----------
    path : path-like
        The file to write.  Its folder must exist.
    mode : str
        ``"w"`` (text) or ``"wb"`` (bytes); ``open_kwargs`` go to :func:`os.fdopen` (``encoding``,
        ``newline``).

    Raises
    ------
    StorageError
        The folder does not exist, ``path`` is a folder, or the folder is not writable.
    """
    target = Path(os.fsdecode(path))
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise StorageError(f"Folder not found: {os.fspath(folder)}")
    if target.is_dir():
        raise StorageError(f"Cannot write {os.fspath(target)}: it is a folder")
    try:
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(target), suffix=_TEMP_SUFFIX)
    except OSError as exc:
        raise StorageError(f"Cannot write in {os.fspath(folder)}: {exc.strerror or exc}") from None
    try:
        try:
            file_mode = stat.S_IMODE(os.stat(target).st_mode)  # replacing a file keeps its permissions
        except OSError:
            file_mode = _NEW_FILE_MODE
        with os.fdopen(fd, mode, **open_kwargs) as fh:  # on a bad encoding it closes the descriptor itself
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # e.g. file systems without POSIX permissions
            os.chmod(temp_name, file_mode)
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def atomic_copy(source: PathLike, dest: PathLike) -> None:
    """Copy ``source`` to ``dest`` through a temporary file, so ``dest`` is never half a copy."""
    with open(source, "rb") as reader, atomic_write(dest, "wb") as writer:
        shutil.copyfileobj(reader, writer, length=1 << 20)
