"""Capture dates and places: EXIF read from headers (robust to garbage), cached by content, kept in the
session and its file, exported, and the time-aware grouping that keeps an event together.

Images with EXIF are written here with Pillow (JPEG, PNG, WebP); nothing touches an original: the
end-to-end run works on copies of the sample images in a temporary folder.
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import sparse

from imgcluster_gui.core import photo_meta
from imgcluster_gui.core.export import CSV_COLUMNS, export_csv, export_json
from imgcluster_gui.core.features.cache import FeatureCache
from imgcluster_gui.core.photo_meta import (
    SOURCE,
    SOURCE_EXIF,
    SOURCE_FILE,
    WALL,
    PhotoMeta,
    instants,
    iso_time,
    parse_exif_datetime,
    parse_exif_offset,
    read_exif_meta,
    read_photo_meta,
    read_photo_metas,
)
from imgcluster_gui.core.pipeline import PipelineConfig, time_fit_params
from imgcluster_gui.core.session import ClusterSession
from imgcluster_gui.core.session.persistence import load_workspace, save_workspace
from imgcluster_gui.core.session.runs import RunHistory, RunRecord
from imgcluster_gui.core.time_graph import TimeGraph, event_durations, event_mates, time_events

EXIF_IFD, GPS_IFD = 0x8769, 0x8825


def write_photo(
    path: Path,
    original: str | None = "2024:05:01 14:03:22",
    digitized: str | None = None,
    date_time: str | None = None,
    offset: str | None = None,
    gps: dict | None = None,
    colour: str = "red",
    source: Path | None = None,
) -> Path:
    """An image (``source``'s pixels or a plain colour) saved at ``path`` with the given EXIF tags."""
    image = Image.open(source).convert("RGB") if source is not None else Image.new("RGB", (24, 16), colour)
    exif = Image.Exif()
    if date_time is not None:
        exif[0x0132] = date_time
    details = exif.get_ifd(EXIF_IFD)
    if original is not None:
        details[0x9003] = original
    if digitized is not None:
        details[0x9004] = digitized
    if offset is not None:
        details[0x9011] = offset
    if gps:
        exif.get_ifd(GPS_IFD).update(gps)
    image.save(path, exif=exif)
    return path


PARIS = {1: "N", 2: (48.0, 51.0, 29.52), 3: "E", 4: (2.0, 17.0, 40.2), 5: b"\x00", 6: 35.0}


# ---------------------------------------------------------------------------- reading one file


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_date_offset_and_gps_are_read_from_the_header(tmp_path, suffix):
    path = write_photo(tmp_path / f"a{suffix}", offset="+02:00", gps=PARIS, date_time="2020:01:01 00:00:00")
    meta = read_exif_meta(path)
    assert meta.source == "exif"
    assert meta.iso() == "2024-05-01T14:03:22+02:00"  # DateTimeOriginal wins over IFD0's DateTime
    assert meta.offset == 120
    assert meta.latitude == pytest.approx(48.8582, abs=1e-4) and meta.longitude == pytest.approx(2.29450, abs=1e-4)
    assert meta.altitude == pytest.approx(35.0)
    assert meta.place_text().startswith("48.85820° N, 2.29450° E")


def test_date_falls_back_to_digitized_then_datetime_and_south_west_are_negative(tmp_path):
    south_west = {1: "S", 2: (33.0, 51.0, 0.0), 3: "W", 4: (70.0, 39.0, 0.0), 5: b"\x01", 6: 10.0}
    digitized = read_exif_meta(write_photo(tmp_path / "d.jpg", original=None, digitized="2019:02:03 04:05:06"))
    assert digitized.iso() == "2019-02-03T04:05:06" and digitized.offset is None
    plain = read_exif_meta(write_photo(tmp_path / "p.jpg", original=None, date_time="2018-07-08 09:10", gps=south_west))
    assert plain.iso() == "2018-07-08T09:10:00"
    assert plain.latitude == pytest.approx(-33.85) and plain.longitude == pytest.approx(-70.65)
    assert plain.altitude == pytest.approx(-10.0)  # altitude reference 1 = below sea level


def test_garbage_tags_are_unknown_never_errors(tmp_path):
    bad_gps = {1: "N", 2: (48.0, 0.0, 0.0), 3: "E", 4: (2.0, 17.0)}  # a longitude of two parts
    meta = read_exif_meta(write_photo(tmp_path / "a.jpg", original="0000:00:00 00:00:00", gps=bad_gps))
    assert meta == PhotoMeta()  # no date, and a GPS block without a longitude is no place
    assert read_exif_meta(write_photo(tmp_path / "b.jpg", original="2023:02:30 10:00:00")).wall is None
    assert read_exif_meta(write_photo(tmp_path / "c.jpg", original="    ")).wall is None
    null_island = {1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)}
    assert not read_exif_meta(write_photo(tmp_path / "d.jpg", gps=null_island)).has_place
    (tmp_path / "e.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*garbage")
    (tmp_path / "f.txt").write_text("not an image")
    for path in ("e.jpg", "f.txt", "missing.jpg"):
        assert read_exif_meta(tmp_path / path) == PhotoMeta()
    assert parse_exif_datetime(b"2024:05:01 14:03:22\x00") is not None
    assert parse_exif_datetime(12345) is None and parse_exif_datetime("1700:01:01 00:00:00") is None
    assert parse_exif_offset("-05:30") == -330 and parse_exif_offset("+25:00") is None


