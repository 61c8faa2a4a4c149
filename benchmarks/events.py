"""Time-aware grouping: does the "Group by time" weight bring a photo library's events out as groups?

::

    python -m benchmarks.events [--smoke] [--per-class N] [--weights 0 0.25 0.5 1] [--seed 0] [--out DIR]

A synthetic photo library built from real photos (``../shared/datasets/imagenette-1k``, ten ImageNet
classes): each class's photos are split into 2 or 3 **events** (a day at the zoo, a wedding: photos
within 1 to 4 hours), the events days apart (2 to 5 days between one event's start and the next's), in a
random order, so an event holds one subject and a subject spans several events. The copies are written as
JPEGs with the capture time in EXIF ``DateTimeOriginal`` into a temporary folder (the originals are only
read), named ``IMG_00001.jpg``... in shooting order, with no sub-folders (nothing but the pixels and the
dates says what belongs together).

For each time weight the whole pipeline runs on the folder (:func:`~imgcluster_gui.core.pipeline.run_pipeline`,
Leiden, the default backbone; features cached after the first run): NMI / ARI against the **events** and NMI
against the **classes**, the number of groups found against the number of events, and the seconds of the
capture-date stage (the first run reads every header, the later ones find them in the cache by content).
A second table keeps the features of that run and forgets the dates of a random 30 % of the photos
(``--undated``), as a library with scans or screenshots mixed in: NMI against the events on all photos and on
the dated ones. Writes ``events.json`` and ``events.md`` to ``benchmarks/results/`` (``events_smoke.*`` with
``--smoke``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import common
from .common import markdown_table

DATASET = "imagenette-1k"
WEIGHTS = (0.0, 0.25, 0.5, 1.0)
EPOCH = dt.datetime(2024, 3, 1, 9, 0, 0)


def build_library(
    folder: Path, per_class: Optional[int], seed: int = 0
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Write the dated copies; returns (paths in shooting order, class per path, event per path, capture seconds)."""
    from PIL import Image

    from imgcluster_gui.core.dataset import load_image

    source = common.DATASETS_DIR / DATASET
    if not source.is_dir():
        raise SystemExit(f"../shared/datasets/{DATASET} is not present")
    rng = random.Random(seed)
    events: list[tuple[str, list[Path]]] = []
    for class_folder in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(class_folder.glob("*.*"))
        rng.shuffle(files)
        if per_class is not None:
            files = files[:per_class]
        n_events = rng.choice((2, 3))
        for part in range(n_events):
            events.append((class_folder.name, files[part::n_events]))
    rng.shuffle(events)
    start = EPOCH
    shots: list[tuple[dt.datetime, str, int, Path]] = []
    for number, (class_name, files) in enumerate(events):
        hours = rng.uniform(1.0, 4.0)
        for path in files:
            shots.append((start + dt.timedelta(hours=rng.uniform(0.0, hours)), class_name, number, path))
        start += dt.timedelta(days=rng.uniform(2.0, 5.0))
    shots.sort(key=lambda shot: shot[0])
    folder.mkdir(parents=True, exist_ok=True)
    paths, classes, event_ids, seconds = [], [], [], []
    for index, (when, class_name, number, original) in enumerate(shots):
        target = folder / f"IMG_{index + 1:05d}.jpg"
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
        load_image(original).save(target, "JPEG", quality=92, exif=exif)  # a copy: the original is only read
        paths.append(str(target))
        classes.append(class_name)
        event_ids.append(number)
        seconds.append((when - dt.datetime(1970, 1, 1)).total_seconds())
    return paths, classes, np.asarray(event_ids), np.asarray(seconds, dtype=np.float64)


