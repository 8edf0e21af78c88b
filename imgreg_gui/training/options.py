"""Training options: the form (architecture, epochs, lr, size, bs, head, validation groups, folds, weights,
device, and the Advanced group), their QSettings persistence, the ``imgreg train`` command line they make, and a
lazy device query."""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QRegularExpression, Qt, Signal
from PySide6.QtGui import QDoubleValidator, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QToolButton,
    QWidget,
)

from engine.core import ARCH_NAMES
from engine.weights import default_arch, local_weights
from imgreg_gui.jobs.process import engine_command
from imgreg_gui.settings import settings
from imgreg_gui.training.advanced import AdvancedForm, Collapsible, normal_sizes, spin

ARCHS = tuple(ARCH_NAMES)
WEIGHTS = ("auto", "pretrained", "scratch", "file")
WEIGHT_NAMES = {
    "auto": "ImageNet if on this machine, else from scratch",
    "pretrained": "ImageNet pretrained",
    "scratch": "From scratch",
    "file": "Weights file...",
}
KEY = "training/"
TIP = Qt.ItemDataRole.ToolTipRole
ONE_GROUP = "One group: a random 20% of the items validates"
ALL_GPUS = "all"


@dataclass
class TrainOptions:
    """What the panel asks ``imgreg train`` for."""

    arch: str = field(default_factory=default_arch)
    epochs: int = 5
    lr: float = 2e-3
    size: str = "auto"
    bs: int = 16
    head: str = "spatial"
    valid_groups: list[str] = field(default_factory=list)
    folds: int = 0
    weights: str = "auto"
    weights_file: str = ""
    device: str = "auto"
    sizes: str = ""
    schedule: str = ""
    freeze_epochs: int = 1
    lr_ratio: float = 0.0
    mixup: float = 0.0
    scalar_head: str = "fastai"
    stride: int = 16
    no_cache: bool = False
    advanced_open: bool = False
    parallel: int = 1

    def save(self) -> None:
        """Remember the options (QSettings)."""
        s = settings()
        for k, v in asdict(self).items():
            s.setValue(KEY + k, ",".join(v) if isinstance(v, list) else v)
        s.sync()

    @classmethod
    def load(cls) -> TrainOptions:
        """The remembered options (defaults for anything missing or unreadable)."""
        s, opts = settings(), cls()
        for k, default in asdict(opts).items():
            raw = s.value(KEY + k)
            if raw is None:
                continue
            try:
                if isinstance(default, list):
                    val: object = [g for g in str(raw).split(",") if g] if not isinstance(raw, list) else raw
                elif isinstance(default, bool):
                    val = str(raw).lower() in ("1", "true")
                else:
                    val = type(default)(raw)
            except (TypeError, ValueError):
                continue
            setattr(opts, k, val)
        return opts


def train_args(opts: TrainOptions, kind: str = "point") -> list[str]:
    """The options shared by ``imgreg train`` and ``imgreg rank`` (model, data, schedule, device)."""
    args = ["--arch", opts.arch, "--size", opts.size, "--bs", str(opts.bs)]
    args += ["--epochs", str(opts.epochs), "--lr", f"{opts.lr:g}"]
    if kind == "point":
        args += ["--head", opts.head]
        if opts.head != "pooled":
            args += ["--stride", str(opts.stride)]
    else:
        args += ["--scalar-head", opts.scalar_head]
        if opts.mixup > 0:
            args += ["--mixup", f"{opts.mixup:g}"]
    if normal_sizes(opts.sizes):
        args += ["--sizes", normal_sizes(opts.sizes)]
    if opts.schedule:
        args += ["--schedule", opts.schedule]
    args += ["--freeze-epochs", str(opts.freeze_epochs)]
    if opts.lr_ratio > 0:
        args += ["--lr-ratio", f"{opts.lr_ratio:g}"]
    if opts.no_cache:
        args += ["--no-cache"]
    if opts.valid_groups:
        args += ["--valid-groups", ",".join(opts.valid_groups)]
    if opts.weights == "scratch":
        args += ["--no-pretrained"]
    elif opts.weights == "auto":
        args += ["--pretrained-if-cached"]
    elif opts.weights == "file" and opts.weights_file:
        args += ["--weights", opts.weights_file]
    if opts.device and opts.device != "auto" and not opts.device.startswith(ALL_GPUS):
        args += ["--device", opts.device]
    return args


def all_gpus(device: str) -> int:
    """N for the device choice ``all:N`` (every GPU, data-parallel), else 0."""
    head, _, n = str(device).partition(":")
    return int(n) if head == ALL_GPUS and n.isdigit() else 0


