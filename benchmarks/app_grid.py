"""The cluster grid at scale: 20,000 thumbnails, offscreen.

::

    python -m benchmarks.app_grid [--n 20000] [--clusters 50] [--smoke]

Generates small PNGs once into ``$TMPDIR/imgcluster_bench/app_grid_<n>``, builds a
:class:`ClusterGridWidget` over them and prints:

* time to show: build the widget, show it and paint the first screen;
* first screen of thumbnails: until every visible thumbnail is decoded (cold disk cache) and again
  from the disk cache with an empty memory cache;
* scrolling: time of each frame (scroll + paint of the newly exposed cells), one screen per frame
  through the whole grid (worst case) and 120 px per frame like a mouse wheel (median / 95th
  percentile / worst; 16.7 ms = 60 frames per second);
* a drag of 100 images onto another cluster (model drop -> undo stack -> session -> views
  refreshed and repainted), and its undo.

Then the same session in the real :class:`~imgcluster_gui.ui.main_window.MainWindow` (grid, scatter
with a 2-D embedding and metrics panel):

* window time to show: ``show_session`` until the window is painted;
* window first screen: until every visible thumbnail of the window's grid is on screen;
* a drag of 100 images in the window (the grid, scatter recolour and the scheduled metrics
  refresh follow the session's signal), and its undo.

``run(n_thumbnails=...)`` returns the figures as a dict (``benchmarks.speed --only app`` uses it);
the command line also writes ``benchmarks/results/app.md`` and ``app.json`` (``--no-write`` not to).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402


def bench_folder(n_images: int) -> list[str]:
    """``n_images`` small PNGs (made once, reused by later runs), sorted paths."""
    from PIL import Image

    folder = Path(tempfile.gettempdir()) / "imgcluster_bench" / f"app_grid_{n_images}"
    paths = [folder / f"img_{i:06d}.png" for i in range(n_images)]
    if all(p.is_file() for p in paths[:: max(1, n_images // 50)]) and paths[-1].is_file():
        return [str(p) for p in paths]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for path in paths:
        if path.is_file():
            continue
        colour = rng.integers(0, 256, size=3)
        pixels = np.clip(colour + rng.normal(0, 25, size=(48, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, compress_level=1)
    return [str(p) for p in paths]


def _wait(app, condition: Callable[[], bool], timeout_s: float) -> float:
    """Process events until ``condition()``; returns the seconds it took (inf on timeout)."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout_s:
            return float("inf")
        app.processEvents()
        time.sleep(0.001)
    return time.perf_counter() - start


def _visible_paths(grid) -> list[str]:
    """Paths of the items inside the scroll area's visible rectangle."""
    viewport = grid.scroll_area.viewport()
    shown = viewport.rect()
    paths = []
    for section in grid.sections().values():
        view = section.view
        if not view.isVisible():
            continue
        top_left = view.viewport().mapTo(viewport, view.viewport().rect().topLeft())
        visible = shown.translated(-top_left.x(), -top_left.y()).intersected(view.viewport().rect())
        if visible.isEmpty():
            continue
        cell = view.gridSize()
        columns = view.columns_for(view.viewport().width())
        first_row, last_row = visible.top() // cell.height(), visible.bottom() // cell.height()
        model = section.model
        for row in range(first_row * columns, min(model.rowCount(), (last_row + 1) * columns)):
            paths.append(model.session.paths[model.global_index(row)])
    return paths


