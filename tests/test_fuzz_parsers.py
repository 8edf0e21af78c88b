"""Fuzzing the label and header parsers: they return a value or raise their own error, never anything else."""

from __future__ import annotations

import io
import math
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data.biwi import DEFAULT_CAL, Calibration, label_of, parse_cal, parse_pose
from engine.data.common import ParseError, natural_key
from engine.data.csvs import parse_csv, parse_header, parse_row
from engine.data.folder import parse_utk_name
from engine.data.images import ImageError, check_bytes, image_size, load_image

FUZZ = settings(
    max_examples=int(os.environ.get("IMGREG_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(lambda v: repr(float(v))),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["nan", "-inf", "1e999", "0", "-0", "1_0", "0x10", "", "abc", "1,5", "\u0663"]),
)
separators = st.sampled_from([" ", "  ", "\t", " \n", "\n", "\r\n", "\n\n", ",", ""])


@st.composite
def numeric_text(draw: st.DrawFn, max_tokens: int = 20) -> bytes:
    """Whitespace-separated number-like tokens, sometimes with junk bytes."""
    toks = draw(st.lists(numbers, max_size=max_tokens))
    seps = draw(st.lists(separators, min_size=len(toks), max_size=len(toks)))
    text = "".join(t + s for t, s in zip(toks, seps, strict=True)).encode()
    if draw(st.booleans()):
        junk = draw(st.binary(max_size=8))
        at = draw(st.integers(0, len(text)))
        text = text[:at] + junk + text[at:]
    return text


@FUZZ
@given(st.one_of(numeric_text(), st.binary(max_size=200)))
def test_parse_pose_never_crashes(data: bytes) -> None:
    try:
        x, y, z = parse_pose(data)
    except ParseError:
        return
    assert all(math.isfinite(v) for v in (x, y, z))


@FUZZ
@given(st.one_of(numeric_text(), st.binary(max_size=200)))
def test_label_of_never_crashes(data: bytes) -> None:
    try:
        u, v = label_of(data, DEFAULT_CAL)
    except ParseError:
        return
    assert math.isfinite(u) and math.isfinite(v)
    assert -160 <= u <= 800 and -120 <= v <= 600


@FUZZ
@given(st.lists(st.floats(-1e4, 1e4), min_size=9, max_size=9), st.floats(-1e4, 1e4), st.floats(-1e4, 1e4))
def test_pose_matches_genfromtxt(rot: list[float], x: float, y: float) -> None:
    z = 1000.0
    text = "".join(f"{a!r} {b!r} {c!r} \n" for a, b, c in zip(rot[0::3], rot[1::3], rot[2::3], strict=True))
    text += f"\n{x!r} {y!r} {z!r} \n"
    ctr = np.genfromtxt(io.StringIO(text), skip_header=3)
    assert parse_pose(text.encode()) == tuple(ctr.tolist())


@FUZZ
@given(st.one_of(numeric_text(40), st.binary(max_size=300)))
def test_parse_cal_never_crashes(data: bytes) -> None:
    try:
        cal = parse_cal(data)
    except ParseError:
        return
    assert isinstance(cal, Calibration) and cal.fx > 0 and cal.fy > 0 and cal.w > 0 and cal.h > 0


@FUZZ
@given(
    st.floats(1, 5000), st.floats(1, 5000), st.floats(-1e4, 1e4), st.floats(-1e4, 1e4), st.integers(1, 9999)
)
def test_parse_cal_round_trip(fx: float, fy: float, cx: float, cy: float, w: int) -> None:
    text = f"{fx!r} 0 {cx!r} \n0 {fy!r} {cy!r} \n0 0 1 \n\n0 0 0 0 \n\n1 0 0 \n0 1 0 \n0 0 1 \n\n0 0 0 \n\n{w} 480"
    assert parse_cal(text.encode()) == Calibration(fx, fy, cx, cy, w, 480)


cell = st.one_of(
    numbers, st.text(max_size=12), st.sampled_from(["image", "x", "y", "x1", "y1", "value", '"'])
)


@FUZZ
@given(st.lists(cell, max_size=8))
def test_parse_header_never_crashes(cells: list[str]) -> None:
    try:
        kind, n = parse_header(cells)
    except ParseError:
        return
    assert kind in ("points", "scalar") and n >= 1


@FUZZ
@given(st.lists(cell, max_size=8), st.integers(1, 6))
def test_parse_row_never_crashes(cells: list[str], n_values: int) -> None:
    try:
        image, label = parse_row(cells, n_values)
    except ParseError:
        return
    assert image and (label is None or (len(label) == n_values and all(math.isfinite(v) for v in label)))


@FUZZ
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.lists(cell, max_size=6), max_size=8).map(
            lambda rows: "\n".join(",".join(r) for r in rows)
        ),
        st.lists(st.lists(cell, max_size=4), max_size=8).map(
            lambda rows: "image,x,y\n" + "\n".join(",".join(r) for r in rows)
        ),
    )
)
def test_parse_csv_never_crashes(text: str) -> None:
    try:
        kind, n, rows = parse_csv(text)
    except ParseError:
        return
    for _line, image, label, problem in rows:
        assert (label is None) or (problem is None and image)


@FUZZ
@given(st.text(max_size=40))
def test_parse_utk_name_never_crashes(name: str) -> None:
    try:
        age = parse_utk_name(name)
    except ParseError:
        return
    assert 0 <= age <= 150


@FUZZ
@given(st.text(max_size=30), st.text(max_size=30))
def test_natural_key_is_a_total_order(a: str, b: str) -> None:
    ka, kb = natural_key(a), natural_key(b)
    assert (ka < kb) + (ka == kb) + (ka > kb) == 1


magic = st.sampled_from(
    [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP"]
)


@FUZZ
@given(magic, st.binary(max_size=400), st.sampled_from([b"", b"IEND\xaeB`\x82", b"\xff\xd9"]))
def test_image_readers_raise_only_image_error(head: bytes, body: bytes, tail: bytes) -> None:
    data = head + body + tail
    check_bytes(data[:16], data[-64:], len(data))
    fd, path = tempfile.mkstemp(suffix=".img")
    try:
        os.write(fd, data)
        os.close(fd)
        for fn in (image_size, load_image):
            try:
                out = fn(path)
            except ImageError as e:
                assert e.reason
                continue
            if fn is image_size:
                assert len(out) == 2
            else:
                assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
    finally:
        os.unlink(path)


def test_fuzz_module_covers_parse_error_type() -> None:
    with pytest.raises(ParseError):
        parse_pose(b"1 2 3")