def test_damaged_exif_bytes_never_raise(tmp_path):
    """Flip bytes inside the EXIF segment of a JPEG: every read gives a PhotoMeta (parts unknown), no exception."""
    good = write_photo(tmp_path / "good.jpg", offset="+01:00", gps=PARIS).read_bytes()
    start = good.index(b"Exif")
    rng = random.Random(0)
    for round_ in range(150):
        data = bytearray(good)
        for _ in range(rng.randint(1, 12)):
            data[start + rng.randrange(6, 300)] = rng.randrange(256)
        path = tmp_path / f"bad{round_}.jpg"
        path.write_bytes(bytes(data))
        meta = read_exif_meta(path)
        assert isinstance(meta, PhotoMeta)
        if meta.latitude is not None:
            assert -90 <= meta.latitude <= 90
        if meta.wall is not None:
            assert math.isfinite(meta.wall)


def test_without_exif_date_the_file_time_stands_in_marked_as_such(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    meta = read_photo_meta(path)
    assert meta.source == "file" and meta.wall is not None
    assert meta.time_text().endswith("(file date)")
    assert read_photo_meta(write_photo(tmp_path / "dated.jpg")).source == "exif"


# ---------------------------------------------------------------------------- many files, the cache


def test_table_is_cached_by_content_so_a_second_scan_reads_no_exif(tmp_path, monkeypatch):
    dated = write_photo(tmp_path / "dated.jpg", gps=PARIS)
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8), "blue").save(plain)
    cache = FeatureCache(tmp_path / "cache")
    first = read_photo_metas([dated, plain], cache=cache)
    assert first[0, SOURCE] == SOURCE_EXIF and first[1, SOURCE] == SOURCE_FILE
    calls = []

    def counting(path):
        calls.append(path)
        return PhotoMeta()

    monkeypatch.setattr(photo_meta, "read_exif_meta", counting)
    again = read_photo_metas([dated, plain], cache=cache)
    assert calls == []  # both contents were remembered, the one without EXIF too
    np.testing.assert_array_equal(np.isnan(again), np.isnan(first))
    np.testing.assert_allclose(np.nan_to_num(again[0]), np.nan_to_num(first[0]))
    renamed = tmp_path / "renamed.jpg"
    shutil.copy(dated, renamed)  # same content elsewhere: still no header read
    assert read_photo_metas([renamed], cache=cache)[0, WALL] == first[0, WALL]
    assert calls == []
    read_photo_metas([dated], cache=False)
    assert calls == [dated]


