"""The CLI: argument errors are one line and a non-zero status; a run prints a summary and writes labels."""

from __future__ import annotations

import csv
import shutil

import pytest

from imgcluster_gui.cli import main


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
    assert "efficientnet_lite0 (default)" in text and "offline" in text
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
