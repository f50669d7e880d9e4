"""sRGB <-> CIE Lab (D65) in torch, the colour space of the papers' colorization experiments.

pix2pix (BW -> color) and DRPAN (§4, "Bw to color") predict the chrominance ab of a photo from its lightness
L, as Zhang et al. 2016 do. The conversion lives here once, as plain tensor arithmetic, so the same code
prepares training data, turns a generator's ab back into a photo, and runs inside exported ONNX graphs.
It is our own code rather than kornia's (not installed): the formulas are a dozen lines, and owning them
keeps the package free of a dependency used for two functions and lets the gamut handling below preserve L.

Formulas: IEC 61966-2-1 sRGB transfer curve and primaries (the RGB -> XYZ matrix of scikit-image), the CIE
1976 L*a*b* definition with the D65 2° white point (0.95047, 1, 1.08883) and its linear segment below
(6/29)^3. Tensors are (..., 3, H, W): RGB in [0, 1], Lab with L in [0, 100] and a, b roughly in [-110, 110].

Network scaling (the reference implementation's colorization dataset): L / 50 - 1 and ab / 110, both in
[-1, 1]; :data:`AB_SCALE` is the 110.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: linear sRGB -> XYZ (D65), rows X, Y, Z
RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
#: XYZ -> linear sRGB, the inverse of :data:`RGB_TO_XYZ`
XYZ_TO_RGB = tuple(tuple(float(v) for v in row) for row in np.linalg.inv(np.array(RGB_TO_XYZ)))
#: the D65 reference white (2° observer), XYZ with Y = 1
D65 = (0.95047, 1.0, 1.08883)
#: the Lab function's break point (6/29)^3 and the slope of its linear segment 1 / (3 (6/29)^2)
EPSILON = (6 / 29) ** 3
KAPPA = 1 / (3 * (6 / 29) ** 2)
#: ab / AB_SCALE lies in [-1, 1] for every sRGB colour (a in [-86.2, 98.2], b in [-107.9, 94.5])
AB_SCALE = 110.0
#: bisection steps of :func:`fit_chroma`: the chroma scale is found to within 2^-16
CHROMA_STEPS = 16


def _matrix(rows: tuple[tuple[float, ...], ...], like: Tensor) -> Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _apply(m: Tensor, t: Tensor) -> Tensor:
    """The 3x3 matrix ``m`` applied to the channel dimension of (..., 3, H, W)."""
    return torch.einsum("ij,...jhw->...ihw", m, t)


def _white(like: Tensor) -> Tensor:
    return torch.tensor(D65, dtype=like.dtype, device=like.device).view(3, 1, 1)


def srgb_to_linear(c: Tensor) -> Tensor:
    """The sRGB decoding curve (IEC 61966-2-1)."""
    return torch.where(c > 0.04045, ((c.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)


def linear_to_srgb(c: Tensor) -> Tensor:
    """The sRGB encoding curve (IEC 61966-2-1)."""
    return torch.where(c > 0.0031308, 1.055 * c.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, c * 12.92)


def _f(t: Tensor) -> Tensor:
    """The CIE Lab function: cube root above (6/29)^3, linear below."""
    return torch.where(t > EPSILON, t.clamp(min=EPSILON) ** (1 / 3), KAPPA * t + 4 / 29)


def _f_inv(f: Tensor) -> Tensor:
    return torch.where(f > 6 / 29, f**3, (f - 4 / 29) / KAPPA)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] (..., 3, H, W) to CIE Lab (D65)."""
    xyz = _apply(_matrix(RGB_TO_XYZ, rgb), srgb_to_linear(rgb)) / _white(rgb)
    fx, fy, fz = _f(xyz).unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIE Lab (D65) (..., 3, H, W) to sRGB, clipped to [0, 1] as scikit-image's ``lab2rgb``."""
    return linear_to_srgb(lab_to_linear(lab)).clamp(0, 1)


def lab_to_linear(lab: Tensor) -> Tensor:
    """CIE Lab to linear sRGB, not clipped (out-of-gamut colours have components outside [0, 1]).

    As scikit-image's ``lab2xyz``, a negative Z function value (no physical colour) is set to 0.
    """
    light, a, b = lab.unbind(-3)
    fy = (light + 16) / 116
    f = torch.stack([fy + a / 500, fy, (fy - b / 200).clamp(min=0)], dim=-3)
    xyz = _f_inv(f) * _white(lab)
    return _apply(_matrix(XYZ_TO_RGB, lab), xyz)


def fit_chroma(light: Tensor, ab: Tensor) -> Tensor:
    """ab scaled towards grey, per pixel, just enough that (L, ab) is an sRGB colour: L is kept exactly.

    Clipping an out-of-gamut Lab colour channel-wise (as ``lab2rgb`` does) changes its lightness, so a
    colourised photo would no longer have the input's L. Every L in [0, 100] with a = b = 0 is in gamut, so
    the largest in-gamut scale s in [0, 1] of (a, b) exists; it is found by a fixed number of bisection steps
    (:data:`CHROMA_STEPS`, no data-dependent loop, so it exports to ONNX). ``light`` is (..., 1, H, W).
    """
    low = torch.zeros_like(light)
    high = torch.ones_like(light)
    inside = _in_gamut(light, ab)
    for _ in range(CHROMA_STEPS):
        mid = (low + high) / 2
        ok = _in_gamut(light, ab * mid)
        low = torch.where(ok, mid, low)
        high = torch.where(ok, high, mid)
    return ab * torch.where(inside, torch.ones_like(low), low)


def _in_gamut(light: Tensor, ab: Tensor) -> Tensor:
    rgb = lab_to_linear(torch.cat([light, ab], dim=-3))
    return ((rgb >= 0) & (rgb <= 1)).all(dim=-3, keepdim=True)


def photo_to_l_ab(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """A photo in [-1, 1] (..., 3, H, W) as the network's (L / 50 - 1, ab / 110), both in [-1, 1]."""
    lab = rgb_to_lab((rgb + 1) / 2)
    return lab[..., :1, :, :] / 50 - 1, lab[..., 1:, :, :] / AB_SCALE


def l_ab_to_photo(light: Tensor, ab: Tensor) -> Tensor:
    """The network's scaled L (..., 1, H, W) and ab (..., 2, H, W) as a photo in [-1, 1].

    ab is brought into the sRGB gamut by :func:`fit_chroma`, so the photo's lightness is ``light``.
    """
    lab_l = (light + 1) * 50
    ab = fit_chroma(lab_l, ab.clamp(-1, 1) * AB_SCALE)
    return lab_to_rgb(torch.cat([lab_l, ab], dim=-3)) * 2 - 1


def lightness(rgb: Tensor) -> Tensor:
    """The network's scaled L (..., 1, H, W) of a photo in [-1, 1] (grey photos: their grey level's L)."""
    return photo_to_l_ab(rgb)[0]