def test_a_broken_cache_folder_still_gives_the_dates(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    path = write_photo(tmp_path / "a.jpg")
    table = read_photo_metas([path], cache=FeatureCache(blocker))
    assert table[0, SOURCE] == SOURCE_EXIF


# ---------------------------------------------------------------------------- session, file, export


def _session_with_meta(tmp_path: Path) -> ClusterSession:
    paths = [write_photo(tmp_path / "a.jpg", offset="+02:00", gps=PARIS), tmp_path / "b.png"]
    Image.new("RGB", (8, 8)).save(paths[1])
    table = read_photo_metas(paths, cache=False)
    return ClusterSession([str(p) for p in paths], [0, 1], root=str(tmp_path), photo_meta=table)


def test_session_file_keeps_the_dates_and_old_files_still_open(tmp_path):
    session = _session_with_meta(tmp_path)
    history = RunHistory()
    history.add(RunRecord(number=1, session=session, config={}))
    saved = save_workspace(tmp_path / "work.imgcluster", history)
    loaded = load_workspace(saved).current.session
    np.testing.assert_array_equal(np.isnan(loaded.photo_meta), np.isnan(session.photo_meta))
    assert loaded.photo_meta[0, WALL] == session.photo_meta[0, WALL]
    one_run = session.save(tmp_path / "one.imgcluster")
    assert ClusterSession.load(one_run).photo_meta[0, WALL] == session.photo_meta[0, WALL]
    # A file written before dates existed: no photo_meta member; it opens, with no dates.
    old = tmp_path / "old.imgcluster"
    with zipfile.ZipFile(one_run) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            if "photo_meta" not in item.filename:
                target.writestr(item, source.read(item))
    assert ClusterSession.load(old).photo_meta is None
    with pytest.raises(ValueError):
        ClusterSession(["x.jpg"], [0], photo_meta=np.zeros((2, 6)))


def test_csv_and_json_export_capture_time_source_and_coordinates(tmp_path):
    session = _session_with_meta(tmp_path)
    assert CSV_COLUMNS[-4:] == ("capture_time", "capture_time_source", "latitude", "longitude")
    out = export_csv(tmp_path / "out.csv", session.paths, session.labels, photo_meta=session.photo_meta)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["capture_time"] == "2024-05-01T14:03:22+02:00" and rows[0]["capture_time_source"] == "exif"
    assert float(rows[0]["latitude"]) == pytest.approx(48.8582, abs=1e-4)
    assert rows[1]["capture_time_source"] == "file" and rows[1]["latitude"] == ""
    document = json.loads(export_json(tmp_path / "out.json", session.paths, session.labels).read_text())
    assert document["images"][0]["capture_time"] is None  # without metadata: null, the columns still there
    assert iso_time(float("nan"), None) == ""


# ---------------------------------------------------------------------------- time-aware grouping


def test_events_cut_the_time_line_at_long_gaps_for_its_pace():
    day = 86_400.0
    minutes = np.arange(20) * 60.0
    # Two shoots a week apart, one photo a minute; a slow one (an hour apart) later; one undated image.
    times = np.concatenate([minutes, 7 * day + minutes, 20 * day + np.arange(6) * 3600.0, [np.nan]])
    events = time_events(times)
    assert events[-1] == -1
    assert len(set(events[:20])) == 1 and len(set(events[20:40])) == 1 and len(set(events[40:46])) == 1
    assert len({events[0], events[20], events[40]}) == 3
    rows, cols = event_mates(events, 5)
    assert np.all(events[rows] == events[cols]) and np.all(rows != cols) and 46 not in rows
    mates_of_first = cols[rows == 0]
    assert mates_of_first.size == 5 and mates_of_first.max() > 10  # spread over the event, not only the nearest
    assert event_durations(times, events)[0] == pytest.approx(19 * 60.0)


def _two_looks_two_events(n_per: int = 12):
    """Visual graph: two looks (A, B) as cliques. Events: each holds half of A and half of B."""
    n = 4 * n_per
    look = np.repeat([0, 1], 2 * n_per)
    event = np.tile(np.repeat([0, 1], n_per), 2)
    dense = (look[:, None] == look[None, :]).astype(float)
    np.fill_diagonal(dense, 0.0)
    minutes = np.arange(n) % n_per * 5.0 * 60.0  # every 5 minutes within an event
    times = np.where(event == 0, 0.0, 86_400.0 * 3) + minutes
    return sparse.csr_matrix(dense), look, event, times


def test_reweighting_mixes_time_into_visual_edges():
    visual, look, event, times = _two_looks_two_events()
    unchanged = TimeGraph(times, 0.0).reweight(visual)
    assert (unchanged != visual).nnz == 0
    by_time = TimeGraph(times, 1.0).reweight(visual, n_neighbors=5)
    assert abs(by_time - by_time.T).max() < 1e-12
    same_event_other_look = by_time[0, int(np.flatnonzero((look == 1) & (event == 0))[0])]
    same_look_other_event = by_time[0, int(np.flatnonzero((look == 0) & (event == 1))[0])]
    assert same_event_other_look > 0.1 and same_look_other_event < 1e-6
    undated = times.copy()
    undated[0] = np.nan
    kept = TimeGraph(undated, 1.0).reweight(visual, n_neighbors=5).toarray()[0]
    # An undated image keeps its visual edges into the event it looks most like (a bridge to every event it
    # resembles would merge them), and weighs the others 1 - w.
    joined = set(event[np.flatnonzero(kept)].tolist())
    assert len(joined) == 1 and np.allclose(kept[kept > 0], visual.toarray()[0][kept > 0])
    half = TimeGraph(undated, 0.5).reweight(visual, n_neighbors=5).toarray()[0]
    other = (event != joined.pop()) & (visual.toarray()[0] > 0)
    assert np.allclose(half[other], 0.5 * visual.toarray()[0][other])
    with pytest.raises(ValueError):
        TimeGraph(times, 1.5)


def test_leiden_with_a_time_graph_groups_events_instead_of_looks():
    from imgcluster_gui.core.clustering.registry import make_estimator
    from imgcluster_gui.core.metrics import external_metrics

    rng = np.random.default_rng(0)
    _visual, look, event, times = _two_looks_two_events()
    centres = rng.normal(size=(2, 16)) * 4
    X = (centres[look] + rng.normal(size=(look.size, 16)) * 0.3).astype(np.float32)
    plain = make_estimator("leiden", n_neighbors=8).fit(X)
    timed = make_estimator("leiden", n_neighbors=8).fit(X, time_graph=TimeGraph(times, 1.0))
    assert external_metrics(look, plain.labels_)["nmi"] > 0.9
    assert external_metrics(event, timed.labels_)["nmi"] > 0.9
    halfway = make_estimator("leiden", n_neighbors=8).fit(X, time_graph=TimeGraph(times, 0.5))
    assert halfway.n_clusters_ >= 2


def test_pipeline_time_parameters_and_notes():
    table = photo_meta.empty_table(3)
    table[:, WALL] = [0.0, 60.0, 120.0]
    table[:, SOURCE] = SOURCE_EXIF
    config = PipelineConfig(folder=".", time_weight=0.5)
    assert PipelineConfig.from_dict(config.to_dict()).time_weight == 0.5
    params = time_fit_params(config, table)
    assert isinstance(params["time_graph"], TimeGraph) and params["time_graph"].weight == 0.5
    assert time_fit_params(PipelineConfig(folder="."), table) == {}
    events = []
    table[2, SOURCE] = SOURCE_FILE
    assert "time_graph" in time_fit_params(config, table, events.append)
    assert "2 of 3 photos have an EXIF capture date" in events[-1].note
    table[:, SOURCE] = SOURCE_FILE  # file dates are never used to group
    assert np.isnan(instants(table, exif_only=True)).all()
    assert time_fit_params(config, table, events.append) == {} and "fewer than 2" in events[-1].note
    kmeans = PipelineConfig(folder=".", time_weight=1.0, algorithm="kmeans")
    assert time_fit_params(kmeans, table, events.append) == {} and "Leiden only" in events[-1].note
    assert events[-1].level == "warning"


def test_end_to_end_cli_run_on_dated_copies_groups_by_event(tmp_path, sample_images, capsys):
    """Two looks (bags, trousers) photographed at two events 9 days apart: --time-weight 1 gives the events."""
    from imgcluster_gui.cli import main

    folder = tmp_path / "library"
    folder.mkdir()
    sources = [sorted((sample_images / cls).glob("*.png"))[:8] for cls in ("bag", "trouser")]
    expected_event = {}
    for cls_files in sources:
        for position, source in enumerate(cls_files):
            event = position % 2
            day = 1 + 9 * event
            stamp = f"2023:06:{day:02d} 10:{position * 3:02d}:00"
            path = write_photo(folder / f"{source.stem}.jpg", original=stamp, source=source)
            expected_event[path.name] = event
    originals = {p: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "events.csv"
    assert main(["cluster", str(folder), "--time-weight", "1", "--out", str(out), "--quiet"]) == 0
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["capture_time_source"] == "exif" and r["capture_time"].startswith("2023-06-") for r in rows)
    by_event: dict[int, set[str]] = {}
    for row in rows:
        by_event.setdefault(expected_event[Path(row["path"]).name], set()).add(row["cluster_id"])
    assert len(by_event[0]) == 1 and len(by_event[1]) == 1 and by_event[0] != by_event[1]
    assert {p: p.read_bytes() for p in folder.iterdir()} == originals  # never writes to the images
    with pytest.raises(SystemExit):
        main(["cluster", str(folder), "--time-weight", "2"])
    capsys.readouterr()
