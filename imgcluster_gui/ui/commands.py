"""Undo-stack commands for hand edits: each wraps one :class:`~imgcluster_gui.core.session.Edit`.

The edit is *planned* when the command is built (it records the labels and names before and
after), ``redo`` writes the new values and ``undo`` the old ones, so any sequence of undo / redo
on a ``QUndoStack`` gives back exact states.  The views never change anything themselves: they
follow the session's events.
"""

from __future__ import annotations

from typing import Iterable, Optional

from PySide6.QtGui import QUndoCommand

from ..core.session import ClusterSession, Edit


class SessionEditCommand(QUndoCommand):
    """A ``QUndoCommand`` whose redo is ``session.apply(edit)`` and undo ``session.revert(edit)``.

    An edit that changes nothing is marked obsolete, so ``QUndoStack.push`` drops it instead of
    filling the undo menu with no-ops.
    """

    def __init__(self, session: ClusterSession, edit: Edit, parent: Optional[QUndoCommand] = None) -> None:
        super().__init__(edit.description, parent)
        self.session = session
        self.edit = edit
        if edit.is_noop:
            self.setObsolete(True)

    def redo(self) -> None:
        self.session.apply(self.edit)

    def undo(self) -> None:
        self.session.revert(self.edit)


class MoveImagesCommand(SessionEditCommand):
    """Move images (global indices) into ``target_cluster`` (``-1`` = Unassigned)."""

    def __init__(
        self,
        session: ClusterSession,
        indices: Iterable[int],
        target_cluster: int,
        parent: Optional[QUndoCommand] = None,
    ) -> None:
        super().__init__(session, session.plan_move(indices, target_cluster), parent)


class NewClusterCommand(SessionEditCommand):
    """Put images into a new cluster, optionally named; ``cluster`` is its id."""

    def __init__(
        self,
        session: ClusterSession,
        indices: Iterable[int],
        name: Optional[str] = None,
        parent: Optional[QUndoCommand] = None,
    ) -> None:
        edit = session.plan_new_cluster(indices, name)
        super().__init__(session, edit, parent)
        self.cluster = int(edit.new_labels[0])


class RenameClusterCommand(SessionEditCommand):
    """Give ``cluster`` a name (empty = back to the default name)."""

    def __init__(
        self, session: ClusterSession, cluster: int, name: Optional[str], parent: Optional[QUndoCommand] = None
    ) -> None:
        super().__init__(session, session.plan_rename(cluster, name), parent)


class MergeClustersCommand(SessionEditCommand):
    """Move every image of ``clusters`` into ``into``."""

    def __init__(
        self, session: ClusterSession, clusters: Iterable[int], into: int, parent: Optional[QUndoCommand] = None
    ) -> None:
        super().__init__(session, session.plan_merge(clusters, into), parent)


class DeleteClusterCommand(SessionEditCommand):
    """Send ``cluster``'s images to Unassigned and drop its name."""

    def __init__(self, session: ClusterSession, cluster: int, parent: Optional[QUndoCommand] = None) -> None:
        super().__init__(session, session.plan_delete_cluster(cluster), parent)


class RegroupCommand(SessionEditCommand):
    """Switch to granularity level ``level`` (the granularity control), optionally keeping hand placements.

    The undo text names the number of groups ("Regroup into 20 groups"), and says when images
    placed by hand were kept where they are.
    """

    def __init__(
        self, session: ClusterSession, level: int, keep_hand_placed: bool = True, parent: Optional[QUndoCommand] = None
    ) -> None:
        kept = int(session.hand_placed().size) if keep_hand_placed else 0
        super().__init__(session, session.plan_regroup(level, keep_hand_placed=keep_hand_placed), parent)
        self.level = int(level)
        self.keep_hand_placed = bool(keep_hand_placed)
        if kept:
            self.setText(f"{self.edit.description} (keeping {kept} hand-placed image{'' if kept == 1 else 's'})")


class ConfirmClusterCommand(SessionEditCommand):
    """Confirm ``cluster``: its images stay where they are and count as placed by hand (a correction)."""

    def __init__(self, session: ClusterSession, cluster: int, parent: Optional[QUndoCommand] = None) -> None:
        super().__init__(session, session.plan_confirm(cluster), parent)
        self.cluster = int(cluster)


class ReclusterCommand(SessionEditCommand):
    """Re-cluster keeping the corrections (one edit planned by ``ClusterSession.plan_recluster`` or a fine-tune).

    The undo text says how many images changed group.
    """

    def __init__(self, session: ClusterSession, edit: Edit, parent: Optional[QUndoCommand] = None) -> None:
        super().__init__(session, edit, parent)
        changed = int(edit.indices.size)
        self.setText(f"{edit.description} ({changed} image{'' if changed == 1 else 's'} changed group)")
