"""Take the README's screenshots from the running app: grid, scatter and metrics after a real run.

Usage::

    python tools/screenshots.py [--folder resources/sample_images] [--out docs/screenshots]

Runs the real main window on the folder (the default run: Leiden finds the groups, offline default
backbone), waits for the worker, then grabs ``main_grid.png`` (the whole window), ``scatter.png`` (the
scatter plot with a lasso selection and a hover card) and ``metrics.png`` (the metrics panel with
the granularity levels).
Without a display it uses Qt's offscreen platform; settings, autosave and caches go to a
temporary folder so the user's own are never touched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _wait(app, condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not finish in time")
        app.processEvents()
        time.sleep(0.02)


def _settle(app, seconds: float = 0.6) -> None:
    """Let thumbnails decode and layouts settle before grabbing."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(REPO / "resources" / "sample_images"))
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run")
    parser.add_argument("--size", default="1400x880", help="window size, WIDTHxHEIGHT (the default window size)")
    args = parser.parse_args(argv)

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    scratch = Path(tempfile.mkdtemp(prefix="imgcluster-shots-"))
    os.environ["IMGCLUSTER_DATA_DIR"] = str(scratch / "data")
    os.environ.setdefault("IMGCLUSTER_CACHE_DIR", str(scratch / "cache"))
    sys.path.insert(0, str(REPO))

    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(scratch / "settings"))
    from imgcluster_gui.ui.app import create_application
    from imgcluster_gui.ui.main_window import MainWindow
    from imgcluster_gui.ui.settings import AppSettings

    app = create_application([sys.argv[0]])
    window = MainWindow(settings=AppSettings(), autosave=False)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.show()
    window.set_folder(args.folder)
    outcome: list[str] = []
    window.runFinished.connect(outcome.append)
    window.start_run()
    _wait(app, lambda: bool(outcome), args.timeout)
    if outcome[0] != "succeeded":
        print(f"run {outcome[0]}: {window.last_error}", file=sys.stderr)
        return 1
    _wait(app, lambda: not window.metrics_panel.is_refreshing(), 60)
    session = window.session
    used: dict[str, int] = {}
    for cluster in sorted((c for c in session.cluster_ids() if c >= 0), key=lambda c: -session.size_of(c)):
        name = _majority_name(session, cluster)
        used[name] = used.get(name, 0) + 1
        # Two clusters of one folder: "Bag" and "Bag 2", as the app's suggested names do.
        session.rename(cluster, name if used[name] == 1 else f"{name} {used[name]}")
    window.undo_stack.clear()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Select one cluster through the scatter (a lasso along its points' convex hull), so the linked selection shows,
    # and bring that cluster to the top of the grid.
    from scipy.spatial import ConvexHull

    order = [c for c in window.grid.cluster_order() if c >= 0]
    first = order[1] if len(order) > 1 else order[0]
    members = session.indices_of(first)
    points = session.embedding[members]
    hull = points[ConvexHull(points).vertices] if len(points) >= 3 else points
    window.scatter.select_in_polygon([(float(x), float(y)) for x, y in hull])
    window.grid.scroll_to_cluster(order[0])
    _settle(app, 2.5)
    window.grab().save(str(out / "main_grid.png"))

    # The scatter on its own, floated larger (as a person would to look at it), hovering one point of the selection.
    window.scatter_dock.setFloating(True)
    window.scatter_dock.resize(720, 560)
    _settle(app, 0.8)
    window.scatter.view_box.autoRange()
    hover_index = int(members[len(members) // 2])
    window.scatter.show_hover(hover_index)
    _settle(app, 1.0)
    window.scatter.show_hover(hover_index)  # again, now that its thumbnail is decoded
    _settle(app, 0.3)
    window.scatter.grab().save(str(out / "scatter.png"))
    window.metrics_dock.setFloating(True)
    window.metrics_dock.resize(560, 760)
    _settle(app, 0.8)
    window.metrics_dock.grab().save(str(out / "metrics.png"))
    print(f"wrote {out / 'main_grid.png'}, {out / 'scatter.png'}, {out / 'metrics.png'}")
    window.messages.ask_save_changes = lambda *a: "discard"  # the renames above are not the person's work
    window.close()
    return 0


def _majority_name(session, cluster: int) -> str:
    """Name a cluster after the sub-folder most of its images come from (what a user would type)."""
    from collections import Counter

    folders = Counter(Path(session.paths[i]).parent.name for i in session.indices_of(cluster))
    name, _count = folders.most_common(1)[0]
    return name.capitalize()


if __name__ == "__main__":
    sys.exit(main())
