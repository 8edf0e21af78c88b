"""How the CLI shows engine events: JSON lines (``--json``) or tqdm progress bars and epoch lines on stderr."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from tqdm import tqdm

from engine import events
from engine.core import CancelToken
from engine.events import Event


class Reporter:
    """Prints events: JSON lines on stdout (``--json``) or a progress bar and epoch lines on stderr."""

    def __init__(self, as_json: bool, err: TextIO | None = None, out: TextIO | None = None) -> None:
        self.as_json, self.err, self.out = as_json, err or sys.stderr, out or sys.stdout
        self._lock = threading.Lock()
        self._bar: tqdm | None = None
        self._bar_key: tuple[Any, ...] | None = None

    def __call__(self, e: Event) -> None:
        """Handle one engine event."""
        with self._lock:
            if self.as_json:
                self.out.write(events.to_json(e) + "\n")
                self.out.flush()
            else:
                self._text(e)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._bar_key = None, None

    def _progress(self, key: tuple[Any, ...], desc: str, done: int, total: int, **post: Any) -> None:
        """Advance the bar for ``key`` (a new bar when the key changes); tqdm stays quiet when stderr is no tty."""
        bar = self._bar
        if bar is None or self._bar_key != key:
            self._close_bar()
            # disable=None: no carriage-return lines in logs when stderr is not a terminal
            bar = self._bar = tqdm(
                total=total, desc=desc, file=self.err, leave=False, disable=None, dynamic_ncols=True
            )
            self._bar_key = key
        bar.n = done
        if post:
            bar.set_postfix(post, refresh=False)
        bar.refresh()

    def _line(self, text: str) -> None:
        self._close_bar()
        self.err.write(text + "\n")
        self.err.flush()

    def _text(self, e: Event) -> None:
        t = e["type"]
        if e["type"] == "note":
            self._line(f"note: {e['message']}")
        elif e["type"] == "prepared":
            fold = f"fold {e['fold']}/{e['folds']}: " if "fold" in e else ""
            self._line(
                f"{fold}{e['arch']} {e['kind']} model, {e['n_train']} train / {e['n_valid']} valid items, "
                f"size {e['size'][0]}x{e['size'][1]}, bs {e['bs']}, {e['epochs']} epochs on {e['device']}"
                + (" (CPU: slow)" if e.get("on_cpu") else "")
            )
        elif e["type"] == "batch":
            n = max(1, e["n_batches"])
            self._progress(
                ("batch", e["epoch"]), f"epoch {e['epoch']}", e["batch"], n, loss=f"{e['loss']:.4f}"
            )
        elif e["type"] == "epoch":
            mets = "  ".join(f"{k} {v:.4g}" for k, v in e["metrics"].items())
            fold = (
                f"fold {e['fold']}/{e['folds']}: " if "fold" in e else ""
            )  # folds side by side (--parallel)
            self._line(
                f"{fold}epoch {e['epoch']}/{e['epochs']}  train {e['train_loss']:.4f}  valid {e['valid_loss']:.4f}  {mets}"
            )
        elif e["type"] == "lr_find":
            self._line(f"lr_find suggests {e['suggestion']:.2e}")
        elif e["type"] == "fold":
            self._line(f"--- fold {e['fold']}/{e['folds']} ---")
        elif e["type"] in (
            "predict_progress",
            "lr_find_progress",
            "embed_progress",
            "cache_progress",
            "audit_progress",
        ):
            what = {
                "predict_progress": "predicted",
                "embed_progress": "embedded",
                "cache_progress": "cached",
                "audit_progress": "checks",
            }.get(t, "lr_find")
            self._progress((t,), what, e["done"], e["total"])
        elif e["type"] == "failed" or e["type"] == "cancelled":
            self._line(f"{t}: {e['message']}")

    def summary(self, data: dict[str, Any], text: str) -> None:
        """The final summary: a JSON ``summary`` line, or human text on stdout."""
        if self.as_json:
            self(events.summary(data))
        else:
            with self._lock:
                self._close_bar()
            self.out.write(text + "\n")
            self.out.flush()


@contextmanager
def stdin_control(enabled: bool, stream: TextIO | None = None) -> Iterator[CancelToken]:
    """A cancel token driven by ``stop-epoch`` / ``cancel`` lines on stdin (read in a daemon thread)."""
    token = CancelToken()
    if enabled:
        src = stream or sys.stdin

        def read() -> None:
            try:
                for line in src:
                    cmd = line.strip().lower()
                    if cmd in ("stop-epoch", "stop_epoch", "epoch"):
                        token.cancel("epoch")
                    elif cmd in ("cancel", "stop", "now"):
                        token.cancel("now")
            # stdin closed or unreadable: no one can cancel, as without the flag
            except (OSError, ValueError):
                return

        threading.Thread(target=read, name="imgreg-stdin-control", daemon=True).start()
    yield token