def mixed_outings(classes: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Capture times where each outing holds parts of 2 or 3 classes; returns (outing per photo, seconds)."""
    rng = np.random.default_rng(seed + 1)
    parts: list[np.ndarray] = []
    for name in sorted(set(classes.tolist())):
        members = rng.permutation(np.flatnonzero(classes == name))
        parts.extend(np.array_split(members, 3))
    order = rng.permutation(len(parts))
    outing = np.zeros(classes.size, dtype=np.int64)
    seconds = np.zeros(classes.size, dtype=np.float64)
    start, position, number = 0.0, 0, 0
    while position < len(order):
        size = min(int(rng.integers(2, 4)), len(order) - position)
        members = np.concatenate([parts[k] for k in order[position : position + size]])
        outing[members] = number
        seconds[members] = start + rng.uniform(0.0, rng.uniform(1.0, 4.0) * 3600.0, members.size)
        start += rng.uniform(2.0, 5.0) * 86_400.0
        position += size
        number += 1
    return outing, seconds


def _forget_photo_meta(cache_root: Path) -> None:
    import sqlite3

    database = cache_root / "features" / "features.sqlite3"
    if database.exists():
        with sqlite3.connect(database) as connection:
            connection.execute("DELETE FROM photo_meta")


def _aligned(result: Any, paths: list[str], values: np.ndarray) -> np.ndarray:
    index = {p: i for i, p in enumerate(paths)}
    return values[[index[p] for p in result.paths]]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from imgcluster_gui.core.clustering.registry import make_estimator
    from imgcluster_gui.core.embedding import NO_EMBEDDING
    from imgcluster_gui.core.metrics import external_metrics
    from imgcluster_gui.core.photo_meta import instants
    from imgcluster_gui.core.pipeline import PipelineConfig, run_pipeline
    from imgcluster_gui.core.time_graph import TimeGraph, time_events

    if args.scratch is not None:
        # A folder of an earlier run: the same seed writes the same bytes, so its features are found in its cache;
        # the remembered capture dates are forgotten, so the first run below reads every header again.
        scratch = args.scratch
        _forget_photo_meta(scratch / "cache")
    else:
        scratch = Path(tempfile.mkdtemp(prefix="events_", dir=common.tempfile_dir()))
    # The app's caches of this run only: the first run extracts and reads every header, the later ones neither.
    os.environ["IMGCLUSTER_CACHE_DIR"] = str(scratch / "cache")
    t0 = time.perf_counter()
    paths, classes, events, seconds = build_library(scratch / "library", args.per_class, args.seed)
    build_seconds = time.perf_counter() - t0
    n_events = int(len(set(events.tolist())))
    print(f"{len(paths)} photos, {len(set(classes))} classes, {n_events} events (written in {build_seconds:.1f} s)")
    found_events = time_events(seconds)
    segmentation = external_metrics(events, found_events)
    rows = []
    records = []
    kept = None
    for weight in args.weights:
        config = PipelineConfig(
            folder=str(scratch / "library"),
            time_weight=float(weight),
            embedding=NO_EMBEDDING,
            use_subfolder_labels=False,
        )
        t0 = time.perf_counter()
        result = run_pipeline(config)
        total = time.perf_counter() - t0
        true_events = _aligned(result, paths, events)
        true_classes = np.asarray(_aligned(result, paths, np.asarray(classes, dtype=object)))
        by_event = external_metrics(true_events, result.labels)
        by_class = external_metrics(true_classes, result.labels)
        record = {
            "weight": float(weight),
            "nmi_events": by_event["nmi"],
            "ari_events": by_event["ari"],
            "nmi_classes": by_class["nmi"],
            "k_found": int(result.k),
            "n_events": n_events,
            "metadata_seconds": result.timings.get("metadata", 0.0),
            "seconds": total,
        }
        records.append(record)
        rows.append(
            [
                weight,
                by_event["nmi"],
                by_event["ari"],
                by_class["nmi"],
                result.k,
                n_events,
                record["metadata_seconds"],
                total,
            ]
        )
        print(f"weight {weight}: NMI events {by_event['nmi']:.3f}, classes {by_class['nmi']:.3f}, K {result.k}")
        if kept is None:
            kept = result
    assert kept is not None
    # The same features, the dates of a random share of the photos forgotten.
    rng = np.random.default_rng(args.seed)
    times = instants(kept.photo_meta, exif_only=True)
    assert times is not None
    undated = rng.random(times.size) < args.undated
    partial = np.where(undated, np.nan, times)
    true_events = _aligned(kept, paths, events)
    partial_rows, partial_records = [], []
    for weight in args.weights:
        labels = make_estimator("leiden").fit(kept.X, time_graph=TimeGraph(partial, float(weight))).labels_
        everything = external_metrics(true_events, labels)["nmi"]
        dated_only = external_metrics(true_events[~undated], labels[~undated])["nmi"]
        partial_records.append({"weight": float(weight), "nmi_events": everything, "nmi_events_dated": dated_only})
        partial_rows.append([weight, everything, dated_only])
    # Outings of several subjects (a trip: the beach, a meal, the harbour), on the same features: times re-drawn so
    # that each event holds parts of 2 or 3 classes; the visual groups then cut across the events.
    true_classes = np.asarray(_aligned(kept, paths, np.asarray(classes, dtype=object)))
    trip_events, trip_times = mixed_outings(true_classes, args.seed)
    trip_rows, trip_records = [], []
    for weight in args.weights:
        labels = make_estimator("leiden").fit(kept.X, time_graph=TimeGraph(trip_times, float(weight))).labels_
        by_trip = external_metrics(trip_events, labels)
        by_class = external_metrics(true_classes, labels)["nmi"]
        n_groups = len(set(labels.tolist()) - {-1})
        trip_records.append(
            {
                "weight": float(weight),
                "nmi_events": by_trip["nmi"],
                "ari_events": by_trip["ari"],
                "nmi_classes": by_class,
            }
        )
        trip_rows.append([weight, by_trip["nmi"], by_trip["ari"], by_class, n_groups, int(trip_events.max()) + 1])
    return {
        "dataset": DATASET,
        "n_photos": len(paths),
        "n_classes": len(set(classes)),
        "n_events": n_events,
        "event_cuts_nmi": segmentation["nmi"],
        "event_cuts_found": int(found_events.max()) + 1,
        "runs": records,
        "undated_fraction": args.undated,
        "partial": partial_records,
        "outings": trip_records,
        "tables": [
            markdown_table(
                ["time weight", "NMI events", "ARI events", "NMI classes", "groups", "events", "dates s", "run s"],
                rows,
            ),
            markdown_table(
                ["time weight", f"NMI events ({args.undated:.0%} undated)", "NMI events (dated photos)"],
                partial_rows,
            ),
            markdown_table(
                ["time weight", "NMI outings", "ARI outings", "NMI classes", "groups", "outings"], trip_rows
            ),
        ],
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="4 photos per class: checks the script, not the figures")
    parser.add_argument("--per-class", type=int, default=None, help="photos per class (default: all)")
    parser.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    parser.add_argument("--undated", type=float, default=0.3, help="share of photos whose date is forgotten (table 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", type=Path, default=None, help="reuse an earlier run's folder (its features)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.per_class = 4 if args.per_class is None else args.per_class
    report = run(args)
    report["smoke"] = bool(args.smoke)
    report["device"] = common.device_label()
    out = common.results_dir(args.out)
    name = "events_smoke" if args.smoke else "events"
    common.write_json(out / f"{name}.json", {k: v for k, v in report.items() if k != "tables"})
    intro = (
        f"{report['n_photos']} photos of {DATASET} ({report['n_classes']} classes) as {report['n_events']} events "
        f"(2-3 per class, 1-4 h each, 2-5 days apart), dates in EXIF; the default pipeline (Leiden, "
        f"{'smoke run' if args.smoke else 'all photos'}). The event cuts alone (PhotoTOC rule on the dates) find "
        f"{report['event_cuts_found']} events, NMI {report['event_cuts_nmi']:.3f} against the true ones."
    )
    sections = [
        intro,
        "## Whole pipeline per time weight",
        report["tables"][0],
        "## Same features, some dates missing",
        report["tables"][1],
        "## Same features, outings of 2-3 subjects each (times re-drawn)",
        report["tables"][2],
    ]
    common.save_markdown(out / f"{name}.md", "Time-aware grouping (events)", sections, common.device_line())
    for table in report["tables"]:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
