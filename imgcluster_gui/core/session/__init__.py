"""The editable clustering result and the runs of a sitting (headless, observable, no Qt).

One concern per module; every name is importable from ``imgcluster_gui.core.session``:

``edits``
    :class:`Edit` (one undoable hand edit, absolute values before / after), :class:`SessionEvent`,
    the bookkeeping over a list of edits (hand-placed images, names before them).
``model``
    :class:`ClusterSession`: the one owner of a result's state (labels, names, edit history,
    metrics, embedding, settings, the unsaved-changes flag ``modified``); views only read it and
    follow its events.
``persistence``
    The ``.imgcluster`` file: one run (``ClusterSession.save`` / ``load``) or every run of a sitting
    (:func:`save_workspace` / :func:`load_workspace`), :class:`SessionFileError`, format and versions.
``model_store``
    The trained network of a deep run, stored beside the session file.
``runs``
    :class:`RunRecord` and :class:`RunHistory`: the runs of a sitting side by side.
"""

from .edits import REGROUP_PREFIX, UNASSIGNED, Edit, SessionEvent, Subscriber, count_clusters
from .model import ClusterSession, PathLike
from .model_store import MODELS_SUFFIX, TrainedModelStore
from .persistence import (
    SESSION_FORMAT,
    SESSION_SUFFIX,
    SESSION_VERSION,
    SessionFileError,
    load_workspace,
    save_workspace,
)
from .runs import RunHistory, RunRecord

__all__ = [
    "ClusterSession",
    "Edit",
    "MODELS_SUFFIX",
    "PathLike",
    "REGROUP_PREFIX",
    "RunHistory",
    "RunRecord",
    "SESSION_FORMAT",
    "SESSION_SUFFIX",
    "SESSION_VERSION",
    "SessionEvent",
    "SessionFileError",
    "Subscriber",
    "TrainedModelStore",
    "UNASSIGNED",
    "count_clusters",
    "load_workspace",
    "save_workspace",
]
