"""Image files: cheap validity checks (magic bytes, tail), header-only sizes, and loading to 8-bit RGB."""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np

from engine.inputs import NOT_REGULAR, open_regular

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
"""File suffixes (lower case) treated as images when scanning folders."""

_TAIL = 64


class ImageError(Exception):
    """An image file cannot be used; ``reason`` says why in words a user understands."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_image_name(name: str) -> bool:
    """Whether a file name has an image suffix."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def sniff(head: bytes) -> str | None:
    """The image format of a file from its first bytes (``png``, ``jpeg``, ...), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def check_bytes(head: bytes, tail: bytes, size: int) -> str | None:
    """The problem with a file given its first and last bytes and its size, or None when it looks whole."""
    if size == 0:
        return "zero-byte file"
    fmt = sniff(head)
    if fmt is None:
        return "not an image (unknown file signature)"
    # A decoder that reached the end marker wrote these bytes; anything after them is harmless padding.
    if fmt == "png" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk at the end)"
    if fmt == "jpeg" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker FFD9)"
    return None


def check_file(path: str | os.PathLike) -> str | None:
    """Cheap check of an image file (existence, size, magic bytes, PNG/JPEG tail): the problem, or None."""
    try:
        fd = open_regular(path)
        try:
            size = os.fstat(fd).st_size
            head = os.read(fd, 16)
            if size > _TAIL:
                os.lseek(fd, size - _TAIL, os.SEEK_SET)
                tail = os.read(fd, _TAIL)
            else:
                tail = head + os.read(fd, _TAIL)
        finally:
            os.close(fd)
    except IsADirectoryError:
        return "a folder named like an image"
    except FileNotFoundError:
        return "image file missing"
    except OSError as e:
        if e.strerror == NOT_REGULAR:
            return NOT_REGULAR
        return f"cannot read image file ({e.strerror or e})"
    return check_bytes(head, tail, size)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Scale any integer or float image to uint8."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        top = int(img.max()) if img.size else 0
        # Full-range 16-bit photos keep their brightness (>> 8); low-range data (12-bit depth, scientific
        # cameras) would be almost black that way, so it is stretched by its maximum instead.
        if top >= 4096:
            return (img >> 8).astype(np.uint8)
        return (img.astype(np.float32) * (255.0 / max(top, 1))).round().astype(np.uint8)
    f = img.astype(np.float32)
    f = np.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(f.min()) if f.size else 0.0, float(f.max()) if f.size else 0.0
    if img.dtype.kind == "f" and lo >= 0 and hi <= 1:
        return (f * 255).round().astype(np.uint8)
    if lo >= 0 and hi <= 255:
        return f.round().astype(np.uint8)
    return ((f - lo) * (255.0 / max(hi - lo, 1e-12))).round().astype(np.uint8)


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Convert a cv2-decoded array (gray, gray+alpha, BGR, BGRA; any depth) to (H, W, 3) uint8 RGB."""
    img = _to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    ch = img.shape[2]
    if ch == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if ch == 2:  # gray + alpha: alpha dropped, as PIL's convert("RGB") does (what fastai trains on)
        return cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if ch == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_BGR2RGB)


def load_image(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """Load an image as (H, W, 3) uint8 RGB (optionally shrunk so its longest side is ``max_side``)."""
    problem = check_file(path)
    if problem:
        raise ImageError(problem)
    try:
        buf = np.fromfile(os.fspath(path), dtype=np.uint8)
    except OSError as e:
        raise ImageError(f"cannot read image file ({e.strerror or e})") from e
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError("cannot decode image (corrupt or unsupported)")
    if img.ndim == 3 and img.shape[2] > 4:
        raise ImageError(f"unsupported image with {img.shape[2]} channels")
    img = to_rgb8(img)
    if max_side and max(img.shape[:2]) > max_side:
        h, w = img.shape[:2]
        s = max_side / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return img


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(f) -> tuple[int, int] | None:
    """Scan JPEG markers for a start-of-frame segment; (w, h) or None."""
    f.seek(2)
    while True:
        b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, *range(0xD0, 0xD9)):  # standalone markers carry no length
            continue
        seg = f.read(2)
        if len(seg) < 2:
            return None
        n = struct.unpack(">H", seg)[0]
        if marker in _SOF:
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return (w, h) if w and h else None
        if n < 2:
            return None
        f.seek(n - 2, os.SEEK_CUR)
        # The byte after a segment must be a marker prefix; otherwise the file is not what it claims.
        nxt = f.read(1)
        if nxt != b"\xff":
            return None
        f.seek(-1, os.SEEK_CUR)


def _header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(w, h) from the file header for PNG, JPEG, BMP and WebP (VP8X/VP8/VP8L); None when unknown."""
    with open(path, "rb") as f:
        head = f.read(32)
        fmt = sniff(head)
        if fmt == "png" and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            return (w, h) if w and h else None
        if fmt == "jpeg":
            return _jpeg_size(f)
        if fmt == "bmp" and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return (abs(w), abs(h)) if w and h else None
        if fmt == "webp" and len(head) >= 30:
            chunk = head[12:16]
            if chunk == b"VP8X":
                return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
            if chunk == b"VP8L":
                bits = int.from_bytes(head[21:25], "little")
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", head[26:30])
                return w & 0x3FFF, h & 0x3FFF
    return None


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(w, h) of an image from its header only (falls back to decoding); raises ImageError."""
    problem = check_file(path)
    if problem:
        raise ImageError(problem)
    try:
        size = _header_size(path)
    except (OSError, struct.error):
        size = None
    if size:
        return size
    h, w = load_image(path).shape[:2]
    return w, h


def file_stamp(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file: what changes when an image changes on disk (None when unreadable)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return int(st.st_size), int(st.st_mtime_ns)
