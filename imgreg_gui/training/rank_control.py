"""Out-of-fold ranking from the review panel: K and R, the Rank button (cancel while running), its confirmation,
the ``imgreg rank`` child and its progress bar; mixed into ``ReviewPanel``, which lays the widgets out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import QLabel, QMessageBox, QProgressBar, QPushButton, QSpinBox, QWidget

from engine.data.split import too_few
from engine.events import Epoch, Event, Fold
from imgreg_gui import settings
from imgreg_gui.jobs.process import ChildProcess, ChildResult, open_error_box
from imgreg_gui.jobs.router import Router
from imgreg_gui.model.state import AppState
from imgreg_gui.training.options import TrainOptions, rank_command
from imgreg_gui.training.rank_confirm import confirm_text, per_model_seconds
from imgreg_gui.training.review_model import DEFAULT_REPEATS, REPEATS_SETTING
from imgreg_gui.words import tip


class RankControls:
    """The ranking half of the review panel (a mixin on a QWidget that has ``state``, ``status`` and ``refresh``)."""

    state: AppState
    status: QLabel
    source: str | None
    error_box: QMessageBox | None

    if TYPE_CHECKING:

        @property
        def kind(self) -> str: ...

        @property
        def store(self) -> Any: ...

        @property
        def dataset(self) -> Any: ...

        def refresh(self, prefer: str | None = None) -> None: ...

    def _widget(self) -> QWidget:
        """The panel this is mixed into, as the parent of the child and dialogs."""
        assert isinstance(self, QWidget)
        return self

    def _init_rank(self) -> None:
        """The child process that ranks and how its command is made."""
        self.child = ChildProcess(self._widget())
        self.child.ended.connect(self._on_rank_ended)
        self.child.event.connect(self._on_rank_event)
        self._route = Router(fold=self._on_rank_fold, epoch=self._on_rank_epoch)
        # fold models trained at once (the controller reads the Train panel's option)
        self.parallel = lambda: 1
        self.make_rank_command = lambda dataset, folds, repeats=1: rank_command(
            dataset, TrainOptions.load(dataset), folds, self.kind, repeats
        )

    def _build_rank(self) -> None:
        """K, R, the Rank button and the progress bar (the panel places them)."""
        self.folds = QSpinBox()
        self.folds.setRange(2, 20)
        self.folds.setValue(5)
        self.folds.setPrefix("K=")
        self.folds.setToolTip("Folds: each of the K models holds out 1/K of the items (or groups)")
        self.repeats = QSpinBox()
        self.repeats.setRange(1, 10)
        self.repeats.setPrefix("R=")
        self.repeats.setToolTip(
            "Rounds: R out-of-fold rounds with other seeds and splits, averaged (R x K models); their\n"
            "disagreement joins the label-quality score and, for scalars, the labels of the items each\n"
            "model sees alike are a second opinion. Worth it where the model is weak (planted wrong ages in\n"
            "the top k, 5 folds: 45% with one round, 53% with two, 57% with three; wrong points 96%\n"
            "with one). Remembered per kind: 2 for scalars, 1 for points until changed"
        )
        self.repeats.valueChanged.connect(lambda v: settings.set_value(f"{REPEATS_SETTING}/{self.kind}", v))
        self.rank_btn = QPushButton("Rank out-of-fold")
        self.rank_btn.setToolTip(
            "Train K models, each predicting the items it never saw (imgreg rank --folds K --repeats R)"
        )
        self.rank_tip = self.rank_btn.toolTip()
        self.rank_btn.clicked.connect(self._rank_clicked)
        self.folds.valueChanged.connect(lambda _v: self._update_rank_btn())
        self.state.records_changed.connect(lambda _names: self._update_rank_btn())
        self.rank_bar = QProgressBar()
        self.rank_bar.setToolTip(
            "Out-of-fold ranking: epochs done over all fold models (Cancel ranking stops it)"
        )
        self.rank_bar.hide()
        self._rank_done = 0  # epochs finished over all fold models
        self._rank_folds = 0

    def load_repeats(self) -> None:
        """Show the rounds remembered for this dataset's kind (scalars default to 2: a weak model needs them)."""
        default = DEFAULT_REPEATS.get(self.kind, 1)
        value = settings.settings().value(f"{REPEATS_SETTING}/{self.kind}", default)
        with QSignalBlocker(self.repeats):
            self.repeats.setValue(_int(value, default))

    def rank_refusal(self, folds: int) -> str | None:
        """Why a ranking with ``folds`` folds cannot succeed on the open dataset (too few labels), or None."""
        if self.store is None:
            return "no dataset is open"
        return too_few(self.state.counts["labelled"], folds)  # the state keeps the counts

    def _update_rank_btn(self) -> None:
        """Rank is offered only when it can succeed; its tooltip says why not."""
        if self.child.running:
            self.rank_btn.setEnabled(True)  # it reads "Cancel ranking"
            return
        reason = self.rank_refusal(self.folds.value()) if self.dataset is not None else "no dataset is open"
        self.rank_btn.setEnabled(reason is None)
        self.rank_btn.setToolTip(tip(f"Cannot rank: {reason}") if reason else self.rank_tip)

    def _rank_clicked(self) -> None:
        if self.child.running:
            self.child.cancel()
            self.status.setText("Cancelling the ranking...")
        else:
            self.ask_rank()

    def ask_rank(self) -> QMessageBox | None:
        """Say what ranking costs (K x R trainings, the time estimate) and rank when the user agrees."""
        k, store = self.folds.value(), self.store
        reason = self.rank_refusal(k)
        if reason or store is None or self.child.running:
            if reason:
                self.status.setText(f"Cannot rank: {reason}.")
            return None
        labelled = self.state.counts["labelled"]
        per_model = per_model_seconds(store.dir, labelled, k)
        text = confirm_text(labelled, k, self.repeats.value(), self.parallel(), per_model)
        box = QMessageBox(QMessageBox.Icon.Question, "Rank out-of-fold", text, parent=self._widget())
        box.setStandardButtons(QMessageBox.StandardButton.Ok | QMessageBox.StandardButton.Cancel)
        box.button(QMessageBox.StandardButton.Ok).setText("Rank")
        box.accepted.connect(lambda: self.rank())
        box.open()
        self._rank_box = box
        return box

    def rank(self, folds: int | None = None) -> bool:
        """Run ``imgreg rank --folds K`` in a child; its out-of-fold predictions become the source."""
        ds = self.dataset
        if ds is None or self.child.running:
            return False
        k = folds or self.folds.value()
        reason = self.rank_refusal(k)
        if reason:
            self.status.setText(f"Cannot rank: {reason}.")
            return False
        r = self.repeats.value()
        self.rank_btn.setText("Cancel ranking")
        rounds = f", {r} rounds" if r > 1 else ""
        self.status.setText(
            f"Ranking with {k}-fold out-of-fold predictions{rounds} (trains {k * r} models)..."
        )
        self._rank_done, self._rank_folds = 0, k * r
        self.rank_bar.setRange(0, 0)  # busy until the first fold says how many epochs each takes
        self.rank_bar.setFormat("starting...")
        self.rank_bar.show()
        self.child.start(self.make_rank_command(ds.root, k, r))
        return True

    def _on_rank_event(self, ev: Event) -> None:
        self._route(ev)

    def _on_rank_fold(self, ev: Fold) -> None:
        self.status.setText(f"Out-of-fold ranking: model {ev['fold']} of {ev['folds']}...")
        self._rank_folds = ev["folds"]
        if self.rank_bar.maximum() == 0:  # epochs per model not known yet: count models
            self.rank_bar.setRange(0, ev["folds"])
            self.rank_bar.setValue(ev["fold"] - 1)
            self.rank_bar.setFormat(f"model {ev['fold']} of {ev['folds']}")

    def _on_rank_epoch(self, ev: Epoch) -> None:
        self.status.setText(self.status.text().split(" - ")[0] + f" - epoch {ev['epoch']}")
        self._rank_done += 1
        total = max(1, self._rank_folds) * ev["epochs"]
        self.rank_bar.setRange(0, total)
        self.rank_bar.setFormat(f"%p% ({self._rank_done} of {total} epochs)")
        self.rank_bar.setValue(min(self._rank_done, total))

    def _on_rank_ended(self, res: ChildResult) -> None:
        self.rank_btn.setText("Rank out-of-fold")
        self.rank_bar.hide()
        self._update_rank_btn()
        if res.ok:
            run_id = res.final.get("run_id") or res.summary.get("run_id")
            self.refresh(prefer=run_id)
            self.state.set_active_run(self.source)
            self.status.setText(f"Ranked by {self.source}.")
        elif res.status == "cancelled":
            self.status.setText("Ranking cancelled.")
        else:
            self.status.setText("Ranking failed.")
            self.error_box = open_error_box(self._widget(), "Ranking failed", res.message, res.stderr_tail)
            self.error_box.finished.connect(lambda _r: setattr(self, "error_box", None))

    def shutdown(self) -> None:
        """Kill a running ranking (the window is closing)."""
        if self.child.running:
            self.child.kill()
            self.child.wait(3000)


def _int(value: Any, default: int) -> int:
    """A remembered integer setting, or ``default`` when it is unreadable."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