def train_command(
    dataset: str | Path, opts: TrainOptions, kind: str = "point", lr_find: bool = False
) -> list[str]:
    """The child command line for a training (K out-of-fold models with folds > 1) or an LR finder run."""
    args = ["train", str(dataset), *train_args(opts, kind)]
    if lr_find:
        args += ["--lr-find"]  # the LR finder runs in one process
    elif opts.folds >= 2:
        args += ["--folds", str(opts.folds)]
        if opts.parallel > 1:
            args += ["--parallel", str(opts.parallel)]
    elif all_gpus(opts.device) > 1:
        args += ["--nproc", str(all_gpus(opts.device))]
    return engine_command(*args, "--json", "--control-stdin")


def rank_command(
    dataset: str | Path, opts: TrainOptions, folds: int, kind: str = "point", repeats: int = 1
) -> list[str]:
    """The child command line ranking every item by out-of-fold doubt (trains ``folds`` x ``repeats`` models)."""
    args = ["rank", str(dataset), "--folds", str(folds), *train_args(opts, kind)]
    if repeats > 1:
        args += ["--repeats", str(repeats)]
    if opts.parallel > 1:
        args += ["--parallel", str(opts.parallel)]
    return engine_command(*args, "--json", "--control-stdin")


def predict_command(run_dir: str | Path, dataset: str | Path, device: str = "auto") -> list[str]:
    """The child command line predicting (and storing) every item of ``dataset`` with a run."""
    device = "auto" if not device or all_gpus(device) else device  # prediction runs in one process
    return engine_command("predict", str(run_dir), str(dataset), "--device", device, "--json")


SIZE_RE = re.compile(r"^\s*(\d{2,4})\s*(?:[x,]\s*(\d{2,4}))?\s*$")
AUTO = "auto"
SIZES = ("64", "96x128", "128", "192x256", "224", "240x320", "288x384", "384x512")


def normal_size(text: str) -> str:
    """``'224'`` or ``'240 x 320'`` as the CLI's ``HxW`` text (``'224'`` stays square); '' when invalid."""
    m = SIZE_RE.match(str(text).lower())
    if not m or min(int(v) for v in m.groups() if v) < 8:
        return ""
    return m.group(1) if m.group(2) is None else f"{m.group(1)}x{m.group(2)}"


class DeviceQuery(QObject):
    """Lists CUDA devices without importing torch in the GUI: ``nvidia-smi -L`` in a background process."""

    found = Signal(list)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.proc: QProcess | None = None
        self.devices: list[tuple[str, str]] | None = None

    def start(self) -> None:
        """Query once; ``found([(id, description), ...])`` follows (empty without an NVIDIA GPU)."""
        if self.proc is not None or self.devices is not None:
            return
        exe = shutil.which("nvidia-smi")
        if exe is None:
            self._done([])
            return
        self.proc = QProcess(self)
        self.proc.finished.connect(self._finished)
        self.proc.errorOccurred.connect(lambda _e: self._done([]))
        self.proc.start(exe, ["-L"])

    def _finished(self, code: int, _status: QProcess.ExitStatus) -> None:
        text = bytes(self.proc.readAllStandardOutput().data()).decode("utf-8", "replace") if self.proc else ""
        self._done(parse_nvidia_smi(text) if code == 0 else [])

    def _done(self, devices: list[tuple[str, str]]) -> None:
        if self.devices is not None:
            return
        self.devices = devices
        self.found.emit(devices)


def parse_nvidia_smi(text: str) -> list[tuple[str, str]]:
    """``GPU 0: NVIDIA H100 (UUID: ...)`` lines as ``[('cuda:0', 'NVIDIA H100'), ...]``."""
    out = []
    for m in re.finditer(r"^GPU (\d+): (.+?)(?: \(UUID:.*\))?$", text, re.MULTILINE):
        out.append((f"cuda:{m.group(1)}", m.group(2).strip()))
    return out


