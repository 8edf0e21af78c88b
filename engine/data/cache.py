"""The decoded-image cache: every item decoded once and squish-resized to a stage size, stored as uint8 in a
memory-mapped file under the store's folder, keyed by each file's path, size and modification time.

Layout of ``<store>/cache/<h>x<w>/``: ``images-<token>.u8`` (``n_slots`` images of ``h*w*3`` bytes, row after row),
``manifest.json`` (written atomically, after the images it names were flushed) and ``lock`` (held by a builder).
Readers never take the lock: a manifest only names slots that were complete when it was written, and builders only
append slots past the manifest's ``n_slots`` (a changed file gets a new slot), so a reader sees the old manifest or
the new one and both are whole. A missing, unreadable or too-short cache reads as absent and is rebuilt.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from engine import events
from engine.atomic import atomic_write_text
from engine.core import Cancelled, CancelToken, OnEvent, no_event
from engine.data.images import ImageError, file_stamp, load_image
from engine.data.squish import squish

VERSION = 1
MANIFEST = "manifest.json"
SPARE_BYTES = 512 * 2**20
"""Disk space left free after a build; less than this falls back to decoding on the fly."""
CHECKPOINT_S = 2.0
"""A build writes its manifest this often, so a cancelled or killed build keeps what it finished."""


class CacheSpaceError(Exception):
    """Too little disk space for the cache."""


Key = tuple[str, int, int]


def file_key(path: str | os.PathLike) -> Key | None:
    """(path, size, mtime_ns) of a file: a cached image is used only while its file still has this key."""
    stamp = file_stamp(path)
    return None if stamp is None else (os.fspath(path), *stamp)


def cache_root(store_dir: str | os.PathLike) -> Path:
    """The folder that holds a dataset's caches (one per size): ``<store>/cache``."""
    return Path(store_dir) / "cache"


def cache_dir(store_dir: str | os.PathLike, size: tuple[int, int]) -> Path:
    """The folder of one cache: ``<store>/cache/<h>x<w>``."""
    return cache_root(store_dir) / f"{int(size[0])}x{int(size[1])}"


@dataclass
class ImageCache:
    """A read-only view of a built cache: ``array`` (n_slots, h, w, 3) uint8 and item name -> entry."""

    dir: Path
    size: tuple[int, int]
    array: np.ndarray
    entries: dict[str, list]
    """name -> [path, file size, mtime_ns, slot, w, h]."""

    def slot(self, name: str, key: Key | None) -> int:
        """The slot of ``name`` when its file still has ``key``, else -1."""
        e = self.entries.get(name)
        if e is None or key is None or (e[0], e[1], e[2]) != key:
            return -1
        return int(e[3])

    def orig_size(self, name: str) -> tuple[int, int]:
        """The (w, h) of the original image of a cached item."""
        e = self.entries[name]
        return int(e[4]), int(e[5])

    def get(self, name: str, path: str | os.PathLike) -> np.ndarray | None:
        """The cached (h, w, 3) image of ``name`` when its file is unchanged, else None."""
        k = self.slot(name, file_key(path))
        return None if k < 0 else np.asarray(self.array[k])

    @property
    def nbytes(self) -> int:
        """Bytes of image data the manifest names."""
        return int(self.array.nbytes)


def _read_manifest(d: Path) -> dict[str, Any] | None:
    """The manifest of a cache folder, or None when missing or damaged."""
    try:
        m = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(m, dict)
        and m.get("version") == VERSION
        and isinstance(m.get("items"), dict)
        and isinstance(m.get("n_slots"), int)
        and isinstance(m.get("data"), str)
        and "/" not in m["data"]
        and isinstance(m.get("size"), list)
    )
    return m if ok else None


