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
