"""The parameter form built from ParamSpec: widgets, defaults, validation, round trips."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from imgcluster_gui.core.choices import AUTO
from imgcluster_gui.core.clustering.registry import ParamSpec, list_algorithms
from imgcluster_gui.ui.param_form import AUTO_TEXT, ParamForm

SPECS = (
    ParamSpec("n_init", "int", 3, minimum=1, maximum=100, help="restarts"),
    ParamSpec("tol", "float", 1e-6, minimum=0.0, maximum=1.0),
    ParamSpec("linkage", "choice", "ward", choices=("ward", "average", "complete")),
    ParamSpec("merge", "bool", True),
    ParamSpec("min_samples", "int", AUTO, minimum=1, maximum=50, help="auto lets the estimator decide"),
    ParamSpec("eps", "float", AUTO, minimum=1e-4, maximum=10.0),
)


def test_each_kind_gets_its_widget_and_default(qtbot):
    form = ParamForm(SPECS)
    qtbot.addWidget(form)
    assert isinstance(form.widget("n_init"), QSpinBox)
    assert isinstance(form.widget("tol"), QDoubleSpinBox)
    assert isinstance(form.widget("linkage"), QComboBox)
    assert isinstance(form.widget("merge"), QCheckBox)
    assert form.widget("n_init").toolTip() == "restarts"
    assert form.widget("n_init").maximum() == 100
    assert form.values() == {
        "n_init": 3,
        "tol": 1e-6,
        "linkage": "ward",
        "merge": True,
        "min_samples": AUTO,
        "eps": AUTO,
    }
    assert form.non_default_values() == {}


def test_edits_are_read_back_validated(qtbot):
    form = ParamForm(SPECS)
    qtbot.addWidget(form)
    changes = []
    form.changed.connect(lambda: changes.append(1))
    form.widget("n_init").setValue(7)
    form.widget("linkage").setCurrentIndex(2)
    form.widget("merge").setChecked(False)
    form.widget("min_samples").setValue(4)
    form.widget("eps").setValue(0.5)
    assert changes
    assert form.non_default_values() == {
        "n_init": 7,
        "linkage": "complete",
        "merge": False,
        "min_samples": 4,
        "eps": 0.5,
    }
    assert isinstance(form.values()["n_init"], int)


def test_set_values_round_trip_and_refusals(qtbot):
    form = ParamForm(SPECS)
    qtbot.addWidget(form)
    refused = form.set_values({"n_init": 12, "linkage": "average", "tol": 0.25, "unknown": 1, "merge": "maybe"})
    assert sorted(refused) == ["merge", "unknown"]
    assert form.values()["n_init"] == 12 and form.values()["linkage"] == "average"
    assert form.values()["tol"] == pytest.approx(0.25)
    form.reset()
    assert form.non_default_values() == {}


def test_auto_is_shown_below_the_range_and_read_back_as_the_one_constant(qtbot):
    form = ParamForm(SPECS)
    qtbot.addWidget(form)
    for name in ("min_samples", "eps"):
        spin = form.widget(name)
        assert spin.value() == spin.minimum() and spin.text() == AUTO_TEXT == AUTO
        assert spin.minimum() < SPECS[[s.name for s in SPECS].index(name)].minimum  # auto is not a number in range
    assert form.set_values({"min_samples": 9, "eps": 2.0}) == []
    assert form.values()["min_samples"] == 9 and form.values()["eps"] == pytest.approx(2.0)
    # 'auto' in any spelling of the text (CLI, saved settings) and None (not given) all mean AUTO.
    assert form.set_values({"min_samples": "Auto", "eps": None}) == []
    assert form.values()["min_samples"] == AUTO and form.values()["eps"] == AUTO
    assert form.non_default_values() == {}
    # A number-only parameter still refuses 'auto'.
    assert form.set_values({"n_init": AUTO}) == ["n_init"]


def test_rebuilding_for_another_algorithm_replaces_the_fields(qtbot):
    form = ParamForm(SPECS)
    qtbot.addWidget(form)
    form.set_specs((ParamSpec("eps", "float", 0.5, minimum=0.0),))
    assert list(form.values()) == ["eps"]
    with pytest.raises(KeyError):
        form.widget("n_init")


@pytest.mark.parametrize("algorithm", list_algorithms(), ids=lambda a: a.id)
def test_every_registered_algorithm_gets_a_form_whose_defaults_validate(qtbot, algorithm):
    form = ParamForm(algorithm.params)
    qtbot.addWidget(form)
    values = form.values()
    assert set(values) == {p.name for p in algorithm.params}
    for spec in algorithm.params:
        expected = spec.validate(spec.default)
        if spec.kind == "float" and not spec.auto:
            assert values[spec.name] == pytest.approx(expected)
        else:
            assert values[spec.name] == expected
    assert form.non_default_values() == {}