def open_cache(d: str | os.PathLike, size: tuple[int, int] | None = None) -> ImageCache | None:
    """The cache in folder ``d`` (of ``size`` when given), or None when absent, damaged or truncated."""
    d = Path(d)
    m = _read_manifest(d)
    if m is None:
        return None
    h, w = (int(v) for v in m["size"])
    if size is not None and (h, w) != tuple(int(v) for v in size):
        return None
    n = m["n_slots"]
    path = d / m["data"]
    try:
        if path.stat().st_size < n * h * w * 3:
            return None
        arr = (
            np.memmap(path, dtype=np.uint8, mode="r", shape=(n, h, w, 3))
            if n
            else np.zeros((0, h, w, 3), np.uint8)
        )
    except (OSError, ValueError):
        return None
    if any(not (isinstance(e, list) and len(e) == 6 and 0 <= e[3] < n) for e in m["items"].values()):
        return None
    return ImageCache(d, (h, w), arr, m["items"])


def free_bytes(d: Path) -> int:
    """Free bytes on the disk of ``d`` (a function so tests can pretend the disk is full)."""
    return shutil.disk_usage(d).free


def _decode(path: str, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]] | None:
    """One image decoded and squished, with its original (w, h); None when it cannot be decoded."""
    try:
        img = load_image(path)
        return squish(img, size), (img.shape[1], img.shape[0])
    except ImageError:
        return None
    except Exception:  # a decoder or resize failure on odd input: the item is left out, never a crash
        return None


def _missing(cache: ImageCache | None, items: list[tuple[str, Key | None]]) -> list[tuple[str, Key]]:
    """Items whose file exists but whose image is not cached under its current key."""
    return [(n, k) for n, k in items if k is not None and (cache is None or cache.slot(n, k) < 0)]


def ensure_cache(
    d: str | os.PathLike,
    size: tuple[int, int],
    items: Iterable[tuple[str, str | os.PathLike]],
    on_event: OnEvent = no_event,
    cancel: CancelToken | None = None,
    workers: int | None = None,
) -> ImageCache:
    """The cache of ``items`` (name, path) at ``size`` in folder ``d``, decoding only new or changed files.

    Sends ``cache_progress`` {done, total} while decoding. Raises ``Cancelled`` (finished images are kept),
    ``CacheSpaceError`` when the disk is too full, ``OSError`` when the folder cannot be written. Items that
    cannot be decoded are left out (``ImageCache.slot`` gives -1 for them).
    """
    d = Path(d)
    size = (int(size[0]), int(size[1]))
    keyed = [(n, file_key(p)) for n, p in items]
    cache = open_cache(d, size)
    if not _missing(cache, keyed):
        return cache if cache is not None else _empty(d, size)
    d.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(d / "lock"))
    waited = False
    while True:
        try:
            lock.acquire(timeout=0.5)
            break
        except Timeout:
            if not waited:
                on_event(events.note("waiting for another process building the image cache"))
                waited = True
            if cancel is not None and cancel.now:
                raise Cancelled("stopped while waiting for the image cache") from None
    try:
        return _build(d, size, keyed, on_event, cancel, workers)
    finally:
        lock.release()


def _empty(d: Path, size: tuple[int, int]) -> ImageCache:
    """A cache with nothing in it (no file needed)."""
    return ImageCache(d, size, np.zeros((0, *size, 3), np.uint8), {})


