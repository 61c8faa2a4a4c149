"""Names for clusters, offline, from the default backbone's ImageNet-1k classifier head.

The pipeline's ``penultimate`` EfficientNet-Lite feature is exactly the input of the network's own
1000-way classifier (global average pool, then ``Linear(1280, 1000)``; the dropout between them is the
identity in eval mode), so the class probabilities of every image cost one matrix product on the
features already extracted, never a second forward pass (:class:`ImageNetHead`,
``tests/core/test_naming.py`` checks the logits against the full network's).

A cluster is named from the **mean of its members' softmax probabilities** (:func:`suggest_cluster_names`):

* one class holds at least ``single`` of the mean mass and the second less than ``pair_balance`` of
  it: that class ("golden retriever");
* else, when the second holds at least ``pair_balance`` of the first and both together ``pair``:
  both ("golden retriever / Labrador retriever"); else the first alone if it holds ``single``;
* else a contiguous block of related ImageNet classes (:data:`CLASS_GROUPS`, e.g. the 118 dog
  breeds 151-268) holds at least ``group``: the block's broader word ("dog"), narrowest block first;
* else ``"mixed"``: no class dominates.

The thresholds (:class:`NamingThresholds`) are measured in ``benchmarks/naming.py`` (true classes and
the default pipeline's clusters on imagenette-1k and fashion-mnist-2k; results in
``benchmarks/results/naming.md``). Only a backbone whose features are that head's input gets
suggestions (:func:`head_for`); features of any other model give ``None``, never a wrong model's head.
The session keeps the top :data:`TOP_K` classes per image as int16 / float16 (not 1000 numbers per
image), and renaming from those is a cheap function of the labels (:func:`suggest_cluster_names` with
``classes=``), so suggestions follow every hand edit.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .progress import ProgressLike, check

#: Classes kept per image in a session (float16 probabilities, int16 class indices).
TOP_K = 5
#: The number of ImageNet-1k classes.
N_CLASSES = 1000
#: Where suggestions come from (the tooltip's wording).
SOURCE = "ImageNet classes"

#: Backbones whose packaged weights carry an ImageNet head fed by their ``penultimate`` feature.
HEAD_BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
_PENULTIMATE = "penultimate"


@dataclass(frozen=True)
class ClassGroup:
    """A broader word for a contiguous block of ImageNet-1k class indices (``first``..``last`` inclusive)."""

    word: str
    ranges: tuple[tuple[int, int], ...]

    def indices(self) -> np.ndarray:
        """The class indices of the block, ascending."""
        return np.concatenate([np.arange(first, last + 1) for first, last in self.ranges])


#: Contiguous blocks of the ImageNet-1k class list (torchvision's order = the ILSVRC-2012 synset
#: order, which follows WordNet's hierarchy), narrowest first so the most specific word that holds
#: the mass wins. Checked against the category names in tests/core/test_naming.py.
CLASS_GROUPS: tuple[ClassGroup, ...] = (
    ClassGroup("domestic cat", ((281, 285),)),  # tabby .. Egyptian cat
    ClassGroup("big cat", ((286, 293),)),  # cougar .. cheetah
    ClassGroup("bear", ((294, 297),)),  # brown bear .. sloth bear
    ClassGroup("wolf or fox", ((269, 280),)),  # timber wolf .. grey fox
    ClassGroup("butterfly", ((321, 326),)),  # admiral .. lycaenid
    ClassGroup("beetle", ((300, 307),)),  # tiger beetle .. weevil
    ClassGroup("spider", ((72, 77),)),  # black and gold garden spider .. wolf spider
    ClassGroup("snake", ((52, 68),)),  # thunder snake .. sidewinder
    ClassGroup("lizard", ((38, 48),)),  # banded gecko .. Komodo dragon
    ClassGroup("turtle", ((33, 37),)),  # loggerhead .. box turtle
    ClassGroup("salamander or frog", ((25, 32),)),  # European fire salamander .. tailed frog
    ClassGroup("crab or lobster", ((118, 126),)),  # Dungeness crab .. isopod
    ClassGroup("rabbit", ((330, 332),)),  # wood rabbit .. Angora
    ClassGroup("fruit", ((948, 957),)),  # Granny Smith .. pomegranate
    ClassGroup("vegetable", ((936, 946),)),  # head cabbage .. cardoon
    ClassGroup("mushroom", ((947, 947), (991, 997))),  # mushroom; coral fungus .. bolete
    ClassGroup("dog", ((151, 268),)),  # Chihuahua .. Mexican hairless: the 118 breeds
    ClassGroup("cat", ((281, 293),)),  # domestic and big cats
    ClassGroup("insect", ((300, 326),)),  # beetles, flies, bees .. butterflies
    ClassGroup("monkey or ape", ((365, 384),)),  # orangutan .. indri
    ClassGroup("fish", ((0, 6), (389, 397))),  # tench .. stingray; barracouta .. puffer
    ClassGroup("bird", ((7, 24), (80, 100), (127, 146))),  # cock .. great grey owl; grouse .. swan; stork .. albatross
    ClassGroup("reptile", ((33, 68),)),  # turtles, lizards, crocodiles, snakes
    ClassGroup("canine", ((151, 280),)),  # dogs, wolves, foxes
    ClassGroup("food", ((924, 935), (959, 965))),  # guacamole .. mashed potato; carbonara .. burrito
    ClassGroup("landscape", ((970, 980),)),  # alp .. volcano
)


@dataclass(frozen=True)
class NamingThresholds:
    """When a cluster's mean ImageNet probabilities give a name (see the module docstring).

    The defaults are measured (``benchmarks/naming.py``, ``benchmarks/results/naming.md``): the most
    right names on imagenette-1k's true classes with few wrong ones, before falling back to ``"mixed"``.
    """

    single: float = 0.25
    pair: float = 0.50
    pair_balance: float = 0.35
    group: float = 0.40


@dataclass(frozen=True)
class SuggestedName:
    """A name suggested for one cluster.

    Attributes
    ----------
    text : str
        ``"golden retriever"``, ``"golden retriever / Labrador retriever"``, ``"dog"`` or ``"mixed"``.
    confidence : float
        The share of the members' mean probability the name covers (the class, both classes, the block;
        for ``"mixed"`` the top class's share).
    top_classes : tuple of (str, float)
        The cluster's top classes with their mean probabilities, largest first.
    kind : {'class', 'pair', 'group', 'mixed'}
    """

    text: str
    confidence: float
    top_classes: tuple[tuple[str, float], ...]
    kind: str

    @property
    def is_mixed(self) -> bool:
        """No class dominates: the session shows the default name for it."""
        return self.kind == "mixed"

    def describe(self) -> str:
        """The tooltip: ``"suggested from ImageNet classes: golden retriever 62 %, Labrador retriever 20 %"``."""
        shown = [(name, share) for name, share in self.top_classes if share >= 0.005] or self.top_classes[:1]
        classes = ", ".join(f"{name} {share * 100:.0f} %" for name, share in shown)  # no "0 %" entries
        if self.is_mixed:
            return f"no single ImageNet class dominates (mixed): {classes}"
        return f"suggested from {SOURCE}: {classes}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the benchmark's records)."""
        return {
            "text": self.text,
            "confidence": round(float(self.confidence), 4),
            "top_classes": [[name, round(float(share), 4)] for name, share in self.top_classes],
            "kind": self.kind,
        }


