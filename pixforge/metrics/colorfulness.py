"""Colourfulness of an image (Hasler and Süsstrunk, "Measuring colourfulness in natural images", 2003).

The papers' named failure of colorization is "grayscale or desaturated results" (pix2pix, papers/001_*, "Limitations"); this
metric makes it a number. On the opponent components rg = R - G and yb = (R + G) / 2 - B of the 8-bit sRGB
values as stored, M = sigma_rgyb + 0.3 * mu_rgyb with sigma_rgyb = sqrt(sigma_rg^2 + sigma_yb^2) and
mu_rgyb = sqrt(mu_rg^2 + mu_yb^2) (the paper's eq. 3 metric, standard deviations over the pixels, population
form). 0 is a grey image; the paper's scale calls about 33 "moderately", 59 "quite", 82 "highly" and 109
"extremely colourful".
"""

from __future__ import annotations

import numpy as np

DESCRIPTION = (
    "Hasler & Suesstrunk 2003: M = sigma_rgyb + 0.3 mu_rgyb on rg = R - G, yb = (R + G)/2 - B of 8-bit "
    "sRGB as stored (population std over the pixels); mean over the images, for the generated "
    "(colorfulness_fake) and the real (colorfulness_real) images side by side"
)


def colorfulness(image: np.ndarray) -> float:
    """M of an (H, W, 3) RGB image with values 0..255 (any dtype)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"colorfulness needs an RGB image (H, W, 3), got shape {image.shape}")
    r, g, b = (image[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, (r + g) / 2 - b
    sigma = np.hypot(rg.std(), yb.std())
    mu = np.hypot(rg.mean(), yb.mean())
    return float(sigma + 0.3 * mu)
