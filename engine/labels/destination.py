"""Where an export may write, and how a folder export replaces an older one without touching other files.

Rules: an export never overwrites a file inside the dataset folder (the label file, images, pose files: every
source file), never puts a new ``.csv``/``.json`` in the dataset's top folder (it would be read as the label
file next time) and never puts a folder export inside the dataset (its image links would be indexed). A folder
export writes into a hidden sibling ``.<name>.partial-*`` and swaps it in; it replaces only an empty folder or
an earlier imgreg export whose manifest (``.imgreg-export.json``) lists every entry in it (readers' label
caches ``labels/*.cache`` are carried over), and it deletes only the files that manifest lists, plus the hidden
build folders of an earlier export to the same name whose process has died. Anything else in the way (a user's
file, a folder link) is a refusal, not a loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path

from engine.atomic import atomic_write_text
from engine.core import Dataset
from engine.data.common import natural_key
from engine.inputs import load_json, read_regular

MANIFEST = ".imgreg-export.json"
READER_FILES = re.compile(r"^labels/[^/]+\.cache$")
"""Files readers add to an export (Ultralytics' label caches): carried into the new export, never deleted."""


class ExportError(ValueError):
    """The dataset cannot be written there or in this format (a one-line reason)."""


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (both absolute, links resolved)."""
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _hidden_below(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in a hidden folder of ``root`` (such as ``.imgreg``), which indexing skips."""
    rel = path.resolve().relative_to(root.resolve())
    return any(p.startswith(".") for p in rel.parts[:-1])


def _parent_ok(out: Path) -> None:
    """ExportError when a part of ``out``'s parent path is a file (nothing can be made below it)."""
    for p in [out.parent, *out.parent.parents]:
        if p.exists():
            if not p.is_dir():
                raise ExportError(f"cannot write {out}: {p} is a file, not a folder")
            return


def _takes_over(ds: Dataset, out: Path) -> bool:
    """Whether a new label file ``out`` in the dataset's top folder would be detected as its source next time
    (a label CSV comes first in detection; a COCO JSON only before other JSONs and image folders)."""
    src = ds.label_file
    first = src is not None and natural_key(out.name) < natural_key(src.name)
    if out.suffix.lower() == ".csv":
        return src is None or src.suffix.lower() != ".csv" or first
    if out.suffix.lower() == ".json":
        return ds.format in ("folder", "utkface") or (ds.format == "coco" and first)
    return False


def check_file_out(ds: Dataset, out: Path | str) -> Path:
    """``out`` as an absolute path when a file export may be written there; ExportError otherwise."""
    out = Path(os.path.abspath(out))
    if out.is_dir():
        raise ExportError(f"{out} is a folder: give a file name")
    if out.exists() and not out.is_file():
        raise ExportError(f"{out} is not a regular file")
    _parent_ok(out)
    root = Path(ds.root)
    if _inside(out, root) and not _hidden_below(out, root):
        if out.exists() or out.is_symlink():
            raise ExportError(f"{out} is one of the dataset's own files: source files are never overwritten")
        if out.resolve().parent == root.resolve() and _takes_over(ds, out):
            raise ExportError(
                f"{out.name} in the dataset's folder would be read as its label file next time: "
                "write it elsewhere (or under .imgreg/)"
            )
    return out


def _listed(folder: Path) -> tuple[set[str], set[str]] | None:
    """(files, folders) an earlier export's manifest lists, relative POSIX; None when there is no manifest."""
    try:
        m = load_json(read_regular(folder / MANIFEST, 1 << 26))
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or not isinstance(m.get("files"), list) or not isinstance(m.get("dirs"), list):
        return None
    return {str(f) for f in m["files"]}, {str(d) for d in m["dirs"]}


def _foreign(folder: Path, files: set[str], dirs: set[str]) -> str | None:
    """The first entry under ``folder`` that is not in the lists (a folder link counts), or None."""
    for top, subdirs, names in os.walk(folder, followlinks=False):
        rel = Path(top).relative_to(folder).as_posix()
        rel = "" if rel == "." else rel + "/"
        for d in subdirs:
            if os.path.islink(os.path.join(top, d)) or rel + d not in dirs:
                return rel + d
        for n in names:
            if rel + n not in files and rel + n != MANIFEST and not READER_FILES.match(rel + n):
                return rel + n
    return None


def check_folder_out(ds: Dataset, out: Path | str) -> Path:
    """``out`` as an absolute path when a folder export may replace it; ExportError naming what is in the way."""
    out = Path(os.path.abspath(out))
    if out.is_symlink():
        raise ExportError(f"{out} is a link: give a real folder (or a new name)")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; this export needs a folder")
    _parent_ok(out)
    root = Path(ds.root)
    if _inside(out, root) and (out.resolve() == root.resolve() or not _hidden_below(out / "x", root)):
        raise ExportError(f"{out} is inside the dataset folder: write the export elsewhere")
    if _inside(root, out):
        raise ExportError(f"{out} holds the dataset: write the export elsewhere")
    if out.is_dir():
        listed = _listed(out) or (set(), set())
        bad = _foreign(out, *listed)
        if bad is not None:
            raise ExportError(
                f"{out} holds {bad}, which imgreg did not write: choose an empty or new folder "
                "(an export only replaces an earlier export)"
            )
    return out


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_leftovers(out: Path) -> list[Path]:
    """Delete the hidden build and aside folders of earlier exports to ``out`` whose process is gone (killed with
    SIGKILL, or the machine lost power): only ``.<name>.partial-PID-*`` / ``.<name>.old-PID-*`` real folders."""
    pat = re.compile(rf"^\.{re.escape(out.name)}\.(?:partial|old)-(\d+)-[0-9a-f]{{8}}$")
    gone = []
    with contextlib.suppress(OSError):
        for p in out.parent.iterdir():
            m = pat.match(p.name)
            if m and not p.is_symlink() and p.is_dir() and not _alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p)
    return gone