def run(
    n_thumbnails: int = 20_000,
    n_clusters: int = 50,
    thumb_size: int = 96,
    width: int = 1280,
    height: int = 800,
    verbose: bool = True,
) -> dict[str, Any]:
    """Measure the grid over ``n_thumbnails`` images in ``n_clusters`` clusters; returns the figures."""
    from PySide6.QtCore import QModelIndex, Qt
    from PySide6.QtGui import QUndoStack
    from PySide6.QtWidgets import QApplication

    from imgcluster_gui.core.session import ClusterSession
    from imgcluster_gui.ui.cluster_grid import ClusterGridWidget
    from imgcluster_gui.ui.thumbnails import ThumbnailLoader

    say: Callable[[str], None] = print if verbose else (lambda text: None)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    t0 = time.perf_counter()
    paths = bench_folder(n_thumbnails)
    say(f"{n_thumbnails} images ready in {time.perf_counter() - t0:.1f} s")

    # Uneven cluster sizes, like real results: a few large clusters and a tail of small ones.
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, n_clusters + 1)
    labels = rng.choice(n_clusters, size=n_thumbnails, p=weights / weights.sum())
    labels[rng.random(n_thumbnails) < 0.02] = -1
    session = ClusterSession(paths, labels)
    cache_dir = Path(tempfile.mkdtemp(prefix="imgcluster_bench_thumbs_"))
    loader = ThumbnailLoader(cache_dir=cache_dir)
    stack = QUndoStack()
    results: dict[str, Any] = {
        "n_thumbnails": n_thumbnails,
        "n_clusters": len(session.cluster_ids()),
        "thumbnail_px": thumb_size,
        "window": f"{width}x{height}",
        "decode_threads": loader._max_workers,
    }

    # ---- time to show: widget built, shown, first screen painted
    def paint_screen() -> None:
        # Renders what is on screen now, through every visible view's delegate (the offscreen
        # platform does not paint child views on repaint()).
        grid.scroll_area.viewport().grab()

    start = time.perf_counter()
    grid = ClusterGridWidget(session, stack, loader, thumb_size=thumb_size)
    grid.preview_on_activate = False
    grid.resize(width, height)
    grid.show()
    app.processEvents()
    paint_screen()
    results["show_s"] = time.perf_counter() - start
    results["list_views"] = len(grid.sections())
    results["grid_height_px"] = grid.container.height()
    say(
        f"time to show: {results['show_s'] * 1000:.0f} ms ({results['list_views']} list views, "
        f"grid {results['grid_height_px']} px tall)"
    )

    # ---- first screen of thumbnails, cold then from the disk cache
    visible = _visible_paths(grid)
    results["visible_thumbnails"] = len(visible)

    def first_screen_loaded() -> bool:
        paint_screen()  # paints request what is missing
        return all(loader.cached(p, thumb_size) is not None for p in visible)

    results["first_screen_cold_s"] = _wait(app, first_screen_loaded, 60)
    loader.clear_memory()
    loader.set_generation()
    results["first_screen_disk_cache_s"] = _wait(app, first_screen_loaded, 60)
    say(
        f"first screen ({len(visible)} thumbnails): {results['first_screen_cold_s'] * 1000:.0f} ms decoding, "
        f"{results['first_screen_disk_cache_s'] * 1000:.0f} ms from the disk cache"
    )

    # ---- scrolling: a frame = the scroll plus the event processing that paints the newly exposed
    # cells (as in the running app).  "page": one screen per frame through the whole grid (every
    # visible cell new each frame: the worst case); "wheel": 120 px per frame, as a mouse wheel.
    bar = grid.scroll_area.verticalScrollBar()

    def scroll_pass(step: int, max_frames: int) -> list[float]:
        frame_ms = []
        for value in range(0, bar.maximum() + 1, max(1, step))[:max_frames]:
            start = time.perf_counter()
            bar.setValue(value)
            app.processEvents()
            frame_ms.append((time.perf_counter() - start) * 1000)
        bar.setValue(0)
        app.processEvents()
        return sorted(frame_ms)

    for mode, step, max_frames in (("page", bar.pageStep(), 100_000), ("wheel", 120, 600)):
        frames = scroll_pass(step, max_frames)
        results[f"scroll_{mode}_frames"] = len(frames)
        results[f"scroll_{mode}_median_ms"] = statistics.median(frames)
        results[f"scroll_{mode}_p95_ms"] = frames[int(0.95 * (len(frames) - 1))]
        results[f"scroll_{mode}_max_ms"] = frames[-1]
        say(
            f"scrolling, {mode} steps of {step} px, {len(frames)} frames: median {statistics.median(frames):.1f} ms, "
            f"p95 {results[f'scroll_{mode}_p95_ms']:.1f} ms, worst {frames[-1]:.1f} ms"
        )

    # ---- drag of 100 images from the largest cluster onto another one, then undo
    order = sorted((c for c in session.cluster_ids() if c >= 0), key=session.size_of, reverse=True)
    source, target = grid.section(order[0]).model, grid.section(order[1]).model
    n_drag = min(100, source.rowCount())
    mime = source.mimeData([source.index(r) for r in range(n_drag)])
    start = time.perf_counter()
    dropped = target.dropMimeData(mime, Qt.DropAction.MoveAction, -1, -1, QModelIndex())
    app.processEvents()
    paint_screen()
    results["drag_images"] = n_drag
    results["drag_apply_ms"] = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    stack.undo()
    app.processEvents()
    paint_screen()
    results["drag_undo_ms"] = (time.perf_counter() - start) * 1000
    results["drag_ok"] = bool(dropped) and np.array_equal(session.labels, labels)
    say(
        f"drag of {n_drag} images: {results['drag_apply_ms']:.1f} ms applied and shown, "
        f"undo {results['drag_undo_ms']:.1f} ms (labels restored: {results['drag_ok']})"
    )

    grid.dispose()
    grid.close()
    loader.shutdown()
    grid.deleteLater()
    app.processEvents()

    results.update(run_window(app, session, labels, width=1600, height=1000, say=say))
    return results


