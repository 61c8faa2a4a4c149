"""The CLI: argument errors are one line and a non-zero status; a run prints a summary and writes labels."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imgcluster_gui.cli import main
from imgcluster_gui.core.text import printable_path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_missing_folder_is_one_line_exit_2(tmp_path, capsys):
    assert main(["cluster", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "folder not found" in err[0]


def test_bad_k_is_rejected_by_argparse(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["cluster", str(tmp_path), "--k", "many"])
    assert info.value.code == 2


def test_unknown_algorithm_and_parameter_are_named(tmp_path, capsys):
    assert main(["cluster", str(tmp_path), "--algorithm", "nope"]) == 2
    assert "unknown algorithm 'nope'" in capsys.readouterr().err
    assert main(["cluster", str(tmp_path), "--algorithm", "kmeans", "--param", "bogus=1"]) == 2
    assert "has no parameter bogus" in capsys.readouterr().err


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("hello")
    assert main(["cluster", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imgcluster: error:") and "Traceback" not in err


def test_evaluate_prints_metrics_and_writes_csv(tmp_path, sample_images, capsys):
    folder = tmp_path / "imgs"
    for cls in ("bag", "trouser", "sneaker"):
        (folder / cls).mkdir(parents=True)
        for f in sorted((sample_images / cls).glob("*.png"))[:5]:
            shutil.copy(f, folder / cls / f.name)
    out = tmp_path / "labels.csv"
    assert main(["evaluate", str(folder), "--k", "3", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "NMI" in text and "15 used" in text
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 15
    assert len({r["cluster_id"] for r in rows}) == 3


def test_backbones_and_algorithms_listings(capsys):
    assert main(["backbones"]) == 0
    text = capsys.readouterr().out
    assert "efficientnet_lite1 (default)" in text and "efficientnet_lite2 (default)" in text and "offline" in text
    assert "Default features: efficientnet_lite1 + efficientnet_lite2" in text
    assert main(["algorithms"]) == 0
    text = capsys.readouterr().out
    for name in ("kmeans", "agglomerative", "dbscan", "hdbscan", "gmm", "spectral", "pic"):
        assert name in text
    assert "leiden" in text and "finch" in text


def _small_folder(tmp_path, sample_images, classes=("bag", "trouser", "sneaker"), per_class=8):
    folder = tmp_path / "imgs"
    for cls in classes:
        (folder / cls).mkdir(parents=True)
        for f in sorted((sample_images / cls).glob("*.png"))[:per_class]:
            shutil.copy(f, folder / cls / f.name)
    return folder


def test_default_run_finds_the_groups_itself_and_prints_the_ladder(tmp_path, sample_images, capsys):
    folder = _small_folder(tmp_path, sample_images)
    out = tmp_path / "labels.csv"
    assert main(["evaluate", str(folder), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Algorithm:   leiden, found" in text
    assert "Granularity: level  groups" in text and "*" in text
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24


def test_resolution_sets_the_granularity_and_k_gives_exactly_k(tmp_path, sample_images, capsys):
    import json

    folder = _small_folder(tmp_path, sample_images, classes=("bag", "trouser", "sneaker", "dress", "pullover"))
    found = {}
    for resolution in ("0.05", "5"):
        assert main(["cluster", str(folder), "--resolution", resolution, "--json", "--quiet"]) == 0
        found[resolution] = json.loads(capsys.readouterr().out)["k"]
    assert found["0.05"] < found["5"]
    for k in ("2", "7"):
        assert main(["cluster", str(folder), "--k", k, "--json", "--quiet"]) == 0
        assert json.loads(capsys.readouterr().out)["k"] == int(k)
    assert main(["cluster", str(folder), "--algorithm", "kmeans", "--resolution", "2"]) == 2
    assert "--resolution applies to graph clustering" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cluster", str(folder), "--resolution", "-1"])


def test_kmeans_without_k_takes_k_from_the_graph_or_the_silhouette_sweep(tmp_path, sample_images, capsys):
    import json

    folder = _small_folder(tmp_path, sample_images)
    assert main(["cluster", str(folder), "--algorithm", "kmeans", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["k_selection"] == "graph"
    assert (
        main(["cluster", str(folder), "--algorithm", "kmeans", "--k-selection", "silhouette", "--json", "--quiet"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["k_selection"] == "silhouette"


@pytest.mark.parametrize("n_images", [2, 3])
def test_tiny_folders_give_a_clear_result(tmp_path, sample_images, capsys, n_images):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for f in sorted((sample_images / "bag").glob("*.png"))[:n_images]:
        shutil.copy(f, folder / f.name)
    assert main(["cluster", str(folder), "--quiet"]) == 0
    assert f"{n_images} used" in capsys.readouterr().out


def test_one_image_and_identical_images(tmp_path, sample_images, capsys):
    one = tmp_path / "one"
    one.mkdir()
    image = sorted((sample_images / "bag").glob("*.png"))[0]
    shutil.copy(image, one / image.name)
    assert main(["cluster", str(one), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "nothing to cluster" in err and "Traceback" not in err
    same = tmp_path / "same"
    same.mkdir()
    for i in range(6):
        shutil.copy(image, same / f"copy{i}.png")
    assert main(["cluster", str(same), "--quiet"]) == 0
    assert "found 1 group(s) itself" in capsys.readouterr().out


def test_a_folder_given_as_weights_or_labels_is_called_a_folder(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert main(["cluster", str(folder), "--weights", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--weights needs a weights file" in err and "is a folder" in err and "not found" not in err
    assert main(["cluster", str(folder), "--weights", str(tmp_path / "missing.pth")]) == 2
    assert "weights file (a .pth state_dict) not found" in capsys.readouterr().err
    assert main(["cluster", str(folder), "--labels-csv", str(tmp_path)]) == 2
    assert "--labels-csv needs a labels CSV" in capsys.readouterr().err


def test_odd_names_are_escaped_every_skip_is_listed_and_the_labels_are_written(tmp_path, sample_images):
    # Linux allows any bytes but '/' and NUL in a name: one that is not UTF-8, and one holding a terminal
    # escape sequence (OSC: set the window title), a bell and a newline that would forge a summary line.
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/photos\xff"))
    evil = root / "evil\x1b]0;x\x07\nImages:      999 used"
    evil.mkdir(parents=True)
    for f in sorted((sample_images / "bag").glob("*.png"))[:3]:
        shutil.copy(f, root / f.name)
    for f in sorted((sample_images / "sneaker").glob("*.png"))[:3]:
        shutil.copy(f, evil / f.name)
    (evil / "notes\x1b[31m.jpg").write_text("not an image")
    (root / os.fsdecode(b"caf\xe9.jpg")).write_text("a Latin-1 name, not an image")
    for i in range(25):
        (root / f"junk{i:02d}.jpg").write_text("not an image")
    out = tmp_path / "labels.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "imgcluster_gui.cli", "cluster", os.fsencode(root), "--out", str(out), "--quiet"],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONIOENCODING="utf-8"),  # a strict UTF-8 terminal, the desktop default
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    stdout = proc.stdout.decode("utf-8")  # strict: every byte printed is UTF-8
    assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout
    lines = stdout.splitlines()
    assert lines[0] == f"Folder:      {printable_path(root)}" and lines[0].endswith("photos\\xff")
    assert not any(line.startswith("Images:      999") for line in lines)  # no forged line
    skipped = [line for line in lines if line.startswith("  skipped ")]
    assert len(skipped) == 27  # all of them, not the first 20
    assert any("evil\\x1b]0;x\\x07\\nImages:      999 used/notes\\x1b[31m.jpg: not an image" in s for s in skipped)
    assert any("photos\\xff/caf\\xe9.jpg: not an image" in s for s in skipped)
    assert f"Labels:      written to {out}" in lines
    # One row per image used (how export spells a non-UTF-8 name in the CSV is export's choice, not tested here).
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and all(r["cluster_id"] != "" for r in rows)


def test_printable_path_escapes_only_what_a_terminal_would_act_on():
    assert printable_path(b"/photos/caf\xe9.jpg") == "/photos/caf\\xe9.jpg"  # bytes that are not UTF-8
    assert printable_path("/a\x1b]0;x\x07\nb\tc\x7f") == "/a\\x1b]0;x\\x07\\nb\\tc\\x7f"
    assert printable_path("/gpj\u202e.exe") == "/gpj\\u202e.exe"  # a right-to-left override reverses the name
    assert printable_path("/Été/東京 🙂.png") == "/Été/東京 🙂.png"  # printable text is kept as it is
    assert "\n" not in printable_path("x\u2028y") and printable_path("x\u2028y").isprintable()


def _folder_with_copies(tmp_path, sample_images):
    """One photo of each class, plus a JPEG re-encoding, a crop and a half-size copy of the bag."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for cls in ("bag", "dress", "pullover", "sneaker", "trouser"):
        shutil.copy(sorted((sample_images / cls).glob("*.png"))[0], folder / f"{cls}.png")
    bag = Image.open(folder / "bag.png").convert("RGB")
    w, h = bag.size
    bag.save(folder / "bag_copy.jpg", quality=60)
    bag.crop((w // 20, h // 20, w - w // 20, h - h // 20)).resize((w, h)).save(folder / "bag_crop.png")
    bag.resize((w // 2, h // 2)).save(folder / "bag_small.png")
    return folder


def test_duplicates_lists_the_copies_and_writes_the_csv(tmp_path, sample_images, capsys):
    folder = _folder_with_copies(tmp_path, sample_images)
    out = tmp_path / "dups.csv"
    assert main(["duplicates", str(folder), "--out", str(out), "--keep", "largest", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("1 group(s) of near-duplicates in 8 images; 3 could go")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(Path(r["path"]).name for r in rows) == ["bag.png", "bag_copy.jpg", "bag_crop.png", "bag_small.png"]
    kept = [Path(r["path"]).name for r in rows if r["status"] == "kept"]
    assert len(kept) == 1 and kept[0] != "bag_small.png"  # the largest is kept, never the half-size copy
    assert all(0.8 < float(r["similarity"]) <= 1.0 for r in rows)
    assert main(["duplicates", str(folder), "--threshold", "2", "--quiet"]) == 2


def test_similar_prints_the_nearest_images_with_their_similarity(tmp_path, sample_images, capsys):
    folder = _folder_with_copies(tmp_path, sample_images)
    assert main(["similar", str(folder / "bag.png"), str(folder), "--top", "3", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    names = [Path(line.split("  ", 1)[1]).name for line in lines]
    assert set(names) == {"bag_copy.jpg", "bag_crop.png", "bag_small.png"}  # the copies first, itself left out
    values = [float(line.split()[0]) for line in lines]
    assert values == sorted(values, reverse=True) and values[-1] > 0.8
    assert main(["similar", str(tmp_path / "missing.png"), str(folder), "--quiet"]) == 2
