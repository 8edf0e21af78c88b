"""Similarity commands: ``imgreg embed``, ``similar`` and ``duplicates`` (torch only when embeddings are missing)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from engine.cli.common import CliError, need_folders, num, open_with_store, parse_size, write_csv
from engine.cli.reporter import Reporter, stdin_control
from engine.core import Cancelled, CancelToken
from engine.runs.duplicates import DEFAULT_THRESHOLD, find_duplicates


def _add_common(s: argparse.ArgumentParser) -> None:
    """Options shared by the three commands."""
    s.add_argument("dataset")
    s.add_argument("--run", help="run id of DATASET or any run folder (default: the ImageNet backbone)")
    s.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda:N or mps")
    s.add_argument("--bs", type=int, default=32)
    s.add_argument(
        "--size",
        type=parse_size,
        help="HxW input of the ImageNet backbone (default: the images' shape, long side 160); the size of a "
        "training cache reads images from it",
    )
    s.add_argument("--json", action="store_true", help="JSON events on stdout and a summary line")


def register(subparsers: Any) -> None:
    """Add ``embed``, ``similar`` and ``duplicates`` to the main CLI's subparsers."""
    s = subparsers.add_parser("embed", help="compute item embeddings (only new or changed images)")
    _add_common(s)
    s.add_argument("--control-stdin", action="store_true", help="read 'cancel' lines on stdin")
    s.set_defaults(func=cmd_embed)

    s = subparsers.add_parser("similar", help="the k items most similar to ITEM")
    _add_common(s)
    s.add_argument("item", help="item name (path relative to the dataset root)")
    s.add_argument("-k", type=int, default=10, help="number of neighbours (default 10)")
    s.set_defaults(func=cmd_similar)

    s = subparsers.add_parser("duplicates", help="near-duplicate image pairs, closest first")
    _add_common(s)
    s.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"distance cut (default {DEFAULT_THRESHOLD})",
    )
    s.add_argument(
        "--valid-groups", help="also list the pairs that leak across this validation split, e.g. 07,08"
    )
    s.set_defaults(func=cmd_duplicates)


def ensure_embeddings(args: argparse.Namespace, ds: Any, store: Any, rep: Reporter, token: Any = None) -> Any:
    """The dataset's embeddings for ``--run`` (or the ImageNet backbone), computing the missing ones."""
    from engine.cli.model import engine_errors
    from engine.learn.embed import embed
    from engine.runs.embeddings import EmbeddingError
    from engine.runs.files import resolve_run

    need_folders(store.dir, "embeddings", "cache")
    with engine_errors(rep):
        if args.run and args.size:
            raise CliError("--size is for the ImageNet backbone; a run embeds at its own input size")
        run_dir = resolve_run(args.run, store.dir) if args.run else None
        try:
            emb, _ = embed(
                ds,
                store.dir,
                run_dir,
                on_event=rep,
                cancel=token,
                device=args.device,
                bs=args.bs,
                size=args.size,
            )
        except EmbeddingError as e:
            raise CliError(str(e)) from None
    return emb


def embed_or_cancel(args: argparse.Namespace, rep: Reporter, fn: Callable[[CancelToken], Any]) -> Any:
    """``fn(token)``'s embeddings, or None once a ``cancel`` line (``--control-stdin``) stopped it (summary said)."""
    with stdin_control(args.control_stdin) as token:
        try:
            return fn(token)
        except Cancelled:
            rep.summary({"cancelled": True}, "cancelled: the embeddings computed so far are kept")
            return None


def cmd_embed(args: argparse.Namespace) -> int:
    """``imgreg embed DATASET``: embed new or changed items and store them."""
    from engine.runs.embeddings import embeddings_path

    rep = Reporter(args.json)
    ds, store = open_with_store(args.dataset)
    try:
        emb = embed_or_cancel(args, rep, lambda token: ensure_embeddings(args, ds, store, rep, token))
        if emb is None:
            return 1
        path = embeddings_path(store.dir, emb.meta["source"])
        data = {"source": emb.meta["source"], "what": emb.meta["what"], "n": len(emb), "dim": int(emb.vecs.shape[1]),
                "path": str(path)}  # fmt: skip
        rep.summary(data, f"{len(emb)} embeddings ({data['dim']} values each) from {data['what']} in {path}")
        return 0
    finally:
        store.close()


def _labels(ds: Any, store: Any) -> dict[str, tuple[float, ...]]:
    """Effective labels of every item (the store's, else the dataset's)."""
    eff = store.effective_labels()
    return {it.name: eff.get(it.name, it.label) for it in ds.items if eff.get(it.name, it.label) is not None}


def _label(v: Any) -> list[float] | None:
    return list(v) if v is not None else None


def cmd_similar(args: argparse.Namespace) -> int:
    """``imgreg similar DATASET ITEM``: nearest items first, with distance and label."""
    from engine.runs.embeddings import ExactIndex

    rep = Reporter(False)  # progress as text on stderr: stdout holds one JSON object
    ds, store = open_with_store(args.dataset)
    try:
        try:
            ds.item(args.item)
        except KeyError:
            raise CliError(f"no item {args.item!r} in {args.dataset}") from None
        if args.k < 1:
            raise CliError("-k must be at least 1")
        emb = ensure_embeddings(args, ds, store, rep)
        if args.item not in emb:
            raise CliError(f"item {args.item!r} could not be embedded (unreadable image?)")
        labels = _labels(ds, store)
        found = ExactIndex(emb).neighbours(args.item, args.k)
        nbrs = [{"item": n, "distance": d, "label": _label(labels.get(n))} for n, d in found]
        if args.json:
            print(json.dumps({"item": args.item, "neighbours": nbrs}), flush=True)
        else:
            write_csv(None, ["rank", "item", "distance", "label"],
                      [[i + 1, n, num(d), " ".join(num(v) for v in _label(labels.get(n)) or [])]
                       for i, (n, d) in enumerate(found)])  # fmt: skip
        return 0
    finally:
        store.close()


def cmd_duplicates(args: argparse.Namespace) -> int:
    """``imgreg duplicates DATASET``: near-duplicate pairs, flagged across groups and when labels disagree."""
    from engine.runs.duplicates import split_leaks

    rep = Reporter(False)  # progress as text on stderr: stdout holds one JSON object
    ds, store = open_with_store(args.dataset)
    try:
        if not args.threshold > 0:
            raise CliError("--threshold must be positive")
        emb = ensure_embeddings(args, ds, store, rep)
        groups = {it.name: it.group for it in ds.items}
        pairs = find_duplicates(emb, groups, _labels(ds, store), args.threshold)
        out: dict[str, Any] = {"threshold": args.threshold, "source": emb.meta.get("source"),
                               "pairs": [p.as_dict() for p in pairs]}  # fmt: skip
        if args.valid_groups:
            vg = [g for g in args.valid_groups.split(",") if g]
            out["leaks"] = [p.as_dict() for p in split_leaks(pairs, vg)]
        if args.json:
            print(json.dumps(out), flush=True)
        else:
            rows = [[p.a, p.b, num(p.distance), p.groups[0], p.groups[1],
                     "cross-group" if p.cross_group else "", "labels-disagree" if p.label_disagree else ""]
                    for p in pairs]  # fmt: skip
            write_csv(None, ["a", "b", "distance", "group_a", "group_b", "leak", "labels"], rows)
        return 0
    finally:
        store.close()