def partial_dir(out: Path) -> Path:
    """A new hidden folder beside ``out`` to build the export in (an earlier killed export's leftovers go)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def write_manifest(tmp: Path) -> None:
    """List every file and folder written under ``tmp`` in its manifest (what a later export may delete)."""
    files, dirs = [], []
    for top, subdirs, names in os.walk(tmp, followlinks=False):
        rel = Path(top).relative_to(tmp).as_posix()
        rel = "" if rel == "." else rel + "/"
        dirs += [rel + d for d in subdirs]
        files += [rel + n for n in names]
    atomic_write_text(
        tmp / MANIFEST, json.dumps({"writer": "imgreg", "files": files, "dirs": dirs}, indent=0)
    )


def _remove_listed(folder: Path) -> None:
    """Delete an earlier export: the files and folders its manifest lists (links, never what they point to)."""
    files, dirs = _listed(folder) or (set(), set())
    for f in sorted(files):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (folder / f).unlink()
    with contextlib.suppress(FileNotFoundError):
        (folder / MANIFEST).unlink()
    for d in sorted(dirs, key=lambda s: -s.count("/")):
        with contextlib.suppress(OSError):
            (folder / d).rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def swap_in(tmp: Path, out: Path) -> None:
    """Put the finished export ``tmp`` at ``out``: the old folder (checked by ``check_folder_out``) goes."""
    if not out.exists():
        os.rename(tmp, out)
        return
    aside = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.rename(out, aside)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(aside, out)
        raise
    for f in (aside / "labels").glob("*.cache"):
        if READER_FILES.match(f"labels/{f.name}") and not (out / "labels" / f.name).exists():
            with contextlib.suppress(OSError):
                os.rename(f, out / "labels" / f.name)
    _remove_listed(aside)


def discard(tmp: Path) -> None:
    """Remove an unfinished export folder this process created (it holds only what it wrote)."""
    shutil.rmtree(tmp, ignore_errors=True)
