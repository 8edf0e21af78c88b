"""CSV label files: points (``image,x,y`` or ``image,x1,y1,x2,y2,...``) and scalars (``image,value``)."""

from __future__ import annotations

import csv
import io
import math
import os
import re
from pathlib import Path

from engine.core import Item, Label
from engine.data.common import CHUNK, Builder, ParseError, group_of, pmap
from engine.data.images import check_file

IMAGE_COLUMNS = ("image", "file", "filename", "path")
_X = re.compile(r"^x(\d*)$")
_Y = re.compile(r"^y(\d*)$")
MAX_HEADER_BYTES = 4096


def parse_header(cells: list[str]) -> tuple[str, int]:
    """``("points", n_points)`` or ``("scalar", 1)`` from a header row; ParseError when it is neither."""
    cols = [c.strip().lstrip("\ufeff").strip().lower() for c in cells]
    while cols and not cols[-1]:
        cols.pop()
    if len(cols) < 2 or cols[0] not in IMAGE_COLUMNS:
        raise ParseError("CSV header must start with 'image' followed by label columns")
    rest = cols[1:]
    if len(rest) == 1 and not _X.match(rest[0]) and not _Y.match(rest[0]):
        return "scalar", 1
    if len(rest) % 2 == 0:
        pairs = [(_X.match(rest[i]), _Y.match(rest[i + 1])) for i in range(0, len(rest), 2)]
        if all(mx and my and mx.group(1) == my.group(1) for mx, my in pairs):
            return "points", len(rest) // 2
    raise ParseError(f"CSV header not understood: {','.join(cols)} (expected image,x,y or image,value)")


def _number(s: str) -> float:
    """A finite float from a CSV cell; ParseError."""
    try:
        v = float(s)
    except ValueError:
        raise ParseError(f"not a number: {s[:40]!r}") from None
    if not math.isfinite(v):
        raise ParseError(f"not a finite number: {s[:40]!r}")
    return v


def parse_row(cells: list[str], n_values: int) -> tuple[str, Label | None]:
    """``(image path, label or None when unlabelled)`` from a data row with ``n_values`` numbers; ParseError."""
    cells = [c.strip() for c in cells]
    while len(cells) > 1 + n_values and not cells[-1]:
        cells.pop()
    if len(cells) != 1 + n_values:
        raise ParseError(f"expected {1 + n_values} columns, found {len(cells)}")
    image = cells[0].replace("\\", "/")
    if not image:
        raise ParseError("empty image path")
    if "\x00" in image:
        raise ParseError("image path contains a NUL character")
    vals = cells[1:]
    if all(not v for v in vals):
        return image, None
    if any(not v for v in vals):
        raise ParseError("some label values are empty")
    return image, tuple(_number(v) for v in vals)


def parse_csv(text: str) -> tuple[str, int, list[tuple[int, str | None, Label | None, str | None]]]:
    """``(kind, n_points, rows)``; each row is ``(line, image, label, problem)``. ParseError for a bad header."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ParseError("empty CSV") from None
    except csv.Error as e:
        raise ParseError(f"CSV header unreadable ({e})") from None
    kind, n = parse_header(header)
    n_values = 2 * n if kind == "points" else 1
    rows: list[tuple[int, str | None, Label | None, str | None]] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            rows.append((reader.line_num, None, None, f"unreadable CSV row ({e})"))
            continue
        if not any(c.strip() for c in cells):
            continue
        try:
            image, label = parse_row(cells, n_values)
        except ParseError as e:
            named = cells[0].strip().replace("\\", "/") if cells and cells[0].strip() else None
            rows.append((reader.line_num, named, None, f"CSV line {reader.line_num}: {e}"))
            continue
        rows.append((reader.line_num, image, label, None))
    return kind, n, rows


def csv_kind(path: Path) -> tuple[str, int] | None:
    """``(kind, n_points)`` when ``path`` is a label CSV (header only is read), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(MAX_HEADER_BYTES)
    except OSError:
        return None
    line = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    try:
        return parse_header(next(csv.reader([line.rstrip("\r")]), []))
    except ParseError:
        return None


def item_name(image: str, csv_dir_rel: str) -> str:
    """POSIX item name of a CSV image path, relative to the dataset root when possible."""
    if image.startswith("/") or re.match(r"^[A-Za-z]:/", image):
        return image
    joined = f"{csv_dir_rel}/{image}" if csv_dir_rel else image
    return os.path.normpath(joined).replace(os.sep, "/")


def index_csv(root: Path, csv_path: Path, b: Builder) -> None:
    """Index a label CSV: one item per distinct image, problems for bad rows and unusable images."""
    try:
        data = csv_path.read_bytes()
    except OSError as e:
        raise ParseError(f"cannot read {csv_path.name} ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", "replace")
        b.notes.append(f"{csv_path.name} is not UTF-8; read as Windows-1252")
    kind, n, rows = parse_csv(text)
    b.n_points = n
    b.notes.append(f"labels from {csv_path.name}")
    rel = os.path.relpath(csv_path.parent, root).replace(os.sep, "/")
    rel = "" if rel == "." else rel
    seen: dict[str, int] = {}
    todo: list[tuple[str, Path, Label | None, str | None]] = []
    for line, image, label, problem in rows:
        if image is None:
            b.problem(f"{csv_path.name}:{line}", problem or "bad row")
            continue
        name = item_name(image, rel)
        if name in seen:
            b.problem(f"{csv_path.name}:{line}", f"{name} listed again (first on line {seen[name]}); ignored")
            continue
        seen[name] = line
        path = Path(name) if name.startswith("/") else root / name
        todo.append((name, path, label, problem))
    for i in range(0, len(todo), CHUNK):
        chunk = todo[i : i + CHUNK]
        checks = pmap(check_file, [p for _, p, _, _ in chunk])
        for (name, path, label, problem), img_problem in zip(chunk, checks, strict=True):
            problem = problem or img_problem
            b.add(Item(name, group_of(name), path, None if problem else label, problem))
        b.flush()
