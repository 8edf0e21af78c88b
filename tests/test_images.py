"""Image loading to 8-bit RGB, header-only sizes, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.data.images import ImageError, check_file, image_size, load_image


def write(path: Path, img: np.ndarray, ext: str | None = None) -> Path:
    """Encode ``img`` (cv2 channel order) to ``path`` with cv2."""
    ext = ext or path.suffix
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []  # 101 = lossless
    ok, buf = cv2.imencode(ext, img, params)
    assert ok
    buf.tofile(str(path))
    return path


def rgb(h: int = 24, w: int = 32) -> np.ndarray:
    """A small RGB test pattern with distinct channels."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 200
    img[..., 1] = np.arange(w, dtype=np.uint8)[None, :] * 4
    img[..., 2] = 30
    return img


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_round_trip_is_rgb(tmp_path: Path, ext: str) -> None:
    img = rgb()
    p = write(tmp_path / f"a{ext}", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    assert np.array_equal(out, img)
    assert image_size(p) == (32, 24)


def test_jpeg_and_sizes(tmp_path: Path) -> None:
    p = write(tmp_path / "a.jpg", cv2.cvtColor(rgb(48, 64), cv2.COLOR_RGB2BGR))
    out = load_image(p)
    assert out.shape == (48, 64, 3) and abs(int(out[..., 0].mean()) - 200) < 4
    assert image_size(p) == (64, 48)
    assert load_image(p, max_side=16).shape == (12, 16, 3)
    assert load_image(p, max_side=1000).shape == (48, 64, 3)


def test_progressive_jpeg_size(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", rgb(30, 50), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    buf.tofile(str(tmp_path / "p.jpg"))
    assert image_size(tmp_path / "p.jpg") == (50, 30)


def test_gray(tmp_path: Path) -> None:
    g = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    out = load_image(write(tmp_path / "g.png", g))
    assert out.shape == (24, 32, 3) and np.array_equal(out[..., 1], g) and np.array_equal(out[..., 0], g)


def test_16_bit_full_range_is_shifted(tmp_path: Path) -> None:
    g = np.linspace(0, 65535, 24 * 32).astype(np.uint16).reshape(24, 32)
    out = load_image(write(tmp_path / "g16.png", g))
    assert out.dtype == np.uint8 and np.array_equal(out[..., 0], (g >> 8).astype(np.uint8))
    c = np.stack([g, g // 2, g // 4], -1)
    out = load_image(write(tmp_path / "c16.png", c))
    assert out.shape == (24, 32, 3) and out[..., 2].max() == 255 and out[..., 0].max() == 63


def test_16_bit_low_range_is_stretched(tmp_path: Path) -> None:
    g = np.full((8, 8), 1000, np.uint16)
    g[0, 0] = 2000
    out = load_image(write(tmp_path / "d16.png", g))
    assert out[0, 0, 0] == 255 and out[1, 1, 0] == 128


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    bgra = np.zeros((8, 8, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 250, 0
    out = load_image(write(tmp_path / "a.png", bgra))
    assert out.shape == (8, 8, 3) and tuple(out[0, 0]) == (250, 0, 10)


def test_non_ascii_path(tmp_path: Path) -> None:
    folder = tmp_path / "Jürgen 日本"
    folder.mkdir()
    p = write(folder / "ça.png", cv2.cvtColor(rgb(), cv2.COLOR_RGB2BGR))
    assert load_image(p).shape == (24, 32, 3) and image_size(p) == (32, 24)


def test_bad_files_raise_image_error_with_reason(tmp_path: Path) -> None:
    good_png = cv2.imencode(".png", rgb())[1].tobytes()
    good_jpg = cv2.imencode(".jpg", rgb())[1].tobytes()
    cases = {
        "zero.png": (b"", "zero-byte"),
        "text.png": (b"just some text, not pixels" * 4, "not an image"),
        "cut.png": (good_png[: len(good_png) // 2], "truncated PNG"),
        "cut.jpg": (good_jpg[: len(good_jpg) // 2], "truncated JPEG"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert reason in check_file(tmp_path / name)
        for fn in (load_image, image_size):
            with pytest.raises(ImageError, match=reason) as e:
                fn(tmp_path / name)
            assert e.value.reason
    with pytest.raises(ImageError, match="missing"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path / "dir.png")


def test_corrupt_body_with_valid_ends(tmp_path: Path) -> None:
    data = bytearray(cv2.imencode(".png", rgb())[1].tobytes())
    data[40:-20] = bytes(len(data) - 60)  # header and IEND intact, pixel data wiped
    (tmp_path / "x.png").write_bytes(bytes(data))
    assert check_file(tmp_path / "x.png") is None
    with pytest.raises(ImageError, match="decode"):
        load_image(tmp_path / "x.png")


def test_trailing_padding_after_jpeg_end_is_fine(tmp_path: Path) -> None:
    data = cv2.imencode(".jpg", rgb())[1].tobytes() + b"\x00" * 10
    (tmp_path / "pad.jpg").write_bytes(data)
    assert check_file(tmp_path / "pad.jpg") is None
    assert load_image(tmp_path / "pad.jpg").shape == (24, 32, 3)
