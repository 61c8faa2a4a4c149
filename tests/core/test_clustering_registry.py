"""The clustering registry, and common checks run on EVERY registered algorithm (classic and deep).

An algorithm registered later (e.g. by the deep package) is picked up by the parametrisation
automatically; a spec marked ``needs_images`` or ``slow`` is skipped here with the reason and is
covered by its own tests.
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from imgcluster_gui.core.choices import AUTO
from imgcluster_gui.core.clustering import registry
from imgcluster_gui.core.clustering.kmeans import FastKMeans
from imgcluster_gui.core.clustering.registry import (
    AlgorithmSpec,
    ParamSpec,
    get_algorithm,
    list_algorithms,
    make_estimator,
    register,
)
from imgcluster_gui.core.progress import Cancelled

CLASSIC_IDS = {"kmeans", "minibatch_kmeans", "agglomerative", "dbscan", "hdbscan", "gmm", "spectral", "pic"}
N_BLOBS = 4


def separated_blobs(n_per_blob: int = 50, n_features: int = 6, seed: int = 0):
    """Four tight, far-apart Gaussian blobs: every sensible method must recover them."""
    rng = np.random.default_rng(seed)
    centres = np.eye(N_BLOBS, n_features) * 12.0
    y = np.repeat(np.arange(N_BLOBS), n_per_blob)
    X = centres[y] + rng.normal(0.0, 0.6, (len(y), n_features))
    return X.astype(np.float32), y


def _build(spec: AlgorithmSpec, random_state=0):
    """The spec's estimator for the blobs, with its quick ``check_params`` when it declares them."""
    return make_estimator(
        spec.id, n_clusters=N_BLOBS if spec.uses_k else None, random_state=random_state, **dict(spec.check_params)
    )


def _common_check_id(spec: AlgorithmSpec) -> str:
    return spec.id


# ------------------------------------------------------------------------------------ the registry
def test_classic_algorithms_are_registered_with_their_flags():
    ids = {spec.id for spec in list_algorithms("classic")}
    assert CLASSIC_IDS <= ids
    assert get_algorithm("kmeans").uses_k and get_algorithm("kmeans").supports_auto_k
    assert not get_algorithm("dbscan").uses_k and not get_algorithm("hdbscan").uses_k
    assert all(spec.category == "classic" for spec in list_algorithms("classic"))
    assert list_algorithms()[0].id == "kmeans"  # classic first: the GUI's default entry


def test_unknown_algorithm_and_category_are_clear_errors():
    with pytest.raises(KeyError, match="unknown clustering algorithm 'nope'.*kmeans"):
        get_algorithm("nope")
    with pytest.raises(ValueError, match="category"):
        list_algorithms("fancy")


@pytest.mark.parametrize("spec", list_algorithms(), ids=_common_check_id)
def test_every_param_spec_matches_its_estimator(spec):
    """The GUI builds forms from ParamSpecs: each must name a real parameter and have a valid default."""
    accepted = set(spec.factory._get_param_names())
    for param in spec.params:
        assert param.name in accepted, f"{spec.id}: {param.name} is not a parameter of {spec.factory.__name__}"
        assert param.validate(param.default) == param.default
        assert param.help, f"{spec.id}.{param.name} has no help text"
    if spec.uses_k:
        assert "n_clusters" in accepted


@pytest.mark.parametrize("spec", list_algorithms(), ids=_common_check_id)
def test_every_param_spec_default_is_the_estimators_init_default(spec):
    """One declaration per parameter: the form's default is the one __init__ has (read independently here)."""
    signature = inspect.signature(spec.factory.__init__).parameters
    for param in spec.params:
        assert param.name in signature, f"{spec.id}: {param.name} is not an __init__ keyword of {spec.factory.__name__}"
        default = signature[param.name].default
        assert default is not inspect.Parameter.empty, f"{spec.id}.{param.name} has no __init__ default"
        owner = spec.factory.__name__
        assert type(param.default) is type(default) and param.default == default, (
            f"{spec.id}.{param.name}: the form says {param.default!r}, {owner}.__init__ says {default!r}"
        )


@pytest.mark.parametrize("spec", list_algorithms(), ids=_common_check_id)
def test_automatic_is_spelled_auto_everywhere(spec):
    """A parameter the estimator can choose itself defaults to AUTO (never 0, -1 or None) and takes 'auto'."""
    for param in spec.params:
        old_spelling = re.search(r"(-?\b\d+(\.\d+)?|\bnone)\s*=\s*(auto|automatic|estimate)", param.help, re.I)
        assert not old_spelling, f"{spec.id}.{param.name}: automatic spelled {old_spelling.group(0)!r}"
        if param.default == AUTO:
            assert "auto" in param.help.lower(), f"{spec.id}.{param.name}: the help does not say what auto does"
            assert param.validate("auto") == AUTO and param.validate(None) == AUTO
            if param.kind == "choice":
                assert AUTO in param.choices
            else:
                assert param.auto and param.minimum is not None and param.minimum > (0 if param.kind == "float" else -1)
    signature = inspect.signature(spec.factory.__init__).parameters
    for name in ("eps", "sigma", "level", "min_samples", "n_iterations", "input_size", "device", "init"):
        default = signature[name].default if name in signature else AUTO
        if name == "min_samples" and spec.id == "dbscan":
            continue  # DBSCAN's min_samples is a count, not an automatic value
        assert default == AUTO, f"{spec.factory.__name__}.{name} defaults to {default!r}, not AUTO"


