"""A parameter form generated from an algorithm's :class:`ParamSpec` list.

Each kind gets its natural widget: ``int`` a spin box, ``float`` a double spin box, ``choice`` a
combo box, ``bool`` a check box; the spec's ``help`` is the tooltip and its bounds the widget's
range.  A number the estimator can choose itself (``spec.auto``: its default is the core's
``AUTO``) shows "auto" one step below the bottom of its range, and reads back as ``AUTO``.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QSpinBox, QWidget

from ..core.choices import AUTO

# Spin boxes need finite ranges; these stand in for "unbounded".
INT_LIMIT = 1_000_000_000
FLOAT_LIMIT = 1e12
FLOAT_DECIMALS = 4
MAX_FLOAT_DECIMALS = 12
AUTO_TEXT = AUTO


def _magnitude(spec: Any) -> Optional[int]:
    """Decimal exponent of a non-zero numeric default (``0.05`` -> ``-2``), else None."""
    default = spec.default
    if isinstance(default, (int, float)) and not isinstance(default, bool) and default:
        return math.floor(math.log10(abs(float(default))))
    return None


def _float_step(spec: Any) -> float:
    """A tenth of the default's order of magnitude (0.1 when the default is 0 or ``AUTO``)."""
    exponent = _magnitude(spec)
    return 0.1 if exponent is None else 10.0 ** (exponent - 1)


def _float_decimals(spec: Any) -> int:
    """Enough decimals that the default and one step are shown exactly (tiny tolerances too)."""
    exponent = _magnitude(spec)
    if exponent is None:
        return FLOAT_DECIMALS
    return min(MAX_FLOAT_DECIMALS, max(FLOAT_DECIMALS, 2 - exponent))


class ParamForm(QWidget):
    """Form fields for a tuple of :class:`~imgcluster_gui.core.clustering.registry.ParamSpec`.

    Parameters
    ----------
    specs : sequence of ParamSpec
    parent : QWidget, optional

    Signals
    -------
    changed()
        Any field was edited.
    """

    changed = Signal()

    def __init__(self, specs: Sequence[Any] = (), parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._layout = QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._specs: list[Any] = []
        self._widgets: dict[str, QWidget] = {}
        self._empty_label: Optional[QLabel] = None
        self.set_specs(specs)

    # ---------------------------------------------------------------- building
    def set_specs(self, specs: Sequence[Any]) -> None:
        """Rebuild the form for ``specs`` (fields start at their defaults)."""
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self._widgets.clear()
        self._specs = list(specs)
        for spec in self._specs:
            widget = self._make_widget(spec)
            widget.setObjectName(f"param_{spec.name}")
            widget.setToolTip(spec.help)
            label = QLabel(spec.name.replace("_", " ").capitalize())
            label.setToolTip(spec.help)
            self._layout.addRow(label, widget)
            self._widgets[spec.name] = widget
        if not self._specs:
            self._layout.addRow(QLabel("No parameters."))

    def _make_widget(self, spec: Any) -> QWidget:
        if spec.kind == "bool":
            box = QCheckBox()
            box.setChecked(bool(spec.default))
            box.toggled.connect(self.changed)
            return box
        if spec.kind == "choice":
            combo = QComboBox()
            for choice in spec.choices:
                combo.addItem(str(choice), choice)
            index = combo.findData(spec.default)
            combo.setCurrentIndex(max(index, 0))
            combo.currentIndexChanged.connect(self.changed)
            return combo
        if spec.kind == "int":
            spin = QSpinBox()
            low = int(spec.minimum) if spec.minimum is not None else -INT_LIMIT
            high = int(spec.maximum) if spec.maximum is not None else INT_LIMIT
            if spec.auto:
                # One step below the range means AUTO.
                low -= 1
                spin.setSpecialValueText(AUTO_TEXT)
            spin.setRange(low, high)
            spin.setValue(low if spec.auto else int(spec.default))
            spin.valueChanged.connect(self.changed)
            return spin
        spin = QDoubleSpinBox()
        spin.setDecimals(_float_decimals(spec))
        step = _float_step(spec)
        low = float(spec.minimum) if spec.minimum is not None else -FLOAT_LIMIT
        high = float(spec.maximum) if spec.maximum is not None else FLOAT_LIMIT
        if spec.auto:
            low -= step
            spin.setSpecialValueText(AUTO_TEXT)
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setValue(low if spec.auto else float(spec.default))
        spin.valueChanged.connect(self.changed)
        return spin

    # ---------------------------------------------------------------- values
    def specs(self) -> list[Any]:
        return list(self._specs)

    def widget(self, name: str) -> QWidget:
        """The field of parameter ``name`` (KeyError when there is none)."""
        return self._widgets[name]

    def _raw_value(self, spec: Any) -> Any:
        widget = self._widgets[spec.name]
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, QComboBox):
            return widget.currentData()
        assert isinstance(widget, (QSpinBox, QDoubleSpinBox))
        if spec.auto and widget.value() == widget.minimum():
            return AUTO
        return widget.value()

    def values(self) -> dict[str, Any]:
        """Every parameter's current value, checked by ``ParamSpec.validate``.

        Raises
        ------
        ValueError
            A value the spec refuses, with the spec's own message.
        """
        return {spec.name: spec.validate(self._raw_value(spec)) for spec in self._specs}

    def non_default_values(self) -> dict[str, Any]:
        """Only the parameters changed from their defaults (what a run config needs to store)."""
        return {
            name: value
            for name, value in self.values().items()
            if value != next(s.default for s in self._specs if s.name == name)
        }

    def set_values(self, values: dict[str, Any]) -> list[str]:
        """Set fields from ``values``; unknown names and refused values are skipped and returned."""
        refused: list[str] = []
        by_name = {s.name: s for s in self._specs}
        for name, value in values.items():
            spec = by_name.get(name)
            if spec is None:
                refused.append(name)
                continue
            widget = self._widgets[name]
            try:
                checked = spec.validate(value)
            except ValueError:
                refused.append(name)
                continue
            if isinstance(widget, QCheckBox):
                widget.setChecked(bool(checked))
            elif isinstance(widget, QComboBox):
                widget.setCurrentIndex(max(widget.findData(checked), 0))
            elif checked == AUTO:
                widget.setValue(widget.minimum())
            else:
                widget.setValue(checked)
        return refused

    def reset(self) -> None:
        """Every field back to its default."""
        self.set_values({s.name: s.default for s in self._specs})