def run_window(app, session, labels: np.ndarray, width: int, height: int, say: Callable[[str], None]) -> dict[str, Any]:
    """The same session in the real main window: show, first screen, drag of 100 images, undo."""
    from PySide6.QtCore import QModelIndex, QSettings, Qt

    from imgcluster_gui.ui.main_window import MainWindow
    from imgcluster_gui.ui.settings import AppSettings

    # Settings, autosave and thumbnail caches in a throw-away folder (never the user's).
    scratch = Path(tempfile.mkdtemp(prefix="imgcluster_bench_window_"))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(scratch / "settings"))
    os.environ["IMGCLUSTER_DATA_DIR"] = str(scratch / "data")
    os.environ["IMGCLUSTER_CACHE_DIR"] = str(scratch / "cache")
    rng = np.random.default_rng(1)
    session.set_embedding(rng.normal(size=(len(session.paths), 2)).astype(np.float32))
    out: dict[str, Any] = {"window_size": f"{width}x{height}"}

    window = MainWindow(settings=AppSettings(), autosave=False)
    window.resize(width, height)
    window.show()
    app.processEvents()
    grid = window.grid
    grid.preview_on_activate = False
    start = time.perf_counter()
    window.show_session(session)
    app.processEvents()
    window.grab()
    out["window_show_s"] = time.perf_counter() - start
    visible = _visible_paths(grid)
    size = grid.delegate.thumb_size

    def first_screen() -> bool:
        grid.scroll_area.viewport().grab()
        return all(window.loader.cached(p, size) is not None for p in visible)

    out["window_visible_thumbnails"] = len(visible)
    out["window_first_screen_s"] = out["window_show_s"] + _wait(app, first_screen, 120)
    say(
        f"window: shown with {len(session.paths)} images in {out['window_show_s'] * 1000:.0f} ms, "
        f"first screen of {len(visible)} thumbnails after {out['window_first_screen_s'] * 1000:.0f} ms"
    )

    order = sorted((c for c in session.cluster_ids() if c >= 0), key=session.size_of, reverse=True)
    source, target = grid.section(order[0]).model, grid.section(order[1]).model
    n_drag = min(100, source.rowCount())
    before = session.labels.copy()
    mime = source.mimeData([source.index(r) for r in range(n_drag)])
    start = time.perf_counter()
    dropped = target.dropMimeData(mime, Qt.DropAction.MoveAction, -1, -1, QModelIndex())
    app.processEvents()
    window.grab()
    out["window_drag_images"] = n_drag
    out["window_drag_apply_ms"] = (time.perf_counter() - start) * 1000
    colours = window.scatter.point_colours()
    moved = np.flatnonzero(session.labels != before)
    out["window_drag_scatter_recoloured"] = (
        bool(dropped) and len(moved) == n_drag and len(set(colours[i] for i in moved)) == 1
    )
    start = time.perf_counter()
    window.undo_stack.undo()
    app.processEvents()
    window.grab()
    out["window_drag_undo_ms"] = (time.perf_counter() - start) * 1000
    out["window_drag_ok"] = bool(dropped) and np.array_equal(session.labels, before)
    say(
        f"window: drag of {n_drag} images {out['window_drag_apply_ms']:.1f} ms (scatter recoloured: "
        f"{out['window_drag_scatter_recoloured']}), undo {out['window_drag_undo_ms']:.1f} ms"
    )
    window.metrics_panel.wait_idle(60_000)
    window.close()
    window.deleteLater()
    app.processEvents()
    return out


RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(results: dict[str, Any], folder: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """``app.json`` (the figures) and ``app.md`` (a table for people) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "qt_platform": os.environ.get("QT_QPA_PLATFORM", ""),
    }
    try:
        import PySide6

        machine["pyside6"] = PySide6.__version__
    except Exception:  # pragma: no cover - PySide6 is there when the benchmark ran
        pass
    payload = {"benchmark": "app_grid", "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine, "results": results}
    json_path = folder / "app.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    r = results
    rows = [
        ("Grid widget: time to show (built, shown, first screen painted)", f"{r['show_s'] * 1000:.0f} ms"),
        (
            f"Grid widget: first screen of {r['visible_thumbnails']} thumbnails, cold (decoding)",
            f"{r['first_screen_cold_s'] * 1000:.0f} ms",
        ),
        ("Grid widget: first screen again from the disk cache", f"{r['first_screen_disk_cache_s'] * 1000:.0f} ms"),
        (
            f"Scrolling, mouse wheel (120 px/frame, {r['scroll_wheel_frames']} frames): median / p95 / worst",
            f"{r['scroll_wheel_median_ms']:.1f} / {r['scroll_wheel_p95_ms']:.1f} / {r['scroll_wheel_max_ms']:.1f} ms",
        ),
        (
            f"Scrolling, one screen per frame ({r['scroll_page_frames']} frames, every cell new): median / p95 / worst",
            f"{r['scroll_page_median_ms']:.1f} / {r['scroll_page_p95_ms']:.1f} / {r['scroll_page_max_ms']:.1f} ms",
        ),
        (
            f"Grid widget: drag of {r['drag_images']} images applied and repainted / undo",
            f"{r['drag_apply_ms']:.1f} / {r['drag_undo_ms']:.1f} ms (labels restored: {r['drag_ok']})",
        ),
    ]
    if "window_show_s" in r:
        rows += [
            (
                f"Main window ({r['window_size']}): session of {r['n_thumbnails']} images shown "
                "(grid, scatter, metrics)",
                f"{r['window_show_s'] * 1000:.0f} ms",
            ),
            (
                f"Main window: until its first screen of {r['window_visible_thumbnails']} thumbnails is on screen",
                f"{r['window_first_screen_s'] * 1000:.0f} ms",
            ),
            (
                f"Main window: drag of {r['window_drag_images']} images (grid + scatter recolour) / undo",
                f"{r['window_drag_apply_ms']:.1f} / {r['window_drag_undo_ms']:.1f} ms "
                f"(recoloured: {r['window_drag_scatter_recoloured']}, restored: {r['window_drag_ok']})",
            ),
        ]
    lines = [
        f"# App benchmark: {r['n_thumbnails']} thumbnails in {r['n_clusters']} clusters",
        "",
        f"`python -m benchmarks.app_grid` on {machine['cpus']} CPU core(s), Qt platform "
        f"`{machine['qt_platform'] or 'default'}`, {r['thumbnail_px']} px thumbnails, grid widget "
        f"{r['window']}, {r['decode_threads']} decode thread(s); {payload['date']}.",
        "A frame is the scroll plus the event processing that paints the newly exposed cells; "
        "16.7 ms is 60 frames per second.",
        "",
        "| Measure | Result |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        f"{r['list_views']} list views (one per cluster), grid {r['grid_height_px']} px tall.",
        "",
    ]
    md_path = folder / "app.md"
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return md_path, json_path


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="number of thumbnails")
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="200 thumbnails: checks that it runs (writes nothing)")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/app.*")
    args = parser.parse_args(argv)
    results = run(200 if args.smoke else args.n, args.clusters)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    if not (args.smoke or args.no_write):
        for path in write_results(results):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
