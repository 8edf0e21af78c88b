"""Supervise a child process (``imgreg train|predict|rank ... --json``) and turn its JSON lines into Qt signals."""

from __future__ import annotations

import os
import shlex
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Qt, QTimer, Signal
from PySide6.QtWidgets import QMessageBox, QProgressBar, QWidget

from engine.events import Cancelled, Failed, Finished, Progress, Summary, parse_event
from imgreg_gui.jobs.router import Router

REPO_ROOT = Path(__file__).resolve().parents[2]
KILL_GRACE_MS = 4000
STDERR_KEEP = 40


def engine_command(*args: str) -> list[str]:
    """The command line running ``imgreg ARGS`` with this interpreter, through the lower-priority launcher."""
    return [sys.executable, "-m", "imgreg_gui.jobs.launch", "engine.cli", *args]


def shown_command(cmd: list[str]) -> str:
    """A child's command line as a person would type it: ``imgreg train ...`` for an engine command."""
    head = [sys.executable, "-m", "imgreg_gui.jobs.launch", "engine.cli"]
    args = ["imgreg", *cmd[len(head) :]] if cmd[: len(head)] == head else cmd
    return shlex.join(args)


@dataclass
class ChildResult:
    """How a child ended: ``status`` is finished, cancelled, failed or crashed, with a message for people."""

    status: str
    message: str = ""
    exit_code: int | None = None
    final: Mapping[str, Any] = field(default_factory=dict)
    """The ``finished``/``cancelled``/``failed`` event (empty when there was none)."""
    summary: Mapping[str, Any] = field(default_factory=dict)
    """The ``summary`` event (empty when there was none)."""
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the child finished its job."""
        return self.status == "finished"


def open_error_box(parent: QWidget, title: str, message: str, details: str = "") -> QMessageBox:
    """A non-blocking error dialog (``open()``, so tests and the app keep running), deleted when closed."""
    box = QMessageBox(
        QMessageBox.Icon.Critical, title, message or title, QMessageBox.StandardButton.Ok, parent
    )
    if details:
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def progress_label(kind: str) -> str:
    """How a progress event's kind reads on a bar: ``cache_progress`` -> ``cache``, ``lr_find_progress`` ->
    ``lr find``."""
    return kind.removesuffix("_progress").replace("_", " ")


def show_progress(bar: QProgressBar, ev: Progress) -> None:
    """Show any ``PROGRESS_TYPES`` event (``done`` of ``total``) on ``bar``, labelled by its kind."""
    bar.setFormat(f"{progress_label(ev['type'])} %v / %m")  # the kind names the bar (no dispatch)
    bar.setRange(0, max(1, ev["total"]))
    bar.setValue(ev["done"])
    bar.show()


def _child_env(threads: int | None) -> QProcessEnvironment:
    env = QProcessEnvironment.systemEnvironment()
    env.insert("PYTHONUNBUFFERED", "1")
    env.insert("PYTHONIOENCODING", "utf-8")
    path = env.value("PYTHONPATH", "")
    if str(REPO_ROOT) not in path.split(os.pathsep):
        env.insert("PYTHONPATH", os.pathsep.join(p for p in (str(REPO_ROOT), path) if p))
    if threads and not env.contains("OMP_NUM_THREADS"):
        # Leave a core to the GUI so browsing stays smooth while the child trains on the CPU.
        env.insert("OMP_NUM_THREADS", str(threads))
        env.insert("MKL_NUM_THREADS", str(threads))
    return env


def default_threads() -> int:
    """Torch threads for a child: every core but one (at least one)."""
    return max(1, (os.cpu_count() or 2) - 1)


class ChildProcess(QObject):
    """One supervised child: emits ``event(dict)`` per JSON line, ``output(str)`` per other line, ``ended``.

    A child that exits without a ``finished``/``cancelled`` event (a crash, out of memory, a traceback) ends as
    ``failed``/``crashed`` with the tail of its standard error as the message; the app never goes down with it.
    """

    event = Signal(dict)  # type: ignore[assignment]  # shadows QObject.event(); the app and tests connect to it
    output = Signal(str)
    ended = Signal(object)

    def __init__(self, parent: QObject | None = None, threads: int | None = None) -> None:
        super().__init__(parent)
        self.threads = default_threads() if threads is None else threads
        self.proc: QProcess | None = None
        self.command: list[str] = []
        self._buf = b""
        self._stderr: deque[str] = deque(maxlen=STDERR_KEEP)
        self._err_buf = b""
        self._final: Finished | Cancelled | Failed | None = None
        self._end_kind: str | None = None  # which of those it was
        self._summary: Summary | None = None
        self._track = Router(
            finished=lambda e: self._set_final("finished", e),
            cancelled=lambda e: self._set_final("cancelled", e),
            failed=lambda e: self._set_final("failed", e),
            summary=self._set_summary,
        )
        self._cancel_requested = False
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self.kill)
        self._ended_once = False

    @property
    def running(self) -> bool:
        """Whether the child is starting or running."""
        return self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning

    def start(self, command: list[str], cwd: str | Path | None = None) -> None:
        """Start ``command`` (program first); a previous child must have ended."""
        if self.running:
            raise RuntimeError("a child process is already running")
        self.command = list(command)
        self._buf, self._err_buf = b"", b""
        self._stderr.clear()
        self._final, self._end_kind, self._summary = None, None, None
        self._cancel_requested = False
        self._ended_once = False
        proc = QProcess(self)
        proc.setProcessEnvironment(_child_env(self.threads))
        proc.setWorkingDirectory(str(cwd or REPO_ROOT))
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        self.proc = proc
        proc.start(command[0], command[1:])

    # -- steering ------------------------------------------------------------------------------------

    def send(self, line: str) -> None:
        """Write one control line (``stop-epoch`` or ``cancel``) to the child's standard input."""
        if self.running and self.proc is not None:
            self.proc.write((line.rstrip("\n") + "\n").encode())

    def stop_after_epoch(self) -> None:
        """Ask the child to stop after the current epoch (it still saves the run)."""
        self.send("stop-epoch")

    def cancel(self, grace_ms: int = KILL_GRACE_MS) -> None:
        """Ask the child to stop now; kill it when it has not exited after ``grace_ms``."""
        if not self.running:
            return
        self._cancel_requested = True
        self.send("cancel")
        self._kill_timer.start(grace_ms)

    def kill(self) -> None:
        """Kill the child at once."""
        if self.running and self.proc is not None:
            self._cancel_requested = True
            self.proc.kill()

    def wait(self, ms: int = 5000) -> bool:
        """Block until the child ends (tests and shutdown only)."""
        return self.proc is None or self.proc.waitForFinished(ms)

    # -- reading ----------------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        if self.proc is None:
            return
        self._buf += bytes(self.proc.readAllStandardOutput().data())
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            self._line(raw.decode("utf-8", "replace").rstrip("\r"))

    def _line(self, text: str) -> None:
        if not text.strip():
            return
        ev = parse_event(text) if text.lstrip().startswith("{") else None
        if ev is None:  # not one of the engine's events (engine/events.py): plain output
            self.output.emit(text)
            return
        self._track(ev)
        self.event.emit(ev)

    def _set_final(self, kind: str, ev: Finished | Cancelled | Failed) -> None:
        self._end_kind, self._final = kind, ev

    def _set_summary(self, ev: Summary) -> None:
        self._summary = ev

    def _read_stderr(self) -> None:
        if self.proc is None:
            return
        self._err_buf += bytes(self.proc.readAllStandardError().data())
        *lines, self._err_buf = self._err_buf.split(b"\n")
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip("\r")
            if text.strip():
                self._stderr.append(text)
                self.output.emit(text)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            prog = self.command[0] if self.command else "?"
            self._end(
                ChildResult(
                    "failed", f"could not start {prog}: {self.proc.errorString() if self.proc else ''}"
                )
            )

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._read_stdout()
        self._read_stderr()
        if self._buf.strip():
            self._line(self._buf.decode("utf-8", "replace"))
            self._buf = b""
        if self._err_buf.strip():
            self._stderr.append(self._err_buf.decode("utf-8", "replace"))
            self._err_buf = b""
        self._kill_timer.stop()
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        self._end(self.result(exit_code, crashed))

    def result(self, exit_code: int | None, crashed: bool) -> ChildResult:
        """Classify the child's end from its last terminal event, its exit code and whether it was cancelled."""
        tail = "\n".join(self._stderr)
        final: Mapping[str, Any] = self._final or {}
        summary: Mapping[str, Any] = self._summary or {}
        kind = self._end_kind
        if kind == "failed":
            return ChildResult(
                "failed", str(final.get("message") or "training failed"), exit_code, final, summary, tail
            )
        if kind == "cancelled":
            return ChildResult(
                "cancelled", str(final.get("message") or "cancelled"), exit_code, final, summary, tail
            )
        if self._cancel_requested:
            return ChildResult(
                "cancelled", "cancelled (the process was stopped)", exit_code, final, summary, tail
            )
        if kind == "finished" and exit_code == 0 and not crashed:
            return ChildResult("finished", "", exit_code, final, summary, tail)
        if kind is None and summary and exit_code == 0 and not crashed:
            return ChildResult("finished", "", exit_code, summary, summary, tail)
        how = "crashed" if crashed else f"exited with code {exit_code}"
        last = _last_error(self._stderr)
        msg = f"The process {how} before finishing." + (f"\n\n{last}" if last else "")
        return ChildResult("crashed" if crashed else "failed", msg, exit_code, final, summary, tail)

    def _end(self, res: ChildResult) -> None:
        if self._ended_once:
            return
        self._ended_once = True
        self.ended.emit(res)


def _last_error(lines: deque[str] | list[str]) -> str:
    """The most telling stderr lines: from the last traceback's final line, else the last few lines."""
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        return ""
    for ln in reversed(lines):
        s = ln.strip()
        if s.startswith(("imgreg: error:", "Error", "RuntimeError", "ValueError")) or (
            ":" in s and s.split(":", 1)[0].endswith(("Error", "Exception"))
        ):
            return s
    return "\n".join(lines[-3:])
