"""The Train panel: options, Start / Stop after this epoch / Cancel, progress with ETA, live curves, LR finder, log."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine import events
from engine.core import Dataset, Label
from engine.data.split import too_few
from engine.events import Batch, Cancelled, Epoch, Event, Failed, Finished, Fold, LrFind, Prepared
from imgreg_gui.jobs.process import ChildProcess, ChildResult, open_error_box, show_progress, shown_command
from imgreg_gui.jobs.router import Router
from imgreg_gui.training.folds import FoldProgress
from imgreg_gui.training.leaks import LeakWatch
from imgreg_gui.training.options import DeviceQuery, OptionsForm, TrainOptions, train_command
from imgreg_gui.training.plots import LrPlot, TrainingCurves, pick_error_metric
from imgreg_gui.words import plural, tip

CommandMaker = Callable[..., list[str]]


def fmt_duration(s: float) -> str:
    """Seconds as ``m:ss`` or ``h:mm:ss``."""
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


START_TIP = "Train a model on the effective labels (corrections included)"


class LiveView(QWidget):
    """Curves, the LR finder and the event log, in tabs (placed in their own dock)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.tabs = QTabWidget()
        self.curves = TrainingCurves()
        self.lr_plot = LrPlot()
        self.use_lr = QPushButton("Use suggested LR")
        self.use_lr.setEnabled(False)
        self.use_lr.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)  # never clipped
        self.lr_note = QLabel("Run Find LR in the Train panel.")
        self.lr_note.setWordWrap(True)  # a long note wraps instead of widening the dock
        lr_page = QWidget()
        lr_lay = QVBoxLayout(lr_page)
        lr_lay.setContentsMargins(0, 0, 0, 0)
        lr_lay.addWidget(self.lr_plot, 1)
        row = QHBoxLayout()
        row.addWidget(self.lr_note, 1)
        row.addWidget(self.use_lr)
        lr_lay.addLayout(row)
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMaximumBlockCount(3000)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(max(7.0, self.font().pointSizeF() * 0.9))
        self.log.setFont(mono)
        self.tabs.addTab(self.curves, "Curves")
        self.tabs.addTab(lr_page, "LR finder")
        self.tabs.addTab(self.log, "Log")
        lay.addWidget(self.tabs)

    def clear_log(self) -> None:
        """Empty the log (another dataset was opened)."""
        self.log.clear()

    def append(self, text: str) -> None:
        """Add a line to the log."""
        self.log.appendPlainText(text)


