"""The ``imgreg`` command line: one parser, label commands and model commands, one-line errors (exit code 2)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence

from engine.cli import audit, cache, interop, labels, model, similar, store, suggest
from engine.cli.common import CliError, Parser
from engine.inputs import screen
from engine.labels.store import StoreError


def build_parser() -> argparse.ArgumentParser:
    """The ``imgreg`` argument parser with every subcommand."""
    p = Parser(prog="imgreg", description="Image regression datasets, labels and models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    labels.register(sub)
    model.register(sub)
    interop.register(sub)
    store.register(sub)
    similar.register(sub)
    cache.register(sub)
    audit.register(sub)
    suggest.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``imgreg``: run a subcommand; one-line errors and exit code 2 when the job cannot run."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --nproc` hands it to torchrun
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"imgreg: error: {screen(e)}", file=sys.stderr)
        return 2
    except (StoreError, sqlite3.Error) as e:  # the label store failed mid-command: still one line
        print(f"imgreg: error: label store: {screen(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imgreg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
