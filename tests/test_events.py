"""The event schema of engine/events.py: constructors, checks, parsing, the app's router, and its one use."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest

from engine import events
from engine.events import EventError, check_event, parse_event

ROOT = Path(__file__).resolve().parents[1]


def one_of_each() -> list[events.Event]:
    """An event of every type, built by the constructors."""
    return [
        events.prepared(
            device="cpu", on_cpu=True, arch="tiny", head="pooled", kind="point", n_train=8, n_valid=2,
            size=[32, 32], bs=4, epochs=2, n_batches=2, world_size=1,
        ),
        events.batch(epoch=1, batch=2, n_batches=2, loss=0.5, size="32x32"),
        events.epoch(epoch=1, epochs=2, train_loss=0.5, valid_loss=float("nan"), metrics={"mean_px": 3.0}),
        events.lr_find(1e-3, [1e-4, 1e-3], [1.0, 0.5]),
        *(events.progress(k, 1, 2) for k in events.PROGRESS_TYPES),  # type: ignore[arg-type]
        events.fold(1, 5),
        events.note("hello"),
        events.finished("r1", "/runs/r1", {"mean_px": 1.0}, 2),
        events.cancelled("stopped"),
        events.cancelled("stopped", "r1", "/runs/r1", {}, None),
        events.failed("boom"),
        events.summary({"run_id": "r1", "metrics": {}, "n": 3}),
        events.tagged(events.note("from a fold"), 2, 5),
    ]  # fmt: skip


def test_every_type_has_a_constructor_and_round_trips_as_a_json_line() -> None:
    made = one_of_each()
    assert {e["type"] for e in made} == set(events.EVENT_TYPES)
    for e in made:
        back = parse_event(events.to_json(e))
        assert back is not None and back["type"] == e["type"]
        assert json.dumps(back, sort_keys=True) == json.dumps(json.loads(events.to_json(e)), sort_keys=True)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"type": "batch", "epoch": 1, "batch": 1, "n_batches": 2, "los": 0.5}', "batch event without loss"),
        ('{"type": "note", "message": "m", "extra": 1}', "unknown field(s) extra"),
        ('{"type": "batch", "epoch": 1, "batch": 1, "n_batches": 2, "loss": "x"}', "loss is 'x', not float"),
        ('{"type": "epoch", "epoch": 1, "epochs": 1, "train_loss": 1, "valid_loss": 1, "metrics": {"a": null}}',
         "metrics"),
        ('{"type": "batch", "epoch": true, "batch": 1, "n_batches": 2, "loss": 0.5}', "epoch is True, not int"),
        ('{"type": "size_changed", "size": 3}', "unknown event type 'size_changed'"),
        ('{"type": "summary", "run_id": 3}', "run_id is 3"),
        ("[1, 2]", "JSON object"),
    ],
)  # fmt: skip
def test_a_line_off_the_schema_is_logged_and_skipped(line: str, why: str, caplog) -> None:
    with pytest.raises(EventError, match=why.replace("(", r"\(").replace(")", r"\)")):
        check_event(json.loads(line))
    with caplog.at_level(logging.WARNING, logger="engine.events"):
        assert parse_event(line) is None
    assert why.split(" is ")[0] in caplog.text


def test_a_renamed_field_fails_where_it_is_built_and_where_it_is_read(monkeypatch) -> None:
    """A field renamed on one side only: the emitter's check fails in the tests, and the app skips the line."""
    good = events.batch(epoch=1, batch=1, n_batches=2, loss=0.5)
    renamed = {("n_batch" if k == "n_batches" else k): v for k, v in good.items()}
    fields = {k: v for k, v in renamed.items() if k != "type"}
    with pytest.raises(EventError, match="without n_batches"):
        events.batch(**fields)  # type: ignore[arg-type]  (tests build events under IMGREG_CHECK_EVENTS=1)
    assert parse_event(json.dumps(renamed)) is None


def test_plain_output_is_no_event() -> None:
    assert parse_event("epoch 1/2 train 0.5") is None
    assert parse_event("") is None


def test_no_event_dict_literals_in_the_engine() -> None:
    """Events are built only by the constructors of engine/events.py: no ``{"type": ...}`` literal elsewhere."""
    found = []
    for path in sorted((ROOT / "engine").rglob("*.py")):
        if path.name == "events.py" and path.parent.name == "engine":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "type" for k in node.keys
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found


def _reads_type(node: ast.AST) -> bool:
    """``x["type"]`` or ``x.get("type")``."""
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "type"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "type"
    )


def test_the_app_dispatches_on_the_type_in_the_router_only() -> None:
    """The app compares or keeps an event's type only in imgreg_gui/jobs/router.py (naming a progress bar by its
    kind is no dispatch)."""
    found = []
    for path in sorted((ROOT / "imgreg_gui").rglob("*.py")):
        if path.name == "router.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            sides = [node.left, *node.comparators] if isinstance(node, ast.Compare) else []
            if isinstance(node, ast.Assign):
                sides = [node.value]
            if any(_reads_type(s) for s in sides):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found


def test_router_calls_the_handler_of_each_type() -> None:
    from imgreg_gui.jobs.router import Router

    seen: list[str] = []
    route = Router(
        batch=lambda e: seen.append(f"batch {e['loss']}"),
        progress=lambda e: seen.append(f"progress {e['type']}"),
        cache_progress=lambda e: seen.append("cache"),
    )
    for e in one_of_each():
        route(e)
    assert seen == ["batch 0.5", "progress predict_progress", "progress lr_find_progress",
                    "progress embed_progress", "cache"]  # fmt: skip
    with pytest.raises(TypeError, match="no event type sizes"):
        Router(sizes=print)  # type: ignore[call-arg]


def test_child_process_skips_an_invalid_event_line(qtbot, caplog) -> None:
    from imgreg_gui.jobs.process import ChildProcess

    child = ChildProcess()
    seen, out = [], []
    child.event.connect(seen.append)
    child.output.connect(out.append)
    with caplog.at_level(logging.WARNING, logger="engine.events"):
        child._line('{"type": "batch", "epoch": 1, "batch": 1, "n_batches": 2, "los": 0.5}')
        child._line('{"type": "finished", "run_id": "r", "run_dir": "", "metrics": {}, "best_epoch": 0}')
    assert [e["type"] for e in seen] == ["finished"]
    assert len(out) == 1 and "batch event without loss" in caplog.text
    assert child.result(0, False).status == "finished"


def test_the_panel_shows_the_stage_size_of_a_batch(qtbot) -> None:
    """``size`` on batch events (several progressive-resizing stages) is what the status line shows."""
    from imgreg_gui.training.panel import TrainPanel

    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.on_event(events.batch(epoch=1, batch=1, n_batches=4, loss=0.5, size="96x128"))
    assert "Epoch 1/" in panel.status.text() and " at 96x128, batch 1/4" in panel.status.text()
