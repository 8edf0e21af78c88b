"""Labelling new images fast: ``imgreg suggest`` (which unlabelled items to label next) and ``imgreg accept``
(take a run's confident proposals as labels)."""

from __future__ import annotations

import argparse
from typing import Any

from engine import events
from engine.cli.common import CliError, check_out, open_with_store, write_csv
from engine.cli.reporter import Reporter
from engine.core import CancelToken


def register(subparsers: Any) -> None:
    """Add ``suggest`` and ``accept`` to the main CLI's subparsers."""
    s = subparsers.add_parser("suggest", help="the N unlabelled items to label next, best first")
    s.add_argument("dataset")
    s.add_argument("--n", type=int, default=20, help="how many items (default 20)")
    s.add_argument(
        "--run",
        help="rank by this run's uncertainty (its stored predictions) times diversity (default: cold start)",
    )
    s.add_argument("--out", help="write the CSV rank,item,reason here (default: standard output)")
    s.add_argument(
        "--device", default="auto", help="for computing missing embeddings: auto, cpu, cuda:N or mps"
    )
    s.add_argument("--bs", type=int, default=32)
    s.add_argument("--json", action="store_true", help="JSON events on stdout and a summary line")
    s.add_argument("--control-stdin", action="store_true", help="read a 'cancel' line on stdin")
    s.set_defaults(func=cmd_suggest, size=None)

    s = subparsers.add_parser("accept", help="take a run's proposals within a calibrated bound as labels")
    s.add_argument("dataset")
    s.add_argument(
        "--run", required=True, help="run whose stored predictions (with --coverage intervals) to take"
    )
    s.add_argument("--max-radius", type=float, help="points: every point's interval radius at most PX")
    s.add_argument("--max-width", type=float, help="scalars: interval width hi - lo at most V")
    s.add_argument("--json", action="store_true", help="JSON events on stdout and a summary line")
    s.set_defaults(func=cmd_accept)


def run_id(spec: str, store: Any) -> str:
    """The prediction run id of ``--run``: a stored prediction run as named, else a run folder's name."""
    from engine.runs.files import RunError, resolve_run

    if spec in store.prediction_runs():
        return spec
    try:
        return resolve_run(spec, store.dir).name
    except RunError as e:
        raise CliError(str(e)) from None


def stored_embeddings(
    args: argparse.Namespace, ds: Any, store: Any, rep: Reporter, token: CancelToken | None = None
) -> Any:
    """The ImageNet embeddings of every item: the stored ones when current, else computed as ``imgreg embed`` does."""
    from engine.runs.embeddings import EmbeddingError, embeddings_path, load_embeddings, stale_items
    from engine.runs.neighbours import pick_source

    src = pick_source(store.dir)
    if src is not None:
        try:
            emb = load_embeddings(embeddings_path(store.dir, src))
        except EmbeddingError:
            emb = None
        if emb is not None and not stale_items(emb, [it for it in ds.items if not it.problem]):
            return emb
    from engine.cli.similar import ensure_embeddings

    return ensure_embeddings(argparse.Namespace(**{**vars(args), "run": None}), ds, store, rep, token)


def cmd_suggest(args: argparse.Namespace) -> int:
    """``imgreg suggest DATASET --n N [--run RUN]``: the CSV ``rank,item,reason`` (or ``--json`` items)."""
    from engine.audit.suggest import suggest
    from engine.cli.similar import embed_or_cancel

    if args.n < 1:
        raise CliError("--n must be at least 1")
    rep = Reporter(args.json)
    ds, store = open_with_store(args.dataset)
    try:
        check_out(ds, args.out)
        preds, rid = None, None
        if args.run:
            rid = run_id(args.run, store)
            preds = store.predictions(rid)
            if not preds:
                raise CliError(f"run {rid} has no stored predictions: run imgreg predict {args.run} first")
        emb = embed_or_cancel(args, rep, lambda token: stored_embeddings(args, ds, store, rep, token))
        if emb is None:
            return 1
        try:
            picks, notes = suggest(ds, store, emb, args.n, preds)
        except ValueError as e:
            raise CliError(str(e)) from None
        for msg in notes:
            rep(events.note(msg))
        if args.out or not args.json:
            write_csv(args.out, ["rank", "item", "reason"], [[p.rank, p.item, p.reason] for p in picks])
        data = {"n": len(picks), "run_id": rid, "out": args.out, "items": [p.as_dict() for p in picks]}
        if args.json or args.out:
            rep.summary(data, f"{len(picks)} items to label next" + (f" in {args.out}" if args.out else ""))
        return 0
    finally:
        store.close()


def cmd_accept(args: argparse.Namespace) -> int:
    """``imgreg accept DATASET --run RUN --max-radius PX | --max-width V``: confident proposals become labels."""
    from engine.audit.accept import AcceptError, accept, split_proposals

    rep = Reporter(args.json)
    ds, store = open_with_store(args.dataset)
    try:
        rid = run_id(args.run, store)
        try:
            safe, unsure = split_proposals(ds, store, rid, args.max_radius, args.max_width)
        except AcceptError as e:
            raise CliError(str(e)) from None
        n = accept(store, safe)
        bound = f"radius <= {args.max_radius:g} px" if ds.kind == "point" else f"width <= {args.max_width:g}"
        data = {"run_id": rid, "accepted": n, "too_uncertain": len(unsure), "bound": bound}
        rep.summary(
            data,
            f"accepted {n} proposals of {rid} as labels ({bound}); {len(unsure)} too uncertain, left unlabelled",
        )
        return 0
    finally:
        store.close()
