"""The training form's editors built from the option declarations (``engine.options``): one widget per option
with its range, choices and help, and the "Advanced" group of the less common ones, folded away by default."""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.options import AUTO, BY_NAME, OPTIONS, Opt, OptionError, to_text

MIXUP_POINTS_TIP = "Mixup is for scalar targets only: two images' points cannot be averaged into one."


def spin(lo: int, hi: int, value: int, step: int = 1, tip: str = "") -> QSpinBox:
    """An integer box with its range, step, value and tooltip."""
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setValue(value)
    s.setToolTip(tip)
    return s


def dspin(hi: float, decimals: int, step: float, off: str, tip: str) -> QDoubleSpinBox:
    """A box of 0 to ``hi`` whose 0 reads ``off`` (the option left at its default)."""
    s = QDoubleSpinBox()
    s.setRange(0.0, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    s.setSpecialValueText(off)
    s.setToolTip(tip)
    return s


def normal_sizes(text: str | None) -> str:
    """``'120x160, 240x320'`` as the CLI's ``--sizes`` text (``''`` when empty or its declaration refuses it)."""
    opt = BY_NAME["sizes"]
    try:
        v = opt.parse(re.sub(r"\s+", "", str(text or "").lower()))
    except OptionError:
        return ""
    return to_text(opt, v) if v else ""


class Collapsible(QWidget):
    """A header button with an arrow that shows or hides its body."""

    toggled = Signal(bool)

    def __init__(self, title: str, body: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.RightArrow)
        self.button.setAutoRaise(True)
        self.button.setToolTip("Show or hide the less common training options")
        self.body = body
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.button)
        lay.addWidget(body)
        self.button.toggled.connect(self.set_expanded)
        self.set_expanded(False)

    def set_expanded(self, on: bool) -> None:
        """Show (True) or fold away the body."""
        if self.button.isChecked() != on:
            self.button.setChecked(on)
        self.button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(on)
        self.toggled.emit(on)

    @property
    def expanded(self) -> bool:
        """Whether the body shows."""
        return self.button.isChecked()


CHOICE_TEXT = {
    ("head", "auto"): "auto (spatial for points)",
    ("head", "spatial"): "spatial (heatmap)",
    ("head", "pooled"): "pooled (regression)",
    ("schedule", "fine_tune"): "fine_tune: frozen body first",
    ("schedule", "one_cycle"): "one_cycle: everything at once",
    ("scalar_head", "fastai"): "fastai (pooled, BN, dropout)",
    ("scalar_head", "custom"): "custom (the age write-up's AgeModel)",
    ("stride", 8): "8 (finer, slower)",
}
"""Friendlier names of a few choices (the values are the declarations')."""
INT_MAX = 2**31 - 1  # a QSpinBox holds a C int


def tip(opt: Opt) -> str:
    """An option's tooltip: its declared help, then its flag and default."""
    shown = to_text(opt, opt.default) if opt.default is not None else opt.none or "none"
    flag = opt.cli if opt.type != "bool" else f"{opt.cli} to change it"
    kinds = "" if opt.kinds == "both" else f"; {opt.kinds}s only"
    return f"{opt.help[0].upper()}{opt.help[1:]}{kinds}.\nimgreg train {flag} (default {shown})"


