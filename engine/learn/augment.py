"""fastai's ``aug_transforms`` (flip, rotation, zoom, perspective warp, brightness, contrast) for a whole batch in
plain tensor operations: the same draws and formulas as fastai 2.8, one ``grid_sample`` per batch, points moved
with the image, no per-item Python and no host synchronisation (fastai's version spends most of a small batch in
its tensor-subclass dispatch). Images are float (bs, 3, h, w) in [0, 1], points (bs, n, 2) in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Aug:
    """The parameters of fastai's ``aug_transforms`` (its defaults)."""

    flip: bool = True
    max_rotate: float = 10.0
    min_zoom: float = 1.0
    max_zoom: float = 1.1
    max_warp: float = 0.2
    max_lighting: float = 0.2
    p_affine: float = 0.75
    p_lighting: float = 0.75


def _uniform(bs: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
    """``bs`` uniform draws in [lo, hi) on ``like``'s device."""
    return like.new_empty(bs).uniform_(lo, hi)


def _masked(v: torch.Tensor, p: float, neutral: float) -> torch.Tensor:
    """``v`` with probability ``p`` per item, else ``neutral`` (fastai's ``mask_tensor``)."""
    if p >= 1:
        return v
    keep = v.new_empty(v.shape).bernoulli_(p).bool()
    return torch.where(keep, v, torch.full_like(v, neutral))


def _mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
    """A batch of 3x3 matrices (bs, 3, 3) from rows of (bs,) tensors."""
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def affine_mats(x: torch.Tensor, a: Aug) -> torch.Tensor:
    """(bs, 2, 3) output-to-input affine maps: flip @ rotate @ zoom, corrected for the aspect ratio (fastai's)."""
    bs, (h, w) = x.shape[0], x.shape[-2:]
    one, zero = x.new_ones(bs), x.new_zeros(bs)
    m = one - 2 * _masked(one, 0.5, 0.0) if a.flip else one
    mat = _mat([[m, zero, zero], [zero, one, zero], [zero, zero, one]])
    if a.max_rotate:
        th = _masked(_uniform(bs, -a.max_rotate, a.max_rotate, x), a.p_affine, 0.0) * math.pi / 180
        mat = mat @ _mat([[th.cos(), th.sin(), zero], [-th.sin(), th.cos(), zero], [zero, zero, one]])
    if a.min_zoom < 1 or a.max_zoom > 1:
        s = 1 / _masked(_uniform(bs, a.min_zoom, a.max_zoom, x), a.p_affine, 1.0)
        col, row = _uniform(bs, 0, 1, x), _uniform(bs, 0, 1, x)
        mat = mat @ _mat(
            [[s, zero, (1 - s) * (2 * col - 1)], [zero, s, (1 - s) * (2 * row - 1)], [zero, zero, one]]
        )
    mat = mat.clone()
    mat[:, 0, 1] *= h / w
    mat[:, 1, 0] *= w / h
    return mat[:, :2]


def find_coeffs(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Perspective coefficients (bs, 8, 1) taking ``p1`` to ``p2`` (bs, 4, 2): fastai's system, solved in one call."""
    x1, y1, x2, y2 = p1[..., 0], p1[..., 1], p2[..., 0], p2[..., 1]
    one, zero = torch.ones_like(x2), torch.zeros_like(x2)
    r1 = torch.stack([x2, y2, one, zero, zero, zero, -x1 * x2, -x1 * y2], -1)
    r2 = torch.stack([zero, zero, zero, x2, y2, one, -y1 * x2, -y1 * y2], -1)
    A = torch.stack([r1, r2], 2).reshape(p1.shape[0], 8, 8)
    return torch.linalg.solve_ex(A, p1.reshape(p1.shape[0], 8, 1))[0]


def apply_perspective(coords: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Coordinates (bs, ..., 2) through perspective ``coeffs`` (bs, 8, 1)."""
    sz = coords.shape
    c = coords.reshape(sz[0], -1, 2)
    m = torch.cat([coeffs, coeffs.new_ones(sz[0], 1, 1)], 1).view(sz[0], 3, 3)
    c1 = c @ m[..., :2].transpose(1, 2) + m[..., 2].unsqueeze(1)
    z = c1[..., 2:]
    z = torch.where(z.abs() < 1e-12, torch.ones_like(z), z)
    return (c1[..., :2] / z).reshape(sz)


_CORNERS: dict[tuple, torch.Tensor] = {}


def _corners(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The image corners in [-1, 1], made once per device (a host-to-GPU copy each batch would wait for the GPU)."""
    key = (dtype, str(device))
    if key not in _CORNERS:
        _CORNERS[key] = torch.tensor([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=dtype, device=device)
    return _CORNERS[key]


def warp_points(x: torch.Tensor, a: Aug) -> tuple[torch.Tensor, torch.Tensor]:
    """(original corners, warped corners) (bs, 4, 2) of fastai's random perspective warp."""
    bs = x.shape[0]
    xt = _masked(_uniform(bs, -a.max_warp, a.max_warp, x), a.p_affine, 0.0)
    yt = _masked(_uniform(bs, -a.max_warp, a.max_warp, x), a.p_affine, 0.0)
    orig = _corners(x.dtype, x.device)
    targ = torch.stack(
        [
            torch.stack([-1 - yt, -1 - xt]),
            torch.stack([-1 + yt, 1 + xt]),
            torch.stack([1 + yt, -1 + xt]),
            torch.stack([1 - yt, 1 - xt]),
        ]
    ).permute(2, 0, 1)
    return orig.unsqueeze(0).expand(bs, 4, 2), targ


def logit(x: torch.Tensor) -> torch.Tensor:
    """fastai's clamped logit."""
    x = x.clamp(1e-7, 1 - 1e-7)
    return -(1 / x - 1).log()


def lighting(x: torch.Tensor, a: Aug) -> torch.Tensor:
    """Random brightness then contrast in logit space (fastai's ``Brightness`` and ``Contrast``)."""
    bs, ml = x.shape[0], a.max_lighting
    b = _masked(_uniform(bs, 0.5 * (1 - ml), 0.5 * (1 + ml), x), a.p_lighting, 0.5)
    c = _masked(torch.exp(_uniform(bs, math.log(1 - ml), -math.log(1 - ml), x)), a.p_lighting, 1.0)
    return torch.sigmoid((logit(x) + logit(b)[:, None, None, None]) * c[:, None, None, None])


def augment(
    x: torch.Tensor, pts: torch.Tensor | None, a: Aug = Aug()
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A randomly augmented batch: images resampled once through affine and warp, points moved the inverse way."""
    mat = affine_mats(x, a)
    coords = F.affine_grid(mat, list(x.shape), align_corners=True)
    orig = targ = None
    if a.max_warp:
        orig, targ = warp_points(x, a)
        coords = apply_perspective(coords, find_coeffs(orig, targ))
    x = F.grid_sample(x, coords, mode="bilinear", padding_mode="reflection", align_corners=True)
    if pts is not None:
        if orig is not None and targ is not None:
            pts = apply_perspective(pts, find_coeffs(targ, orig))
        pts = (pts - mat[:, :, 2].unsqueeze(1)) @ torch.linalg.inv_ex(mat[:, :, :2].transpose(1, 2))[0]
    if a.max_lighting:
        x = lighting(x, a)
    return x, pts
