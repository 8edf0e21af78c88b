"""``imgreg cache``: build a dataset's decoded-image cache ahead of training (no torch), or list or clear caches."""

from __future__ import annotations

import argparse
import time
from typing import Any

from engine import events
from engine.cli.common import CliError, open_with_store, parse_sizes
from engine.cli.reporter import Reporter, stdin_control
from engine.core import Cancelled
from engine.data.cache import CacheSpaceError, cache_dir, ensure_cache, list_caches, remove_cache


def register(subparsers: Any) -> None:
    """Add ``cache`` to the ``imgreg`` parser."""
    s = subparsers.add_parser(
        "cache", help="decode a dataset's images once into the training cache for an input size"
    )
    s.add_argument("dataset")
    s.add_argument(
        "--size",
        type=parse_sizes,
        default=[(240, 320)],
        help="input size HxW, or several comma-separated (default 240x320)",
    )
    s.add_argument("--clear", action="store_true", help="delete the caches of these sizes instead")
    s.add_argument("--list", action="store_true", help="only list the dataset's caches")
    s.add_argument("--json", action="store_true", help="one JSON object per event, then a summary line")
    s.add_argument("--control-stdin", action="store_true", help="read a 'cancel' line on stdin")
    s.set_defaults(func=cmd_cache)


def _fmt(c: dict[str, Any]) -> str:
    """One cache as a line for people."""
    return f"{c['size']:<10}{c['items']:>7} items {c['bytes'] / 2**20:>9.1f} MiB  {c['state']}  {c['dir']}"


def cmd_cache(args: argparse.Namespace) -> int:
    """``imgreg cache``: build (or list, or clear) the decoded-image caches of a dataset."""
    rep = Reporter(args.json)
    ds, store = open_with_store(args.dataset)
    with store:
        sdir = store.dir
    if args.list:
        caches = list_caches(sdir)
        rep.summary({"caches": caches}, "\n".join(_fmt(c) for c in caches) or "no caches")
        return 0
    if args.clear:
        for size in args.size:
            remove_cache(cache_dir(sdir, size))
        rep.summary({"caches": list_caches(sdir)}, "cleared")
        return 0
    items = [(it.name, it.path) for it in ds.items if not it.problem]
    t0 = time.perf_counter()
    built = []
    with stdin_control(args.control_stdin) as token:
        for size in args.size:
            try:
                c = ensure_cache(cache_dir(sdir, size), size, items, rep, token)
            except Cancelled:
                rep.summary({"cancelled": True, "caches": list_caches(sdir)}, "cancelled")
                return 1
            except (CacheSpaceError, OSError) as e:
                if args.json:
                    rep(events.failed(str(e)))
                raise CliError(str(e)) from None
            built.append({"size": f"{size[0]}x{size[1]}", "items": len(c.entries), "dir": str(c.dir)})
    data = {"caches": built, "n_items": len(items), "time_s": time.perf_counter() - t0}
    text = "\n".join(f"{b['size']}: {b['items']} images in {b['dir']}" for b in built)
    rep.summary(data, text)
    return 0