def test_a_param_spec_contradicting_init_or_naming_no_keyword_is_refused():
    with pytest.raises(ValueError, match="states the default 5 but FastKMeans.__init__ has 3"):
        AlgorithmSpec("x", "x", "x", FastKMeans, (ParamSpec("n_init", "int", 5),))
    with pytest.raises(ValueError, match="no keyword 'bogus'"):
        AlgorithmSpec("x", "x", "x", FastKMeans, (ParamSpec("bogus", "int"),))
    # Declared without a default (as the estimators do), the default is read from __init__.
    bound = AlgorithmSpec("x", "x", "x", FastKMeans, (ParamSpec("max_iter", "int", minimum=1),))
    assert bound.param("max_iter").default == 100
    # Left out, the params are the factory's own declaration.
    assert AlgorithmSpec("x", "x", "x", FastKMeans).params == get_algorithm("kmeans").params


def test_auto_parameters_take_the_text_and_say_so_when_refusing():
    eps = get_algorithm("dbscan").param("eps")
    assert eps.auto and eps.default == AUTO
    assert eps.validate("AUTO") == AUTO and eps.validate("0.3") == pytest.approx(0.3)
    with pytest.raises(ValueError, match=r"eps must be at least 0.0001 \(or 'auto'\), got '0'"):
        eps.validate("0")
    with pytest.raises(ValueError, match="or 'auto'"):
        eps.validate("wide")
    assert make_estimator("dbscan", eps="auto").eps == AUTO
    assert make_estimator("finch", level="2").level == 2
    with pytest.raises(ValueError, match="a number"):
        get_algorithm("kmeans").param("n_init").validate(AUTO)  # not an automatic parameter


def test_listing_order_is_declared_by_each_registration_not_the_import_order():
    ids = [spec.id for spec in list_algorithms()]
    assert ids[:10] == [
        "kmeans",
        "minibatch_kmeans",
        "agglomerative",
        "dbscan",
        "hdbscan",
        "gmm",
        "spectral",
        "pic",
        "leiden",
        "finch",
    ]
    deep = [spec.id for spec in list_algorithms("deep")]
    assert deep == ["idec", "dec", "deepcluster", "ucnn", "cc", "mvec", "dmvc"] or not deep


def test_the_registry_discovers_algorithm_modules_and_survives_a_broken_one(tmp_path, monkeypatch, caplog):
    """Adding an algorithm is one new file: the registry imports every module of the package."""
    package = tmp_path / "fake_algorithms"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "zeta.py").write_text(
        textwrap.dedent("""
        from imgcluster_gui.core.clustering.kmeans import FastKMeans
        from imgcluster_gui.core.clustering.registry import AlgorithmSpec, register

        register(AlgorithmSpec("zeta_test", "Zeta", "a test algorithm in its own file", FastKMeans, order=5))
    """)
    )
    (package / "sub" / "nested.py").write_text(
        textwrap.dedent("""
        from imgcluster_gui.core.clustering.kmeans import FastKMeans
        from imgcluster_gui.core.clustering.registry import AlgorithmSpec, register

        register(AlgorithmSpec("nested_test", "Nested", "in a sub-package", FastKMeans, category="deep"))
    """)
    )
    (package / "broken.py").write_text("raise ImportError('a missing optional dependency')\n")
    (package / "_private.py").write_text("raise AssertionError('private modules are not imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        failed = registry.import_algorithm_modules("fake_algorithms", [str(package)])
    assert failed == {"broken": "ImportError: a missing optional dependency"}
    assert "broken clustering methods unavailable" in caplog.text
    assert get_algorithm("zeta_test").params == get_algorithm("kmeans").params
    assert get_algorithm("nested_test").category == "deep"
    assert [spec.id for spec in list_algorithms("classic")][0] == "zeta_test"  # order=5: before kmeans (10)
    for name in [m for m in sys.modules if m.startswith("fake_algorithms")]:
        monkeypatch.delitem(sys.modules, name)


def test_param_spec_converts_text_and_checks_bounds():
    count = ParamSpec("n_init", "int", 3, minimum=1, maximum=10)
    assert count.validate("4") == 4 and count.validate(5.0) == 5
    with pytest.raises(ValueError, match="at least 1"):
        count.validate(0)
    with pytest.raises(ValueError, match="whole number"):
        count.validate(2.5)
    with pytest.raises(ValueError, match="must be a number"):
        count.validate("many")
    flag = ParamSpec("merge", "bool", True)
    assert flag.validate("false") is False and flag.validate("yes") is True
    with pytest.raises(ValueError, match="true or false"):
        flag.validate("maybe")
    choice = ParamSpec("linkage", "choice", "ward", choices=("ward", "average"))
    assert choice.validate("average") == "average"
    with pytest.raises(ValueError, match="one of"):
        choice.validate("centroid")
    with pytest.raises(ValueError, match="kind"):
        ParamSpec("x", "text", "")


def test_make_estimator_validates_and_passes_k_and_seed():
    model = make_estimator("agglomerative", n_clusters=3, random_state=1, linkage="average", metric="cosine")
    assert model.get_params()["n_clusters"] == 3 and model.linkage == "average"
    assert make_estimator("kmeans", n_clusters=5, random_state=7, n_init="2").get_params()["n_init"] == 2
    assert "n_clusters" not in make_estimator("dbscan", n_clusters=5).get_params()  # K ignored: no K to take
    with pytest.raises(ValueError, match="kmeans has no parameter 'bogus'"):
        make_estimator("kmeans", n_clusters=3, bogus=1)
    with pytest.raises(ValueError, match="linkage must be one of"):
        make_estimator("agglomerative", n_clusters=3, linkage="centroid")


def test_deep_import_failure_leaves_classic_algorithms(monkeypatch, caplog):
    classic_only = {key: spec for key, spec in registry._REGISTRY.items() if spec.category == "classic"}
    monkeypatch.setattr(registry, "_REGISTRY", classic_only)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "import_errors", {})
    monkeypatch.setattr(registry, "deep_import_error", None)
    monkeypatch.setitem(sys.modules, "imgcluster_gui.core.clustering.deep", None)  # import now fails
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        ids = {spec.id for spec in list_algorithms()}
    assert CLASSIC_IDS <= ids and not list_algorithms("deep")
    assert "deep clustering methods unavailable" in caplog.text
    assert registry.deep_import_error