#: The 1000 class names in class-index order, one a line (torchvision's list, written by
#: ``tools/imagenet_categories.py``): a file in the package, so names need no torchvision (the CPU bundle lacks it).
CATEGORIES_FILE = "imagenet_categories.txt"


@functools.lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, offline, as torchvision ships them (``"golden retriever"``).

    Returns
    -------
    tuple of str
        Index ``i`` is the name of the classifier's output ``i``.

    Raises
    ------
    RuntimeError
        The package's list is missing or does not hold :data:`N_CLASSES` names (a broken installation).
    """
    resource = importlib.resources.files(__package__ or "imgcluster_gui.core") / CATEGORIES_FILE
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuntimeError(
            f"the ImageNet class list {CATEGORIES_FILE} is missing from the installation: {exc}"
        ) from exc
    categories = tuple(line for line in text.splitlines() if line)
    if len(categories) != N_CLASSES:
        raise RuntimeError(f"{CATEGORIES_FILE} lists {len(categories)} ImageNet categories, expected {N_CLASSES}")
    return categories


# ---------------------------------------------------------------------------- the head


class ImageNetHead:
    """A backbone's ImageNet-1k classifier applied to its pooled ``penultimate`` features.

    Parameters
    ----------
    weight : array-like of shape (1000, D)
    bias : array-like of shape (1000,)
    backbone : str
        Whose head it is (the features must come from that backbone's ``penultimate`` layer).
    """

    def __init__(self, weight: Any, bias: Any, backbone: str) -> None:
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        if self.weight.ndim != 2 or self.weight.shape[0] != N_CLASSES or self.bias.shape != (N_CLASSES,):
            raise ValueError(f"an ImageNet head is (1000, D) + (1000,), got {self.weight.shape} + {self.bias.shape}")
        self.backbone = backbone

    @property
    def input_dims(self) -> int:
        """The feature width the head takes (1280 for EfficientNet-Lite)."""
        return int(self.weight.shape[1])

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(N, 1000)`` float32 logits of raw (not normalised) ``(N, D)`` penultimate features."""
        X = np.asarray(features, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.input_dims:
            raise ValueError(f"the {self.backbone} head takes (N, {self.input_dims}) features, got {X.shape}")
        return X @ self.weight.T + self.bias

    def probabilities(self, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """``(N, 1000)`` float32 softmax probabilities (computed in batches)."""
        X = np.asarray(features)
        out = np.empty((X.shape[0], N_CLASSES), dtype=np.float32)
        for start in range(0, X.shape[0], batch_size):
            out[start : start + batch_size] = softmax(self.logits(X[start : start + batch_size]))
        return out

    def top_k(self, features: np.ndarray, k: int = TOP_K, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most probable classes of each image: ``(indices (N, k) int16, probabilities (N, k) float16)``."""
        X = np.asarray(features)
        classes = np.empty((X.shape[0], k), dtype=np.int16)
        probs = np.empty((X.shape[0], k), dtype=np.float16)
        for start in range(0, X.shape[0], batch_size):
            block_classes, block_probs = top_k_probabilities(self.probabilities(X[start : start + batch_size]), k)
            classes[start : start + batch_size] = block_classes
            probs[start : start + batch_size] = block_probs
        return classes, probs


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32 (shifted by the row maximum, so large logits never overflow)."""
    shifted = np.asarray(logits, dtype=np.float32) - np.max(logits, axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def top_k_probabilities(probabilities: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row, largest first: ``(indices int16, values float16)``."""
    P = np.asarray(probabilities, dtype=np.float32)
    k = min(int(k), P.shape[1])
    part = np.argpartition(-P, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(P, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int16), np.take_along_axis(values, order, axis=1).astype(
        np.float16
    )


@functools.lru_cache(maxsize=4)
def load_imagenet_head(backbone: str) -> Optional[ImageNetHead]:
    """The packaged ImageNet head of ``backbone`` (see :data:`HEAD_BACKBONES`), or None (no head, no weights)."""
    if backbone not in HEAD_BACKBONES:
        return None
    from .features.backbones import imagenet_classifier

    head = imagenet_classifier(backbone)
    if head is None:
        return None
    weight, bias = head
    return ImageNetHead(weight.numpy(), bias.numpy(), backbone)


def full_network_logits(paths: Sequence[Any], backbone: str = "efficientnet_lite0") -> np.ndarray:
    """The reference: the package's own full ``EfficientNet.forward`` on the extractor's crops, ``(N, 1000)``.

    Same decoding, resize, crop and normalisation as :func:`~.features.extract.extract_features`, on the
    CPU in float32; only the checks (tests, ``benchmarks/naming.py``) need it.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from .features.backbones import _entry, _load_pretrained, resolve_preprocessing
    from .features.extract import ImageFolderDataset

    prep = resolve_preprocessing(backbone)
    dataset = ImageFolderDataset(paths, prep)
    crops = []
    for i in range(len(dataset)):
        _index, tensor, reason = dataset[i]
        if tensor is None:
            raise ValueError(f"{paths[i]}: {reason}")
        crops.append(tensor)
    x = torch.stack(crops).float()
    x = (x - torch.tensor(prep.mean).view(1, 3, 1, 1) * 255.0) / (torch.tensor(prep.std).view(1, 3, 1, 1) * 255.0)
    net = EfficientNet.from_name(backbone.replace("_", "-"))
    _load_pretrained(net, _entry(backbone), None)
    net.eval()
    with torch.no_grad():
        return net(x).numpy()


def head_for(backbone: str, layer: Optional[str] = None, weights_path: Optional[str] = None) -> Optional[ImageNetHead]:
    """The head whose input is exactly these features, or None.

    Only the ``penultimate`` layer of a :data:`HEAD_BACKBONES` model with its packaged weights
    qualifies: another layer, a user's weights file (fine-tuned, another task) or another backbone
    would make the head's numbers meaningless.
    """
    if weights_path or (layer not in (None, _PENULTIMATE)):
        return None
    return load_imagenet_head(backbone)


def top_classes_for_run(
    backbones: Sequence[str],
    layer: Optional[str],
    weights_path: Optional[str],
    feature_result: Any,
    use_cache: bool = True,
    device: str = "auto",
    progress: ProgressLike = None,
) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The top :data:`TOP_K` ImageNet classes of a run's images, from features it extracted, or None.

    Parameters
    ----------
    backbones, layer, weights_path : the run's feature settings (``PipelineConfig``)
    feature_result : FeatureResult
        What the run extracted. One head backbone: its raw features are used as they are. Several
        backbones: each view is L2-normalised in ``feature_result`` (no longer the head's input), so
        the head backbone's raw vectors are read back from the feature cache (they were extracted in
        this run; nothing is computed again). Without the cache, or without a head backbone: None.
    """
    if weights_path:
        return None  # a user's weights belong to one backbone; its features are not the packaged head's input
    candidates = [name for name in backbones if head_for(name, layer) is not None]
    if not candidates:
        return None
    backbone = candidates[0]
    head = head_for(backbone, layer)
    assert head is not None  # the filter above
    check(progress, "Suggesting names from ImageNet classes")
    if len(backbones) == 1:
        return head.top_k(feature_result.features)
    if not use_cache:
        return None
    from .features.extract import extract_features

    raw = extract_features(feature_result.paths, backbone=backbone, layer=layer, device=device, cache=True)
    if raw.n_extracted or len(raw.paths) != len(feature_result.paths):
        return None  # the cache did not hold them all: never a second pass just for names
    return head.top_k(raw.features)


# ---------------------------------------------------------------------------- naming


def cluster_mean_probabilities(
    labels: np.ndarray, probabilities: np.ndarray, classes: Optional[np.ndarray] = None
) -> tuple[np.ndarray, np.ndarray]:
    """The mean class probabilities of each cluster (label -1 left out).

    Parameters
    ----------
    labels : (N,) int
    probabilities : (N, 1000), or (N, k) with ``classes``
        Per-image softmax probabilities; with ``classes`` the top ``k`` only (the rest count as 0).
    classes : (N, k) int, optional
        The class index of each column of ``probabilities``.

    Returns
    -------
    clusters : (C,) int64
        The cluster ids, ascending.
    means : (C, 1000) float64
    """
    labels = np.asarray(labels, dtype=np.int64)
    P = np.asarray(probabilities, dtype=np.float64)
    if P.shape[0] != labels.shape[0]:
        raise ValueError(f"{P.shape[0]} probability rows for {labels.shape[0]} labels")
    keep = labels >= 0
    clusters, inverse, counts = np.unique(labels[keep], return_inverse=True, return_counts=True)
    n_clusters = clusters.size
    if classes is None:
        if P.shape[1] != N_CLASSES:
            raise ValueError(f"probabilities have {P.shape[1]} columns, expected {N_CLASSES} (or pass classes=)")
        sums: np.ndarray = np.zeros((n_clusters, N_CLASSES))
        np.add.at(sums, inverse, P[keep])
    else:
        C = np.asarray(classes, dtype=np.int64)
        if C.shape != P.shape:
            raise ValueError(f"classes {C.shape} and probabilities {P.shape} differ")
        # One bincount over (cluster, class) cells: O(N k), cheap enough to redo after every edit.
        flat = (inverse[:, None] * N_CLASSES + C[keep]).ravel()
        sums = np.bincount(flat, weights=P[keep].ravel(), minlength=n_clusters * N_CLASSES)
        sums = sums.reshape(n_clusters, N_CLASSES)
    return clusters, sums / np.maximum(counts, 1)[:, None]


@functools.lru_cache(maxsize=1)
def _group_indices() -> tuple[tuple[str, np.ndarray], ...]:
    return tuple((group.word, group.indices()) for group in CLASS_GROUPS)


def name_from_mean(mean: np.ndarray, thresholds: Optional[NamingThresholds] = None, n_top: int = 3) -> SuggestedName:
    """The name of one cluster from its mean probabilities ``(1000,)`` (rules in the module docstring)."""
    thresholds = thresholds or NamingThresholds()
    categories = imagenet_categories()
    order = np.argsort(-mean, kind="stable")[: max(n_top, 2)]
    top = tuple((categories[int(i)], float(mean[i])) for i in order[:n_top])
    first, second = categories[int(order[0])], categories[int(order[1])]
    p1, p2 = float(mean[order[0]]), float(mean[order[1]])
    shared = p2 >= thresholds.pair_balance * p1  # the second class is not a minor one beside the first
    if p1 >= thresholds.single and not shared:
        return SuggestedName(first, p1, top, "class")
    if shared and p1 + p2 >= thresholds.pair:
        return SuggestedName(f"{first} / {second}", p1 + p2, top, "pair")
    if p1 >= thresholds.single:
        return SuggestedName(first, p1, top, "class")
    for word, indices in _group_indices():
        mass = float(mean[indices].sum())
        if mass >= thresholds.group:
            return SuggestedName(word, mass, top, "group")
    return SuggestedName("mixed", p1, top, "mixed")


def suggest_cluster_names(
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: Optional[np.ndarray] = None,
    thresholds: Optional[NamingThresholds] = None,
) -> dict[int, SuggestedName]:
    """A suggested name for every cluster (not for -1, the unassigned images).

    Parameters
    ----------
    probabilities : (N, 1000) or (N, k) with ``classes``
        Per-image ImageNet softmax probabilities (:meth:`ImageNetHead.probabilities`), or the top ``k``
        of them (:meth:`ImageNetHead.top_k`, what a session keeps).
    labels : (N,) int
    classes : (N, k) int, optional
        The class of each column when ``probabilities`` holds only the top ``k``.
    thresholds : NamingThresholds, optional

    Returns
    -------
    dict[int, SuggestedName]
    """
    clusters, means = cluster_mean_probabilities(labels, probabilities, classes)
    return {int(c): name_from_mean(mean, thresholds) for c, mean in zip(clusters, means)}


def suggest_from_features(
    features: np.ndarray,
    labels: np.ndarray,
    backbone: str,
    layer: Optional[str] = None,
    weights_path: Optional[str] = None,
    thresholds: Optional[NamingThresholds] = None,
) -> Optional[dict[int, SuggestedName]]:
    """:func:`suggest_cluster_names` from raw features; None when ``backbone``/``layer`` has no head that fits."""
    head = head_for(backbone, layer, weights_path)
    if head is None:
        return None
    classes, probs = head.top_k(features)
    return suggest_cluster_names(probs, labels, classes=classes, thresholds=thresholds)


def check_top_classes(classes: Any, probs: Any, n: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Validated ``(classes int16 (n, k), probs float16 (n, k))`` for a session, or None when either is None.

    Raises
    ------
    ValueError
        Shapes that differ or do not have ``n`` rows, or a class index outside ``[0, 1000)``.
    """
    if classes is None or probs is None:
        return None
    C = np.asarray(classes)
    P = np.asarray(probs)
    if C.ndim != 2 or C.shape != P.shape or C.shape[0] != n:
        raise ValueError(f"top classes {C.shape} / probabilities {P.shape} do not fit {n} images")
    if C.size and (C.min() < 0 or C.max() >= N_CLASSES):
        raise ValueError("a top class index is outside the 1000 ImageNet classes")
    return C.astype(np.int16), P.astype(np.float16)


def suggestions_by_id(
    labels: np.ndarray, top: Optional[tuple[np.ndarray, np.ndarray]], thresholds: Optional[NamingThresholds] = None
) -> Mapping[int, SuggestedName]:
    """:func:`suggest_cluster_names` of a session's stored top classes (empty without them), names made unique.

    Two clusters of the same kind (two of bags) would show, and export, the same name: the largest keeps
    it and the others get ``"bag 2"``, ``"bag 3"``, ... by size (ties by id). ``"mixed"`` is never numbered.
    """
    if top is None:
        return {}
    classes, probs = top
    names = suggest_cluster_names(probs, labels, classes=classes, thresholds=thresholds)
    return number_repeated_names(names, labels)


def number_repeated_names(names: Mapping[int, SuggestedName], labels: np.ndarray) -> dict[int, SuggestedName]:
    """``names`` with every repeated text but the largest cluster's numbered (``"bag 2"``); see above."""
    from dataclasses import replace

    ids, sizes = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    size_of = dict(zip(ids.tolist(), sizes.tolist()))
    by_text: dict[str, list[int]] = {}
    for cluster, name in names.items():
        if not name.is_mixed:
            by_text.setdefault(name.text, []).append(int(cluster))
    out = dict(names)
    taken = set(by_text)
    for text, clusters in by_text.items():
        if len(clusters) < 2:
            continue
        ordered = sorted(clusters, key=lambda c: (-size_of.get(c, 0), c))
        number = 2
        for cluster in ordered[1:]:
            while f"{text} {number}" in taken:  # never collide with another cluster's own name
                number += 1
            out[cluster] = replace(names[cluster], text=f"{text} {number}")
            taken.add(f"{text} {number}")
            number += 1
    return out