class TrainPanel(QWidget):
    """Training options and controls; runs ``imgreg train`` in a supervised child and shows its progress."""

    run_finished = Signal(str)
    busy_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dataset_path: str | None = None
        self.refusal: str | None = None  # why Start cannot succeed now (too few labels), shown on the button
        self.kind = "point"
        self.make_command: CommandMaker = train_command
        self.child = ChildProcess(self)
        self.child.event.connect(self.on_event)
        self.child.output.connect(self._on_output)
        self.child.ended.connect(self._on_ended)
        self.devices = DeviceQuery(self)
        self.live = LiveView()
        self.live.use_lr.clicked.connect(self.use_suggestion)
        self.mode = ""
        self.last_result: ChildResult | None = None
        self.error_box: QMessageBox | None = None
        self.suggestion: float | None = None
        self._t0 = 0.0
        self._t_train: float | None = None
        self.prog = FoldProgress()
        self._n_batches = 0
        self._route = Router(
            prepared=self._on_prepared,
            batch=self._on_batch,
            epoch=self._on_epoch,
            lr_find=self._on_lr_find,
            fold=self._on_fold,
            progress=lambda e: show_progress(self.batch_bar, e),  # any kind, also ones added later
            finished=lambda e: self._on_end_event("finished", e),
            cancelled=lambda e: self._on_end_event("cancelled", e),
            failed=lambda e: self._on_end_event("failed", e),
            note=lambda e: self.live.append(f"note: {e['message']}"),
        )
        self._epochs = 0
        self.leaks = LeakWatch(self)
        self._build()
        self.form.set_options(TrainOptions.load())
        self.leaks.result.connect(self._show_leaks)
        self.leaks.auto_size_found.connect(self.form.set_auto_size)
        self.form.groups.itemChanged.connect(lambda _it: self.leaks.check(self.form.checked_groups()))
        self.devices.found.connect(self.form.set_devices)
        self._set_busy(False)

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        self.form = OptionsForm()
        self.form.find_lr.clicked.connect(self.find_lr)
        holder = QWidget()
        hold = QVBoxLayout(holder)
        hold.setContentsMargins(0, 0, 4, 0)
        hold.addWidget(self.form)
        hold.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(holder)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        outer.addWidget(scroll, 1)
        self.labels_info = QLabel("")
        self.labels_info.setWordWrap(True)
        self.labels_info.setStyleSheet("color: #6b7280;")
        outer.addWidget(self.labels_info)
        self.leak_note = QLabel("")
        self.leak_note.setWordWrap(True)
        self.leak_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.leak_note.setToolTip(
            "Near-duplicate images on both sides of the split make validation scores read too good:\n"
            "tick the groups so that copies fall on one side (Find similar lists them)."
        )
        self.leak_note.hide()
        outer.addWidget(self.leak_note)
        row = QHBoxLayout()
        self.start_btn = QPushButton("Start")
        self.start_btn.setDefault(True)
        self.start_btn.setToolTip(START_TIP)
        self.stop_btn = QPushButton("Stop after this epoch")
        self.cancel_btn = QPushButton("Cancel")
        self.start_btn.clicked.connect(lambda: self.start())
        self.stop_btn.clicked.connect(self.stop_after_epoch)
        self.cancel_btn.clicked.connect(self.cancel)
        for b in (self.start_btn, self.stop_btn, self.cancel_btn):
            row.addWidget(b)
        self.button_row = row
        outer.addLayout(row)
        self.epoch_bar = QProgressBar()
        self.epoch_bar.setFormat("epoch %v / %m")
        self.batch_bar = QProgressBar()
        self.batch_bar.setFormat("batch %v / %m")
        self.status = QLabel("Idle")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        for w in (self.epoch_bar, self.batch_bar, self.status):
            outer.addWidget(w)
        self.epoch_bar.hide()  # shown from the first start on
        self.batch_bar.hide()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt override)
        """Query the CUDA devices the first time the panel is shown (in a background process); check leaks again."""
        super().showEvent(event)
        self.devices.start()
        self.recheck_leaks()  # embeddings may have been computed since (Find similar)

    def recheck_leaks(self) -> None:
        """Check the split for leaking near-duplicates again (new embeddings were stored)."""
        if self.leaks.store_dir is not None:
            self.leaks.check(self.form.checked_groups())

    # -- dataset ---------------------------------------------------------------------------------------

    def set_dataset(self, path: str | Path | None, groups: list[str], kind: str) -> None:
        """Train on the dataset at ``path`` (None: no dataset, Start disabled)."""
        new = None if path is None else str(path)
        if new != self.dataset_path and not self.busy:  # each dataset keeps its own options (QSettings)
            if self.dataset_path is not None:
                self.options().save(self.dataset_path)
            self.form.set_dataset(groups, kind)
            self.form.set_options(TrainOptions.load(new))
            # the last dataset's outcome is not this one's
            self.status.setStyleSheet("")
            self.status.setText("Idle")
            self.epoch_bar.hide()
            self.batch_bar.hide()
            self.live.clear_log()
        self.dataset_path = new
        self.kind = kind
        self.form.set_dataset(groups, kind)
        if not self.busy:
            self.live.curves.clear("MAE" if kind == "scalar" else "px")
        self._set_busy(self.busy)

    def set_data(self, ds: Dataset | None, store_dir: str | Path | None, labels: dict[str, Label]) -> None:
        """The open dataset's items, store folder and labels: its ``auto`` size and the leak check follow."""
        self.form.set_auto_size(None)
        self.leaks.set_data(ds, store_dir, labels)
        self.leaks.check(self.form.checked_groups())

    def _show_leaks(self, leaks: object) -> None:
        text = self.leaks.text
        warn = leaks is not None and bool(text)
        self.leak_note.setStyleSheet("color: #b91c1c; font-weight: 600;" if warn else "color: #6b7280;")
        self.leak_note.setText(text)
        self.leak_note.setVisible(bool(text))

    def set_label_counts(self, counts: dict[str, int] | None) -> None:
        """Say which labels a training would use (the store's effective labels, corrections included)."""
        self.refusal = (
            too_few(counts.get("labelled", 0))
            if counts
            else ("no dataset is open" if self.dataset_path else None)
        )
        self._set_busy(self.busy)
        if not counts:
            self.labels_info.setText("")
            return
        n_fix = counts.get("corrected", 0)
        self.labels_info.setText(
            f"Trains on the {plural(counts.get('labelled', 0), 'labelled item')} as corrected "
            f"({n_fix:,} correction{'' if n_fix == 1 else 's'}, {counts.get('verified', 0):,} verified)."
        )

    # -- actions -----------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a training or LR finder child is running."""
        return self.child.running

    def options(self) -> TrainOptions:
        """The form's options."""
        return self.form.options()

    def start(self, init_from: str | Path | None = None) -> bool:
        """Start a training run with the form's options (fine-tuning run folder ``init_from``: Retrain); False
        when one runs or no dataset is open."""
        return self._launch("train", init_from)

    def add_button(self, btn: QPushButton) -> None:
        """Put ``btn`` in the row of Start (after it)."""
        self.button_row.insertWidget(1, btn)

    def find_lr(self) -> bool:
        """Run the learning-rate finder with the form's options."""
        return self._launch("lr_find")

    def _launch(self, mode: str, init_from: str | Path | None = None) -> bool:
        if self.busy or not self.dataset_path:
            return False
        if self.refusal:
            self.status.setText(f"Cannot train: {self.refusal}.")
            return False
        opts = self.options()
        opts.save(self.dataset_path)
        warm = {"init_from": init_from} if init_from is not None else {}
        cmd = self.make_command(self.dataset_path, opts, kind=self.kind, lr_find=mode == "lr_find", **warm)
        self.mode = mode
        self.last_result = None
        self._t0 = time.monotonic()
        self._t_train = None
        self.prog = FoldProgress(
            opts.folds if mode == "train" and opts.folds >= 2 and init_from is None else 1,
            max(1, opts.parallel),
        )
        self._n_batches, self._epochs = 0, opts.epochs
        if mode == "train":
            self.live.curves.clear("MAE" if self.kind == "scalar" else "px")
            self.live.curves.set_title("Training now (live)")
            self.live.tabs.setCurrentWidget(self.live.curves)
        else:
            self.live.use_lr.setEnabled(False)
            self.live.lr_note.setText("Finding a learning rate...")
            self.live.tabs.setCurrentIndex(1)
        self.epoch_bar.setVisible(mode == "train")
        self.batch_bar.show()
        self.epoch_bar.setRange(0, max(1, opts.epochs))
        self.epoch_bar.setValue(0)
        self.batch_bar.setRange(0, 0)
        self.live.append(f"$ {shown_command(cmd)}")
        self.status.setStyleSheet("")
        self.status.setText(
            "Starting (loading the model and data)..."
            if mode == "train"
            else "Finding a learning rate (up to 100 mini-batches at rising rates)..."
        )
        self.child.start(cmd)
        self._set_busy(True)
        return True

    def warn(self, text: str) -> None:
        """Show a warning about the last run in the status line (red until the next start)."""
        self.status.setStyleSheet("color: #b91c1c; font-weight: 600;")
        self.status.setText(text)

    def stop_after_epoch(self) -> None:
        """Ask the training to stop after the current epoch (the run is saved)."""
        if self.busy:
            self.child.stop_after_epoch()
            self.stop_btn.setEnabled(False)
            self.status.setText(self.status.text() + "  (stopping after this epoch)")
            self.live.append("stop after this epoch requested")

    def cancel(self) -> None:
        """Stop now (the child is killed if it does not exit within a few seconds)."""
        if self.busy:
            self.child.cancel()
            self.cancel_btn.setEnabled(False)
            self.stop_btn.setEnabled(False)
            self.status.setText("Cancelling...")
            self.live.append("cancel requested")

    def use_suggestion(self) -> None:
        """Copy the LR finder's suggestion into the learning-rate field."""
        if self.suggestion:
            self.form.set_lr(self.suggestion)

    def shutdown(self) -> None:
        """Stop any child at once (the window is closing)."""
        self.leaks.timer.stop()
        self.leaks.wait(3000)
        if self.busy:
            self.child.kill()
            self.child.wait(3000)

    def _set_busy(self, busy: bool) -> None:
        can = not busy and bool(self.dataset_path) and self.refusal is None
        self.start_btn.setEnabled(can)
        self.form.find_lr.setEnabled(can)
        why = f"Cannot train: {self.refusal}" if self.refusal and not busy else None
        self.start_btn.setToolTip(tip(why or START_TIP))
        self.stop_btn.setEnabled(busy and self.mode == "train")
        self.cancel_btn.setEnabled(busy)
        self.form.setEnabled(not busy)
        self.busy_changed.emit(busy)

    # -- events ----------------------------------------------------------------------------------------

    def on_event(self, ev: Event) -> None:
        """Show one child event (progress, curves, log)."""
        self._route(ev)

    def _on_prepared(self, ev: Prepared) -> None:
        if not self._plots(ev):
            self.live.append(f"prepared: fold {ev.get('fold')} on {ev['device']}")
            return
        self._epochs = ev["epochs"] or self._epochs or 1
        self.live.curves.set_epochs(ev["epochs"] or 1)
        self._n_batches = ev["n_batches"]
        self.epoch_bar.setRange(0, self._epochs)
        self.batch_bar.setRange(0, max(1, self._n_batches))
        self.batch_bar.setValue(0)
        dev = ev["device"]
        self.live.append(
            f"prepared: {ev['arch']} {ev['head']} on {dev}, {ev['n_train']} train / "
            f"{ev['n_valid']} valid, size {ev['size']}, bs {ev['bs']}, {self._n_batches} batches"
        )
        procs = ev.get("world_size", 1)
        if procs > 1:
            self.live.append(f"data-parallel: {procs} processes, {self._n_batches} batches each")
        if ev["on_cpu"]:
            self.live.append("warning: training on the CPU (slow); keep images small")
        self.status.setText(f"Training on {dev}{f' ({procs} processes)' if procs > 1 else ''}...")
        if self._t_train is None:
            self._t_train = time.monotonic()

    def _on_lr_find(self, ev: LrFind) -> None:
        self.suggestion = ev["suggestion"]
        self.live.lr_plot.show_result(ev["lrs"], ev["losses"], self.suggestion)
        ok = bool(self.suggestion)
        self.live.use_lr.setEnabled(ok)
        self.live.lr_note.setText(
            f"Suggested learning rate: {self.suggestion:.2g}" if ok else "No suggestion"
        )
        self.live.append(f"lr_find: suggestion {self.suggestion}")

    def _on_fold(self, ev: Fold) -> None:
        fold, folds = ev["fold"], max(1, ev["folds"])
        self.live.append(f"fold {fold} of {folds}")
        self.status.setText(f"Out-of-fold model {fold} of {folds}...")
        if self.prog.start(fold, folds):
            self._plot_fold(fold)

    def _on_end_event(self, kind: str, ev: Finished | Cancelled | Failed) -> None:
        what = ev.get("message") or ev.get("run_id") or ""
        self.live.append(f"{kind}: {what}".rstrip(": "))

    def _plots(self, ev: Event) -> bool:
        """Whether an event's fold is the plotted one (events of other folds side by side only count)."""
        return self.prog.folds <= 1 or self.prog.fold_of(ev) in (self.prog.plotted, None)

    def _plot_fold(self, fold: int) -> None:
        self.live.curves.clear("MAE" if self.kind == "scalar" else "px")
        self.live.curves.set_title(f"Out-of-fold model {fold} of {self.prog.folds} (live)")

    def _on_batch(self, ev: Batch) -> None:
        fold = self.prog.fold_of(ev)
        n = max(1, ev["n_batches"] or self._n_batches or 1)
        ep, b = ev["epoch"], ev["batch"]
        before = self.prog.plotted
        if not self.prog.batch(fold, ep, self._epochs or 1, b, n) and self.prog.folds > 1:
            self._show_status(ev)
            return
        if self.prog.folds > 1 and before != fold:
            self._plot_fold(fold)  # the fold shown before ended: follow one still running
        self.live.curves.add_batch(ev)
        self.batch_bar.setFormat("batch %v / %m")
        if self.batch_bar.maximum() != n:
            self.batch_bar.setRange(0, n)
        self.batch_bar.setValue(b)
        self._show_status(ev)

    def _show_status(self, ev: Batch) -> None:
        n = max(1, ev["n_batches"] or self._n_batches or 1)
        ep, b = ev["epoch"], ev["batch"]
        # Fraction of the whole job (all folds); the time before the first batch (loading) is not counted.
        frac = self.prog.fraction()
        elapsed = time.monotonic() - (self._t_train or self._t0)
        eta = elapsed / frac * (1 - frac) if frac > 0 else 0.0
        fold = self.prog.label()
        if self.prog.folds > 1 and len(self.prog.running) > 1:
            fold += f"fold {self.prog.fold_of(ev)}: "
        size = f" at {ev['size']}" if ev.get("size") else ""  # the progressive-resizing stage
        self.status.setText(
            f"{fold}Epoch {ep}/{self._epochs}{size}, batch {b}/{n}, loss {ev['loss']:.4g}  -  "
            f"elapsed {fmt_duration(elapsed)}, ETA {fmt_duration(eta)}"
        )

    def _on_epoch(self, ev: Epoch) -> None:
        ep = ev["epoch"]
        fold = self.prog.fold_of(ev)
        before = self.prog.plotted
        if not self.prog.epoch(fold, ep, ev["epochs"] or self._epochs or 1) and self.prog.folds > 1:
            self.live.append(f"fold {fold}: epoch {ep}/{ev['epochs']}  valid_loss {ev['valid_loss']}")
            return
        if self.prog.folds > 1 and before is None:
            self._plot_fold(fold)
        self.live.curves.add_epoch(ev)
        self._epochs = ev["epochs"] or self._epochs
        self.epoch_bar.setRange(0, max(1, self._epochs))
        self.epoch_bar.setValue(ep)
        name, err = pick_error_metric(ev["metrics"])
        parts = [
            f"epoch {ep}/{self._epochs}",
            f"train_loss {ev['train_loss']:.4g}",
            f"valid_loss {ev['valid_loss']:.4g}",
        ]
        if err is not None:
            parts.append(f"{name} {err:.3g}")
        self.live.append("  ".join(parts))

    def _on_output(self, text: str) -> None:
        self.live.append(text)

    def _on_ended(self, res: ChildResult) -> None:
        self.last_result = res
        mode, self.mode = self.mode, ""
        self._set_busy(False)
        elapsed = fmt_duration(time.monotonic() - self._t0)
        if res.status == "finished":
            run_id = str(res.final.get("run_id") or res.summary.get("run_id") or "")
            if mode == "lr_find":
                self.status.setText("LR finder done: see its curve in Training curves.")
                self.batch_bar.hide()
                if not self.suggestion and res.summary.get("suggestion"):
                    self._on_lr_find(events.lr_find(float(res.summary["suggestion"]), [], []))
            else:
                self.status.setText(f"Finished run {run_id} in {elapsed}.")
                self.batch_bar.setValue(self.batch_bar.maximum())
                self.run_finished.emit(run_id)
        elif res.status == "cancelled":
            run_id = str(res.final.get("run_id") or "")
            self.live.append(res.message)
            if run_id and mode == "train":
                # Stopped after an epoch: the engine saved the best epoch so far as a run.
                self.status.setText(f"Stopped early; run {run_id} saved ({elapsed}).")
                self.run_finished.emit(run_id)
            else:
                self.status.setText("Cancelled.")
        else:
            what = "The LR finder" if mode == "lr_find" else "Training"
            self.status.setText(f"{what} failed.")
            self.live.append(f"error: {res.message}")
            self.show_error(f"{what} failed", res.message, res.stderr_tail)
        self.batch_bar.setRange(0, max(1, self.batch_bar.maximum()))

    def show_error(self, title: str, message: str, details: str = "") -> None:
        """A non-blocking error dialog (``open()``, so tests and the app keep running)."""
        self.error_box = open_error_box(self, title, message, details)
        self.error_box.finished.connect(lambda _r: setattr(self, "error_box", None))
