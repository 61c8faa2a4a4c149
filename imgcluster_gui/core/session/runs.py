"""The runs of one sitting, side by side: :class:`RunRecord` and the :class:`RunHistory` that keeps them.

Each run (or opened session file) gives a :class:`RunRecord` holding its
:class:`~imgcluster_gui.core.session.model.ClusterSession`; the history numbers them, knows which
one is shown, and gives the values of the comparison table (:meth:`RunRecord.row`). A history is
what a session file holds (:meth:`RunHistory.save` / :meth:`RunHistory.load`, see
:mod:`.persistence`), and its :attr:`RunHistory.modified` is the one unsaved-changes flag of the
workspace (any run modified). Plain Python: the app's run list (``ui/run_list.py``) only displays a history.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class RunRecord:
    """One run as the list shows it, with the session it produced.

    Attributes
    ----------
    number : int
        1-based run number in its :class:`RunHistory`.
    session : ClusterSession
        The (editable) result; hand edits made while it is shown stay with it.
    config : dict
        ``PipelineConfig.to_dict()`` (or the saved settings of an opened session file).
    seconds : float
        Wall time of the run (0 for an opened file).
    started : float
        When it started (``time.time()``).
    source : str
        ``'run'`` or ``'file'``.
    title : str
        Shown instead of the backbone when the config has none (an opened file's name).
    history : list of dict
        Per-epoch training history of deep methods (empty for the others).
    """

    number: int
    session: Any
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    started: float = field(default_factory=time.time)
    source: str = "run"
    title: str = ""
    history: list = field(default_factory=list)  # a deep method's per-epoch ``history_``

    def row(self) -> dict[str, Any]:
        """The values of the comparison table's columns (None where unknown)."""
        metrics = dict(getattr(self.session, "metrics", None) or {})
        external = metrics.get("external") or {}
        backbones = self.config.get("backbones") or []
        labels = getattr(self.session, "labels", None)
        cluster_ids = [c for c in self.session.cluster_ids() if c >= 0] if hasattr(self.session, "cluster_ids") else []
        return {
            "number": self.number,
            "started": time.strftime("%H:%M:%S", time.localtime(self.started)),
            "backbone": " + ".join(backbones) if backbones else (self.title or "—"),
            "layer": self.config.get("layer") or "penultimate",
            "algorithm": self.config.get("algorithm") or "—",
            "k": len(cluster_ids),
            "n_images": 0 if labels is None else int(len(labels)),
            "silhouette": metrics.get("silhouette"),
            "calinski_harabasz": metrics.get("calinski_harabasz"),
            "davies_bouldin": metrics.get("davies_bouldin"),
            "nmi": external.get("nmi"),
            "ari": external.get("ari"),
            "acc": external.get("acc"),
            "purity": external.get("purity"),
            "seconds": float(self.seconds) if self.seconds else None,
        }


class RunHistory:
    """Every run of this sitting, oldest first, and the number of the one shown."""

    def __init__(self) -> None:
        self._records: list[RunRecord] = []
        self._current: Optional[int] = None

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(list(self._records))

    def records(self) -> list[RunRecord]:
        """The runs, oldest first (a copy of the list)."""
        return list(self._records)

    def record(self, number: int) -> RunRecord:
        """The run numbered ``number``; ``KeyError`` when there is none."""
        for record in self._records:
            if record.number == number:
                return record
        raise KeyError(f"no run number {number}")

    def record_of(self, session: Any) -> Optional[RunRecord]:
        """The run whose result is ``session`` (the same object), or None."""
        return next((r for r in self._records if r.session is session), None)

    def next_number(self) -> int:
        """The number the next run gets (1 for the first)."""
        return 1 + max((r.number for r in self._records), default=0)

    def add(self, record: RunRecord) -> RunRecord:
        """Append ``record`` and make it the current run; ``ValueError`` when its number is taken."""
        if any(r.number == record.number for r in self._records):
            raise ValueError(f"run number {record.number} is taken")
        self._records.append(record)
        self._current = record.number
        return record

    @property
    def current_number(self) -> Optional[int]:
        """The number of the run shown (None before the first)."""
        return self._current

    def set_current(self, number: int) -> RunRecord:
        """Make run ``number`` the current one; ``KeyError`` when there is none."""
        record = self.record(number)
        self._current = record.number
        return record

    @property
    def current(self) -> Optional[RunRecord]:
        """The run shown, or None."""
        return None if self._current is None else self.record(self._current)

    # ---------------------------------------------------------------- the workspace's unsaved work
    @property
    def modified(self) -> bool:
        """True when any run has changes no save wrote (the workspace's one unsaved-changes flag)."""
        return any(bool(getattr(r.session, "modified", False)) for r in self._records)

    def state_key(self) -> tuple:
        """Changes whenever a run is added or edited, or another run becomes current (the autosave skips an
        unchanged workspace by comparing it with the key it wrote)."""
        return (
            self._current,
            tuple(
                (r.number, getattr(r.session, "uid", id(r.session)), getattr(r.session, "revision", 0))
                for r in self._records
            ),
        )

    def save(self, path: "PathLike", mark_saved: bool = True) -> Path:
        """Write every run to ``path``: :func:`~imgcluster_gui.core.session.persistence.save_workspace`."""
        from .persistence import save_workspace

        return save_workspace(path, self, mark_saved=mark_saved)

    @classmethod
    def load(cls, path: "PathLike") -> "RunHistory":
        """Read a session file's runs: :func:`~imgcluster_gui.core.session.persistence.load_workspace`."""
        from .persistence import load_workspace

        return load_workspace(path)
