"""Progress of several processes in one view (Qt-free): out-of-fold models fitted one after another or side by
side (``--parallel``; their events carry ``fold``), and which fold's curves the panel plots."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.events import Event


@dataclass
class FoldProgress:
    """Per-fold fractions done; the whole job's fraction; the one fold whose curves are plotted (the oldest running)."""

    folds: int = 1
    parallel: int = 1
    done: set[int] = field(default_factory=set)
    running: dict[int, float] = field(default_factory=dict)
    plotted: int | None = None

    def start(self, fold: int, folds: int) -> bool:
        """A fold began; True when its curves are to be plotted from now on (clear the plot)."""
        self.folds = max(1, folds, self.folds)
        while fold not in self.running and len(self.running) >= max(1, self.parallel):
            self._finish(min(self.running))  # ended early (stop after an epoch): its slot went to this fold
        self.running.setdefault(fold, 0.0)
        return self._take(fold)

    def fold_of(self, ev: Event) -> int:
        """The fold an event belongs to: its tag, else the only or oldest running fold (1 without folds)."""
        fold, folds = ev.get("fold"), ev.get("folds")
        if isinstance(fold, int) and fold:
            self.folds = max(self.folds, folds if isinstance(folds, int) else 1)
            return fold
        return self.plotted or min(self.running, default=1)

    def batch(self, fold: int, epoch: int, epochs: int, batch: int, n_batches: int) -> bool:
        """Record a batch of ``fold``; True when it is the plotted fold (or the plot was free and takes it)."""
        total = max(1, epochs * n_batches)
        if fold not in self.done:
            self.running[fold] = min(1.0, ((epoch - 1) * n_batches + batch) / total)
        return self._take(fold) or self.plotted == fold

    def epoch(self, fold: int, epoch: int, epochs: int) -> bool:
        """Record an epoch's end of ``fold`` (its last ends it); True when it is the plotted fold."""
        last = epoch >= epochs
        plotted = (
            not last and self._take(fold)
        ) or self.plotted == fold  # a fold's last epoch is no new plot
        if last:
            self._finish(fold)
        return plotted

    def _finish(self, fold: int) -> None:
        self.running.pop(fold, None)
        self.done.add(fold)
        if self.plotted == fold:
            self.plotted = None

    def fraction(self) -> float:
        """How much of the whole job (every fold) is done, 0..1."""
        return min(1.0, (len(self.done) + sum(self.running.values())) / max(1, self.folds))

    def label(self) -> str:
        """``'Fold 2/5, '`` or ``'Folds 2, 3 of 5 (fold 2 shown), '``; ``''`` without folds."""
        if self.folds <= 1:
            return ""
        run = sorted(self.running)
        if len(run) <= 1:
            return f"Fold {run[0] if run else self.plotted or len(self.done)}/{self.folds}, "
        shown = f" (fold {self.plotted} shown)" if self.plotted else ""
        return f"Folds {', '.join(map(str, run))} of {self.folds}{shown}, "

    def _take(self, fold: int) -> bool:
        """Plot ``fold`` when no fold is plotted; True when it was taken now."""
        if self.plotted is None and fold not in self.done:
            self.plotted = fold
            return True
        return False
