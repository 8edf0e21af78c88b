"""The training form's "Advanced" group: the less common ``imgreg train`` options, folded away by default."""

from __future__ import annotations

import re

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

SIZES_RE = re.compile(r"^\d{2,4}(x\d{2,4})?(,\d{2,4}(x\d{2,4})?)*$")
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


def normal_sizes(text: str) -> str:
    """``'120x160, 240x320'`` as the CLI's ``--sizes`` text (``''`` when empty or invalid)."""
    t = re.sub(r"\s+", "", str(text).lower())
    return t if SIZES_RE.match(t) and all(int(v) >= 8 for v in re.split(r"[x,]", t)) else ""


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


class AdvancedForm(QWidget):
    """Progressive sizes, schedule, freeze epochs, learning-rate ratio, mixup, scalar head, stride, image cache."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(12, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.sizes = QLineEdit()
        self.sizes.setPlaceholderText("off, e.g. 120x160,240x320")
        self.sizes.setValidator(QRegularExpressionValidator(QRegularExpression(r"[\dx, ]*")))
        self.sizes.setToolTip(
            "Progressive resizing: train the epochs at each size in turn (small sizes first: fast early epochs).\n"
            "Empty: train at the image size only."
        )
        self.schedule = QComboBox()
        self.schedule.addItem("default (fine_tune)", "")
        self.schedule.addItem("fine_tune: frozen body first", "fine_tune")
        self.schedule.addItem("one_cycle: everything at once", "one_cycle")
        self.schedule.setToolTip(
            "fine_tune trains the head alone for the freeze epochs, then everything (fastai's default);\n"
            "one_cycle trains every layer from the start with one learning rate"
        )
        tip = "fine_tune: epochs with the pretrained body frozen before unfreezing"
        self.freeze_epochs = spin(0, 100, 1, tip=tip)
        tip = (
            "Head-to-body learning-rate ratio R: the body trains at slice(lr/R, lr).\n"
            "default: fastai's 100 for fine_tune, one rate for one_cycle"
        )
        self.lr_ratio = dspin(10000.0, 1, 10.0, "default", tip)
        self.mixup_tip = (
            "Mixup alpha (e.g. 0.4): blend pairs of images and mix their targets alike (fastai's MixUp);\n"
            "a regulariser for scalar targets such as age. off: no mixup"
        )
        self.mixup = dspin(10.0, 2, 0.1, "off", self.mixup_tip)
        self.scalar_head = QComboBox()
        self.scalar_head.addItem("fastai (pooled, BN, dropout)", "fastai")
        self.scalar_head.addItem("custom (the age write-up's AgeModel)", "custom")
        self.scalar_head.setToolTip(
            "Head of scalar models: fastai's create_head, or the age write-up's custom AgeModel head"
        )
        self.stride = QComboBox()
        self.stride.addItem("16", 16)
        self.stride.addItem("8 (finer, slower)", 8)
        self.stride.setToolTip("Spatial head: the backbone's output stride (heatmap resolution); points only")
        self.no_cache = QCheckBox("Decode every image every epoch (no image cache)")
        self.no_cache.setToolTip(
            "Skip the decoded-image cache (<dataset>/.imgreg/cache): slower, but uses no disk space"
        )
        form.addRow("Progressive sizes", self.sizes)
        form.addRow("Schedule", self.schedule)
        form.addRow("Freeze epochs", self.freeze_epochs)
        form.addRow("Body LR ratio", self.lr_ratio)
        form.addRow("Mixup", self.mixup)
        form.addRow("Scalar head", self.scalar_head)
        form.addRow("Spatial stride", self.stride)
        form.addRow("", self.no_cache)
        self.form = form

    def set_kind(self, kind: str, spatial: bool) -> None:
        """Enable what applies to this dataset: mixup and the scalar head for scalars, stride for spatial points."""
        scalar = kind == "scalar"
        self.mixup.setEnabled(scalar)
        self.mixup.setToolTip(self.mixup_tip if scalar else MIXUP_POINTS_TIP)
        self.scalar_head.setEnabled(scalar)
        self.stride.setEnabled(not scalar and spatial)