def test_register_adds_an_algorithm_that_the_common_listing_sees(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    base = get_algorithm("kmeans")
    register(AlgorithmSpec("kmeans_copy", "copy", "test", base.factory, base.params))
    assert get_algorithm("kmeans_copy").factory is base.factory
    with pytest.raises(TypeError):
        register("kmeans")


# ------------------------------------------------------------------------ common estimator checks
@pytest.mark.parametrize("spec", list_algorithms(), ids=_common_check_id)
def test_common_estimator_contract(spec):
    if spec.needs_images:
        pytest.skip(f"{spec.id} fine-tunes a CNN on images (needs_images): covered by its own tests")
    if spec.slow and not spec.check_params:
        pytest.skip(f"{spec.id} is marked slow and declares no quick check_params: covered by its own tests")
    X, y = separated_blobs()
    calls: list[tuple[float | None, str]] = []

    def record(event):
        calls.append((event.fraction, event.stage))

    model = _build(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        returned = model.fit(X, progress=record)
    assert returned is model
    labels = model.labels_
    assert labels.shape == (len(X),) and np.issubdtype(labels.dtype, np.integer)
    assert labels.min() >= -1

    if spec.uses_k:
        assert adjusted_rand_score(y, labels) >= 0.95
    else:  # density methods: the blobs up to a little noise
        assigned = labels >= 0
        assert assigned.mean() >= 0.9
        assert adjusted_rand_score(y[assigned], labels[assigned]) >= 0.95
        assert len(set(labels[assigned])) == N_BLOBS

    confidence = getattr(model, "confidence_", None)
    if confidence is not None:
        assert confidence.shape == (len(X),) and (confidence >= 0).all() and (confidence <= 1).all()

    # progress: called, fractions in [0, 1] (None = heartbeat), never going back
    assert calls, f"{spec.id} never called the progress callback"
    fractions = [f for f, _ in calls if f is not None]
    assert fractions and all(0.0 <= f <= 1.0 for f in fractions)
    assert all(isinstance(stage, str) for _, stage in calls)

    # clone / get_params / set_params
    params = model.get_params()
    copy = clone(model)
    assert copy.get_params() == params and not hasattr(copy, "labels_")
    copy.set_params(**params)
    assert copy.get_params() == params

    # same seed, same labels (fit_predict with progress forwards too)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = _build(spec).fit_predict(X, progress=record)
    np.testing.assert_array_equal(again, labels)

    # cancel: a callback that raises stops the fit with Cancelled
    def cancel(event):
        raise Cancelled("test")

    with pytest.raises(Cancelled):
        _build(spec).fit(X, progress=cancel)


@pytest.mark.parametrize(
    "spec", [s for s in list_algorithms() if s.uses_k and not s.needs_images], ids=_common_check_id
)
def test_k_larger_than_the_sample_count_is_a_clear_error(spec):
    X, _ = separated_blobs(n_per_blob=2)
    with pytest.raises(ValueError, match="n_clusters"):
        make_estimator(spec.id, n_clusters=len(X) + 1, random_state=0).fit(X)


@pytest.mark.parametrize("spec", list_algorithms("classic"), ids=_common_check_id)
def test_bad_input_gives_a_clear_message(spec):
    model = _build(spec)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.fit(np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0], [5.0, 6.0], [1.0, 1.0]] * 4))
    with pytest.raises(ValueError, match="2-D"):
        model.fit(np.zeros(10))
