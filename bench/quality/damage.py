"""The damage real scans have, applied to a clean synthetic page: skew, blur, JPEG, noise, low contrast.

Each step is one function of an RGB image; `damage` picks a random mix per page (seeded). Skew turns
the page about its centre, so the truth's boxes move by a few pixels; the text and order do not.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


@dataclass(frozen=True)
class Damage:
    skew_deg: float = 0.0
    blur_radius: float = 0.0
    jpeg_quality: int | None = None
    noise_sigma: float = 0.0
    contrast: float = 1.0  # 1.0 keeps it; 0.5 halves the distance of ink from paper grey

    def describe(self) -> str:
        parts = []
        if self.skew_deg:
            parts.append(f"skew {self.skew_deg:+.1f}°")
        if self.blur_radius:
            parts.append(f"blur {self.blur_radius:.1f}")
        if self.jpeg_quality is not None:
            parts.append(f"jpeg q{self.jpeg_quality}")
        if self.noise_sigma:
            parts.append(f"noise {self.noise_sigma:.0f}")
        if self.contrast != 1.0:
            parts.append(f"contrast {self.contrast:.2f}")
        return ", ".join(parts) or "clean"


def random_damage(rng: random.Random) -> Damage:
    """A scan's worth of faults: always some skew, each other fault on about half the pages."""
    return Damage(
        skew_deg=rng.choice((-1, 1)) * rng.uniform(0.5, 3.0),
        blur_radius=rng.uniform(0.5, 1.2) if rng.random() < 0.5 else 0.0,
        jpeg_quality=rng.randint(25, 60) if rng.random() < 0.6 else None,
        noise_sigma=rng.uniform(6, 18) if rng.random() < 0.5 else 0.0,
        contrast=rng.uniform(0.35, 0.6) if rng.random() < 0.5 else 1.0,
    )


def apply(image: Image.Image, damage: Damage, seed: int = 0) -> Image.Image:
    out = image.convert("RGB")
    if damage.skew_deg:
        out = skew(out, damage.skew_deg)
    if damage.contrast != 1.0:
        out = low_contrast(out, damage.contrast)
    if damage.blur_radius:
        out = out.filter(ImageFilter.GaussianBlur(damage.blur_radius))
    if damage.noise_sigma:
        out = noise(out, damage.noise_sigma, seed)
    if damage.jpeg_quality is not None:
        out = jpeg(out, damage.jpeg_quality)
    return out


def skew(image: Image.Image, degrees: float) -> Image.Image:
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def low_contrast(image: Image.Image, factor: float) -> Image.Image:
    """Grey ink on grey paper, like a faded copy: contrast cut around a light paper tone."""
    faded = ImageEnhance.Contrast(image).enhance(factor)
    return ImageEnhance.Brightness(faded).enhance(0.95)


def noise(image: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    grain = np.random.default_rng(seed).normal(0.0, sigma, pixels.shape[:2])[..., None]
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