class OptionsForm(QWidget):
    """The training options as a form; ``options()`` reads it, ``set_options`` fills it."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.arch = QComboBox(editable=True)
        self.arch.addItems(ARCHS)
        self.arch.setToolTip("Backbone (torchvision); 'tiny' is a small untrained CNN for quick checks")
        self.weights_here = {
            a: local_weights(a) for a in ARCHS
        }  # looked up once: the note asks per keystroke
        for i, arch in enumerate(ARCHS):
            here = self.weights_here[arch] is not None
            self.arch.setItemData(i, "ImageNet weights here" if here else "no ImageNet weights here", TIP)
        self.epochs = spin(
            1, 1000, 5, tip="Passes over the training images (at each size with progressive resizing)"
        )
        self.lr = QLineEdit()
        self.lr.setValidator(QDoubleValidator(1e-8, 10.0, 8))
        self.lr.setToolTip("Maximum learning rate of the one-cycle schedule")
        self.find_lr = QPushButton("Find LR")
        self.find_lr.setToolTip("Run fastai's learning-rate finder on these options and show its curve")
        lr_row = _row(self.lr, self.find_lr)
        self.size_box = QComboBox(editable=True)
        self.size_box.addItem(AUTO, AUTO)
        self.size_box.addItems(SIZES)
        self.size_box.setValidator(
            QRegularExpressionValidator(QRegularExpression(r"(auto.*|\d{0,4}([x,]\d{0,4})?)"))
        )
        self.size_box.setToolTip(
            "Input size in pixels. auto follows the images' shape (aspect kept, long side at most 320: Biwi\n"
            "240x320, 200px faces 208x208); or HxW (e.g. 240x320) or one number for a square"
        )
        self.bs = spin(1, 4096, 16, tip="Images per batch; lower it when the GPU runs out of memory")
        self.head = QComboBox()
        self.head.addItem("spatial (heatmap)", "spatial")
        self.head.addItem("pooled (regression)", "pooled")
        self.head.setToolTip("Spatial heads predict a heatmap per point; pooled heads regress coordinates")
        self.groups = QListWidget()
        self.groups.setMaximumHeight(84)
        self.groups.setToolTip("Checked groups form the validation set (none checked: a random 20%)")
        self._pressed_state: Qt.CheckState | None = None
        self.groups.itemPressed.connect(lambda it: setattr(self, "_pressed_state", it.checkState()))
        self.groups.itemClicked.connect(self._on_group_clicked)
        tip = "K > 1: train K models instead of one, each predicting the items it never saw (out-of-fold)"
        self.folds = spin(0, 20, 0, tip=tip)
        self.folds.setSpecialValueText("off")
        self.parallel = spin(1, 64, 1)
        self.parallel.setSpecialValueText("1 (one at a time)")
        self.parallel.setToolTip(
            "Out-of-fold models (Folds, Rank out-of-fold) fitted at a time, each in its own process on its own\n"
            "GPU (or sharing the CPU cores): same seeds, same ranking as one at a time"
        )
        self.weights = QComboBox()
        for key in WEIGHTS:
            self.weights.addItem(WEIGHT_NAMES[key], key)
        self.weights.setToolTip(
            "Starting weights. ImageNet weights come from torchvision's cache or an offline weights package\n"
            "(this app never downloads); 'ImageNet pretrained' fails when they are not on this machine,\n"
            "'if on this machine' falls back to random weights."
        )
        self.weights_file = QLineEdit()
        self.weights_file.setPlaceholderText("a .pth or .safetensors state dict")
        self.weights_file.setToolTip("A torchvision state dict to start from (never unpickled code)")
        self.browse = QToolButton()
        self.browse.setText("...")
        self.browse.setToolTip("Choose a weights file")
        self.browse.clicked.connect(self._pick_weights)
        self.weights_row = _row(self.weights_file, self.browse)
        self.weights_note = QLabel()
        self.weights_note.setWordWrap(True)
        self.weights_note.setToolTip(
            "Install ImageNet weights with a weights package (see the README) or copy torchvision's .pth\n"
            "files into torch's checkpoint folder; a network trained from random weights needs far more data"
        )
        self.device = QComboBox()
        self.device.addItem("auto", "auto")
        self.device.addItem("CPU", "cpu")
        self.device.setToolTip("Where the child trains: auto picks a GPU when there is one")
        self.device_note = QLabel()
        self.device_note.setWordWrap(True)
        self.device_note.setStyleSheet("color: #b45309;")
        self.adv = AdvancedForm()
        self.advanced = Collapsible("Advanced", self.adv)
        form.addRow("Architecture", self.arch)
        form.addRow("Epochs", self.epochs)
        form.addRow("Learning rate", lr_row)
        form.addRow("Image size", self.size_box)
        form.addRow("Batch size", self.bs)
        form.addRow("Head", self.head)
        form.addRow("Validation groups", self.groups)
        form.addRow("Folds (OOF)", self.folds)
        form.addRow("Weights", self.weights)
        form.addRow("", self.weights_row)
        form.addRow("", self.weights_note)
        form.addRow("Device", self.device)
        form.addRow("", self.device_note)
        form.addRow(self.advanced)
        self.adv.form.insertRow(self.adv.form.rowCount() - 1, "Parallel folds", self.parallel)
        self.form = form
        self.kind = "point"
        self.head.currentIndexChanged.connect(self._sync_enabled)
        self.weights.currentIndexChanged.connect(self._sync_enabled)
        self.arch.currentTextChanged.connect(self._sync_enabled)
        self.device.currentIndexChanged.connect(self._sync_enabled)
        self.has_gpu: bool | None = None
        self.set_options(TrainOptions())

    # -- reading and filling ---------------------------------------------------------------------------

    def options(self) -> TrainOptions:
        """The options the form shows."""
        try:
            lr = float(self.lr.text())
        except ValueError:
            lr = TrainOptions.lr
        return TrainOptions(
            arch=self.arch.currentText().strip() or default_arch(),
            epochs=self.epochs.value(),
            lr=lr,
            size=self.size_text(),
            bs=self.bs.value(),
            head=self.head.currentData(),
            valid_groups=self.checked_groups(),
            folds=self.folds.value(),
            weights=self.weights.currentData(),
            weights_file=self.weights_file.text().strip(),
            device=self.device.currentData() or "auto",
            sizes=normal_sizes(self.adv.sizes.text()),
            schedule=self.adv.schedule.currentData() or "",
            freeze_epochs=self.adv.freeze_epochs.value(),
            lr_ratio=self.adv.lr_ratio.value(),
            mixup=self.adv.mixup.value(),
            scalar_head=self.adv.scalar_head.currentData() or "fastai",
            stride=int(self.adv.stride.currentData() or 16),
            no_cache=self.adv.no_cache.isChecked(),
            advanced_open=self.advanced.expanded,
            parallel=self.parallel.value(),
        )

    def size_text(self) -> str:
        """The chosen size as the CLI's text: ``auto`` or ``HxW``."""
        text = self.size_box.currentText().strip().lower()
        if not text or text.startswith(AUTO):
            return AUTO
        return normal_size(text) or AUTO

    def set_auto_size(self, size: tuple[int, int] | None) -> None:
        """Show what ``auto`` means for this dataset, e.g. ``auto (240x320)`` (None: plain ``auto``)."""
        label = AUTO if size is None else f"{AUTO} ({size[0]}x{size[1]})"
        text = self.size_box.currentText()
        showing_auto = self.size_text() == AUTO
        self.size_box.setItemText(0, label)  # this resets the edit text when item 0 is current
        self.size_box.setCurrentText(label if showing_auto else text)

    def set_options(self, opts: TrainOptions) -> None:
        """Show ``opts`` (groups are checked if the dataset has them)."""
        self.arch.setCurrentText(opts.arch)
        self.epochs.setValue(opts.epochs)
        self.set_lr(opts.lr)
        size = normal_size(opts.size)
        if size:
            self.size_box.setCurrentText(size)
        else:
            self.size_box.setCurrentIndex(0)
            self.size_box.setCurrentText(self.size_box.itemText(0))
        self.bs.setValue(opts.bs)
        _select(self.head, opts.head)
        self._wanted_groups = set(opts.valid_groups)
        for i in range(self.groups.count()):
            it = self.groups.item(i)
            if not it.flags() & Qt.ItemFlag.ItemIsUserCheckable:
                continue
            it.setCheckState(
                Qt.CheckState.Checked if it.text() in self._wanted_groups else Qt.CheckState.Unchecked
            )
        self.folds.setValue(opts.folds)
        self.parallel.setValue(opts.parallel)
        _select(self.weights, opts.weights)
        self.weights_file.setText(opts.weights_file)
        self._wanted_device = opts.device
        _select(self.device, opts.device)
        self.adv.sizes.setText(normal_sizes(opts.sizes))
        _select(self.adv.schedule, opts.schedule)
        self.adv.freeze_epochs.setValue(opts.freeze_epochs)
        self.adv.lr_ratio.setValue(opts.lr_ratio)
        self.adv.mixup.setValue(opts.mixup)
        _select(self.adv.scalar_head, opts.scalar_head)
        _select(self.adv.stride, opts.stride)
        self.adv.no_cache.setChecked(opts.no_cache)
        self.advanced.set_expanded(opts.advanced_open)
        self._sync_enabled()

    def set_lr(self, lr: float) -> None:
        """Show a learning rate in short scientific form."""
        self.lr.setText(f"{lr:.2g}")

    def checked_groups(self) -> list[str]:
        """The groups ticked for validation."""
        return [
            self.groups.item(i).text()
            for i in range(self.groups.count())
            if self.groups.item(i).flags() & Qt.ItemFlag.ItemIsUserCheckable
            and self.groups.item(i).checkState() == Qt.CheckState.Checked
        ]

    def _on_group_clicked(self, it: QListWidgetItem) -> None:
        """A click on a group's name ticks it too, not only a click on its small check box."""
        if it.checkState() == self._pressed_state:  # the box itself was not hit (that toggles on its own)
            checked = it.checkState() == Qt.CheckState.Checked
            it.setCheckState(Qt.CheckState.Unchecked if checked else Qt.CheckState.Checked)
        self._pressed_state = None

    def set_dataset(self, groups: list[str], kind: str) -> None:
        """Offer this dataset's groups (keeping remembered ticks) and the head only for point datasets."""
        wanted = set(self.checked_groups()) | getattr(self, "_wanted_groups", set())
        self.groups.clear()
        if len(groups) < 2:  # a single group cannot validate: ticking it would leave nothing to train on
            it = QListWidgetItem(ONE_GROUP)
            it.setFlags(Qt.ItemFlag.NoItemFlags)
            it.setToolTip("Put each person (or session) in its own folder to validate on whole groups")
            self.groups.addItem(it)
            groups = []
        for g in groups:
            it = QListWidgetItem(g)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            it.setCheckState(Qt.CheckState.Checked if g in wanted else Qt.CheckState.Unchecked)
            self.groups.addItem(it)
        self.kind = kind
        self.head.setEnabled(kind == "point")
        self._sync_enabled()

    def set_devices(self, devices: list[tuple[str, str]]) -> None:
        """Offer the CUDA devices found (the remembered one is reselected)."""
        for dev, desc in devices:
            if self.device.findData(dev) < 0:
                self.device.addItem(f"{dev}  {desc}", dev)
        if len(devices) > 1 and self.device.findData(f"{ALL_GPUS}:{len(devices)}") < 0:
            self.device.addItem(f"All GPUs ({len(devices)})", f"{ALL_GPUS}:{len(devices)}")
            self.device.setItemData(
                self.device.count() - 1,
                f"Data-parallel training on all {len(devices)} GPUs (imgreg train --nproc {len(devices)});\n"
                "out-of-fold models and the LR finder use the Parallel folds setting and one GPU",
                Qt.ItemDataRole.ToolTipRole,
            )
        self.has_gpu = bool(devices)
        _select(self.device, getattr(self, "_wanted_device", "auto"))
        self._sync_enabled()

    def _sync_enabled(self) -> None:
        self.weights_row.setEnabled(self.weights.currentData() == "file")
        self._show_weights_note()
        self.adv.set_kind(self.kind, self.head.currentData() != "pooled")
        dev = self.device.currentData()
        if dev == "cpu" or (dev == "auto" and self.has_gpu is False):
            self.device_note.setText("Training on the CPU is slow: keep the image size and epochs small.")
            self.device_note.show()
        else:
            self.device_note.hide()

    def _show_weights_note(self) -> None:
        """Say whether the chosen architecture will start from ImageNet weights (they matter most)."""
        arch = self.arch.currentText().strip()
        choice = self.weights.currentData()
        if choice not in ("auto", "pretrained") or arch == "tiny":
            self.weights_note.hide()
            return
        found = self.weights_here.get(arch)
        if found is not None:
            self.weights_note.setText(f"ImageNet weights for {arch}: found ({found.name})")
            self.weights_note.setStyleSheet("color: #15803d;")
        else:
            others = [a for a, path in self.weights_here.items() if a != arch and path is not None]
            hint = (
                f"; {', '.join(others)} {'has them' if len(others) == 1 else 'have them'}" if others else ""
            )
            fallback = "training fails" if choice == "pretrained" else "it starts from random weights"
            self.weights_note.setText(f"No ImageNet weights for {arch} on this machine: {fallback}{hint}")
            self.weights_note.setStyleSheet("color: #b45309;")
        self.weights_note.show()

    def _pick_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Weights file", "", "State dicts (*.pth *.pt *.safetensors);;All files (*)"
        )
        if path:
            self.weights_file.setText(path)
            _select(self.weights, "file")


def _row(*widgets: QWidget) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(4)
    for i, x in enumerate(widgets):
        lay.addWidget(x, 1 if i == 0 else 0)
    return w


def _select(combo: QComboBox, data: object) -> None:
    i = combo.findData(data)
    if i >= 0:
        combo.setCurrentIndex(i)