def option_widget(opt: Opt) -> QWidget:
    """The editor of a declared option: its range or choices; its help as the tooltip."""
    w: QWidget
    if opt.type in ("int", "bs"):
        low = 0 if opt.type == "bs" else int(opt.lo or 0)
        w = spin(low, min(INT_MAX, int(opt.hi if opt.hi is not None else INT_MAX)), 0)
        if opt.type == "bs":
            w.setSpecialValueText(AUTO)  # 0 reads auto: the engine's batch size
    elif opt.type == "float":
        step = 0.05 if (opt.hi or 0) <= 1 else (0.1 if (opt.hi or 0) <= 10 else 10.0)
        off = "default" if opt.none else ("off" if opt.default == 0 else "")
        lo = 0.0 if off else float(opt.lo or 0) + (0.01 if opt.open_lo else 0)
        hi = float(opt.hi if opt.hi is not None else 1e6) - (0.01 if opt.open_hi else 0)
        w = dspin(hi, 2 if hi <= 10 else 1, step, off, "")
        w.setMinimum(lo)
    elif opt.type == "choice":
        w = QComboBox()
        if opt.default is None:
            w.addItem(f"default ({_implied(opt)})" if _implied(opt) else "default", None)
        for c in opt.choices:
            w.addItem(CHOICE_TEXT.get((opt.name, c), str(c)), c)
    elif opt.type == "bool":
        w = QCheckBox(opt.label)
    else:
        w = QLineEdit()
    w.setToolTip(tip(opt))
    return w


def _implied(opt: Opt) -> str:
    """What the engine does when an option is left unset."""
    return {"schedule": "fine_tune when pretrained", "stride": "16"}.get(opt.name, "")


def widget_value(w: QWidget, opt: Opt) -> Any:
    """A declared option's value as its editor shows it (the app's representation)."""
    if isinstance(w, QSpinBox):
        return AUTO if opt.type == "bs" and w.value() == 0 else w.value()
    if isinstance(w, QDoubleSpinBox):
        return None if opt.none and w.value() == w.minimum() else w.value()
    if isinstance(w, QComboBox):
        return w.currentData()
    if isinstance(w, QCheckBox):
        return w.isChecked()
    if isinstance(w, QLineEdit):
        return normal_sizes(w.text()) if opt.type == "sizes" else w.text().strip()
    raise TypeError(f"no value for {type(w).__name__}")


def set_widget_value(w: QWidget, opt: Opt, v: Any) -> None:
    """Show a declared option's value in its editor."""
    if isinstance(w, QSpinBox):
        w.setValue(0 if v == AUTO or v is None else int(v))
    elif isinstance(w, QDoubleSpinBox):
        w.setValue(w.minimum() if v is None else float(v))
    elif isinstance(w, QComboBox):
        i = w.findData(v)
        if i >= 0:
            w.setCurrentIndex(i)
    elif isinstance(w, QCheckBox):
        w.setChecked(bool(v))
    elif isinstance(w, QLineEdit):
        w.setText(normal_sizes(v) if opt.type == "sizes" else str(v or ""))


class AdvancedForm(QWidget):
    """The declared options marked advanced (``engine.options``), one row each, in declaration order."""

    valid_pct: QDoubleSpinBox
    seed: QSpinBox
    sizes: QLineEdit
    schedule: QComboBox
    freeze_epochs: QSpinBox
    lr_ratio: QDoubleSpinBox
    mixup: QDoubleSpinBox
    scalar_head: QComboBox
    stride: QComboBox
    ps: QDoubleSpinBox
    augment: QCheckBox
    cache: QCheckBox

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(12, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.widgets: dict[str, QWidget] = {}
        for opt in OPTIONS:
            if not (opt.advanced and opt.form):
                continue
            w = option_widget(opt)
            setattr(self, opt.name, w)
            self.widgets[opt.name] = w
            form.addRow("" if opt.type == "bool" else opt.label, w)
        self.sizes.setPlaceholderText("off, e.g. 120x160,240x320")
        self.sizes.setValidator(QRegularExpressionValidator(QRegularExpression(r"[\dx, ]*")))
        self.mixup_tip = self.mixup.toolTip()
        self.form = form

    def set_kind(self, kind: str, spatial: bool) -> None:
        """Enable what applies to this dataset (mixup and the scalar head for scalars, stride for spatial points)."""
        for name, w in self.widgets.items():
            w.setEnabled(BY_NAME[name].applies(kind) and (name != "stride" or spatial))
        self.mixup.setToolTip(
            self.mixup_tip if kind == "scalar" else f"{MIXUP_POINTS_TIP}\n\n{self.mixup_tip}"
        )