def _build(
    d: Path,
    size: tuple[int, int],
    keyed: list[tuple[str, Key | None]],
    on_event: OnEvent,
    cancel: CancelToken | None,
    workers: int | None,
) -> ImageCache:
    """Decode the missing items into new slots (the caller holds the lock)."""
    h, w = size
    per = h * w * 3
    m = _read_manifest(d)
    cache = open_cache(d, size)
    if m is None or cache is None:
        # absent or damaged: start a fresh data file (the old ones are removed below)
        m = {"version": VERSION, "size": [h, w], "data": f"images-{secrets.token_hex(6)}.u8", "n_slots": 0}
        m["items"] = {}
        cache = None
    todo = _missing(cache, keyed)
    entries = dict(m["items"])
    live = len({e[3] for e in entries.values()})
    if m["n_slots"] - live > max(live, 64):
        # mostly stale slots (changed files): rewrite the live ones into a fresh file
        m, entries = _compact(d, size, m, entries)
    for f in d.glob("images-*.u8"):
        if f.name != m["data"]:
            try:
                f.unlink()
            except OSError:
                pass  # another process may still map it (Windows); a later build removes it
    base = m["n_slots"]
    need = len(todo) * per
    path = d / m["data"]
    have = path.stat().st_size if path.exists() else 0
    if need and free_bytes(d) - max(0, (base * per + need) - have) < SPARE_BYTES:
        raise CacheSpaceError(
            f"too little disk space for the image cache ({need / 2**30:.1f} GiB needed in {d})"
        )
    with open(path, "ab" if path.exists() else "wb") as fh:
        fh.truncate(base * per + need)
    total = len(todo)
    on_event(events.progress("cache_progress", 0, total))
    if not total:
        return open_cache(d, size) or _empty(d, size)
    arr = np.memmap(path, dtype=np.uint8, mode="r+", shape=(base + total, h, w, 3))
    n_ok, last, done = 0, time.monotonic(), 0

    def checkpoint() -> None:
        arr.flush()
        m2 = {**m, "n_slots": base + n_ok, "items": entries}
        atomic_write_text(d / MANIFEST, json.dumps(m2))

    nw = workers or max(1, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=nw) as pool:
            chunk = max(16, nw * 4)
            for i in range(0, total, chunk):
                part = todo[i : i + chunk]
                decoded = pool.map(_decode, [k[0] for _, k in part], [size] * len(part))
                for (name, key), res in zip(part, decoded, strict=True):
                    if res is not None:
                        # slots are filled in order, so ``base + n_ok`` is always the first free one
                        arr[base + n_ok] = res[0]
                        entries[name] = [key[0], key[1], key[2], base + n_ok, res[1][0], res[1][1]]
                        n_ok += 1
                done += len(part)
                on_event(events.progress("cache_progress", done, total))
                if cancel is not None and cancel.now:
                    raise Cancelled("stopped while building the image cache")
                if time.monotonic() - last > CHECKPOINT_S:
                    checkpoint()
                    last = time.monotonic()
    finally:
        checkpoint()
    return open_cache(d, size) or _empty(d, size)


def _compact(d: Path, size: tuple[int, int], m: dict, entries: dict) -> tuple[dict, dict]:
    """Copy the live slots into a fresh data file and write its manifest."""
    h, w = size
    old = open_cache(d, size)
    if old is None:
        raise OSError(f"the image cache in {d} went away while it was compacted")
    names = list(entries)
    data = f"images-{secrets.token_hex(6)}.u8"
    arr = np.memmap(d / data, dtype=np.uint8, mode="w+", shape=(max(1, len(names)), h, w, 3))
    new = {}
    for k, n in enumerate(names):
        e = entries[n]
        arr[k] = old.array[e[3]]
        new[n] = [*e[:3], k, e[4], e[5]]
    arr.flush()
    del arr
    with open(d / data, "ab") as f:
        f.truncate(len(names) * h * w * 3)
    m = {**m, "data": data, "n_slots": len(names), "items": new}
    atomic_write_text(d / MANIFEST, json.dumps(m))
    return m, new


def list_caches(store_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The caches under a store: size, items, bytes on disk, folder (for ``imgreg info``)."""
    out: list[dict[str, Any]] = []
    root = cache_root(store_dir)
    if not root.is_dir():
        return out
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        c = open_cache(d)
        disk = sum(f.stat().st_size for f in d.glob("images-*.u8"))
        if c is None:
            out.append(
                {"size": d.name, "items": 0, "bytes": disk, "dir": str(d), "state": "absent or damaged"}
            )
        else:
            out.append({"size": d.name, "items": len(c.entries), "bytes": disk, "dir": str(d), "state": "ok"})
    return out


def remove_cache(d: str | os.PathLike) -> None:
    """Delete one cache folder (what ``imgreg cache --clear`` does)."""
    shutil.rmtree(d, ignore_errors=True)
