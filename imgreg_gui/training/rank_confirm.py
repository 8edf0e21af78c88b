"""What Rank out-of-fold costs, said before it starts: K x R trainings, and a time estimate from the last run."""

from __future__ import annotations

from pathlib import Path

from engine.runs.files import list_runs, read_summary


def per_model_seconds(store_dir: Path | None, labelled: int, folds: int) -> float | None:
    """About how long one fold model trains, scaled from the newest plain training run's time (None: no run)."""
    if store_dir is None:
        return None
    for run in reversed(list_runs(store_dir)):
        s = read_summary(run)
        t, n = s.get("time_s"), s.get("n_train")
        if s.get("folds") or not isinstance(t, (int, float)) or not isinstance(n, int) or n <= 0:
            continue
        return float(t) * (labelled * (folds - 1) / folds) / n
    return None


def duration_text(seconds: float) -> str:
    """``'about 40 s'``, ``'about 12 min'``, ``'about 2.5 h'``."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def confirm_text(labelled: int, folds: int, repeats: int, parallel: int, per_model: float | None) -> str:
    """The question asked before ranking starts."""
    models = folds * repeats
    at_once = max(1, min(parallel, folds))
    text = (
        f"Rank out-of-fold trains {models} models ({folds} folds"
        + (f" x {repeats} rounds" if repeats > 1 else "")
        + f") on the {labelled:,} labelled items, {at_once} at a time, with the Train panel's options."
    )
    if per_model is not None:
        text += f" Estimated time: {duration_text(per_model * models / at_once)} (scaled from the last run)."
    else:
        text += " No earlier run to estimate the time from: each model takes about as long as one training."
    return text + " Cancel stops it at any time."
