"""Folders of images: UTKFace names (``age_gender_race_datetime.jpg``) or plain, unlabelled images.

UTKFace names: the age is the first ``_`` field. A name whose first field is not a whole number, or that has
fewer than four fields (like the release's ``61_1_20170109142408075.jpg.chip.jpg``, which lacks one field),
is a problem: the item is listed without a label and the reason names the age it seems to carry, so a user
can confirm it with one correction instead of training on a guess.
"""

from __future__ import annotations

import re
from itertools import islice
from pathlib import Path

from engine.core import Item
from engine.data.common import CHUNK, Builder, ParseError, group_of, pmap, walk_images
from engine.data.images import check_file

MAX_AGE = 150
_UTK_LIKE = re.compile(r"^\d+_\d+_\d+", re.ASCII)


def utk_stem(filename: str) -> str:
    """The name without its image suffixes (``.jpg``, ``.jpg.chip.jpg``)."""
    return filename.split(".", 1)[0]


def parse_utk_name(filename: str) -> float:
    """The age from a UTKFace file name; ParseError for malformed names."""
    fields = utk_stem(filename).split("_")
    first = fields[0]
    if not (first.isascii() and first.isdigit()):
        raise ParseError("malformed UTKFace name: the first field (age) is not a whole number")
    age = int(first)
    if len(fields) < 4:
        raise ParseError(
            f"malformed UTKFace name: {len(fields)} fields instead of 4 (age_gender_race_datetime); age {age}?"
        )
    if age > MAX_AGE:
        raise ParseError(f"implausible age {age} in UTKFace name")
    return float(age)


def looks_utk(names: list[str]) -> bool:
    """Whether most of these image file names follow the UTKFace pattern."""
    hits = sum(1 for n in names if _UTK_LIKE.match(n.rsplit("/", 1)[-1]))
    return bool(names) and hits * 2 >= len(names)


def index_images(root: Path, b: Builder, utk: bool) -> None:
    """Index all images under ``root``: UTKFace ages when ``utk``, else unlabelled items."""
    found = walk_images(root, b.problem)
    while chunk := list(islice(found, CHUNK)):
        checks = pmap(check_file, [p for _, p in chunk])
        for (name, path), problem in zip(chunk, checks, strict=True):
            label = None
            if utk and not problem:
                try:
                    label = (parse_utk_name(path.name),)
                except ParseError as e:
                    problem = str(e)
            b.add(Item(name, group_of(name), path, label, problem))
        b.flush()
