"""What a browser is shown of a saved frame it cannot show as it is: a FITS frame's thumbnail and
full view, and any frame stretched. Each is a JPEG made on a thread, once, and cached under
``.thumbs`` beside the thumbnails (``gallery.cached``); the full-size ones are few in the cache.

A frame's pixels as the gallery reads them (``load_fits``, ``load_jpeg``) serve its measurement
too (wanda/storage/review.py): linear 16-bit data from a FITS file, 8-bit values from a JPEG. A
raw Bayer mosaic (``BAYERPAT``) is read as 2x2 superpixels, grey: half the size, no colour cast
from the unbalanced channels, and no checkerboard for the star finder.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wanda.astro.measure import exact_histogram, statistics
from wanda.astro.stretch import auto_stretch
from wanda.errors import ErrorCode, WandaError
from wanda.jpeg import JpegEncoder
from wanda.storage import gallery
from wanda.storage.fits import read_fits

log = logging.getLogger(__name__)
THUMB_QUALITY = 80
VIEW_QUALITY = 90
LUMA = (77, 150, 29)  # the weights of R, G and B in 1/256 (as the live analysis takes them)


@dataclass(frozen=True)
class FramePixels:
    luminance: np.ndarray  # 2-D, uint8 or uint16
    colour: np.ndarray | None  # (height, width, 3) of the same type, or None for a grey frame
    full_scale: int  # the largest value the data can hold
    scale: float  # pixels of the full frame per pixel here (2 for superpixels)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    red, green, blue = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((LUMA[0] * red + LUMA[1] * green + LUMA[2] * blue) >> 8).astype(rgb.dtype)


def load_fits(path: Path) -> FramePixels:
    """A FITS frame's pixels (WandaError NO_THUMBNAIL when it is not one WANDA reads)."""
    try:
        image = read_fits(path)
    except ValueError as exc:
        raise WandaError(ErrorCode.NO_THUMBNAIL, f"{path.name} is not a FITS image WANDA can read: {exc}") from None
    data = image.data
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3:
        colour = np.ascontiguousarray(np.moveaxis(data, 0, -1))
        return FramePixels(_luminance(colour), colour, image.full_scale, 1.0)
    if image.header.get("BAYERPAT") and min(data.shape) >= 2:
        return FramePixels(_bin(data, 2), None, image.full_scale, 2.0)
    return FramePixels(data, None, image.full_scale, 1.0)


def load_jpeg(path: Path, encoder: JpegEncoder, *, max_width: int | None = None) -> FramePixels:
    """A JPEG frame's pixels; decoded at 1/2, 1/4 or 1/8 of its size (cheap in libjpeg) when that is
    still ``max_width`` wide."""
    data = path.read_bytes()
    factor = 1
    if max_width is not None:
        width = gallery.jpeg_width(data)
        factor = max((f for f in (1, 2, 4, 8) if width // f >= max_width), default=1)
    try:
        rgb = encoder.decode(data, scale=(1, factor) if factor > 1 else None)
    except (OSError, ValueError) as exc:  # libjpeg's complaints
        raise WandaError(ErrorCode.NO_THUMBNAIL, f"{path.name} is not a readable JPEG") from exc
    red = rgb[..., 0]
    if np.array_equal(red, rgb[..., 1]) and np.array_equal(red, rgb[..., 2]):
        return FramePixels(np.ascontiguousarray(red), None, 255, float(factor))
    return FramePixels(_luminance(rgb), rgb, 255, float(factor))


def _bin(data: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each ``factor`` x ``factor`` block (of the first two axes), in the data's type."""
    if factor == 1:
        return data
    height, width = data.shape[0] // factor * factor, data.shape[1] // factor * factor
    blocks = data[:height, :width].reshape(height // factor, factor, width // factor, factor, *data.shape[2:])
    return (blocks.sum(axis=(1, 3), dtype=np.uint32) // (factor * factor)).astype(data.dtype)


def render(pixels: FramePixels, *, stretch: bool, min_width: int | None = None) -> np.ndarray:
    """8-bit RGB of the frame: auto-stretched (the shadows clipped below the sky, the sky lifted
    to a quarter of full scale, as the live view's Stretch) or linear; binned down to the smallest
    size still ``min_width`` wide."""
    width = pixels.luminance.shape[1]
    factor = max((f for f in (1, 2, 4, 8) if width // f >= min_width), default=1) if min_width else 1
    luminance = _bin(pixels.luminance, factor)
    full_scale = pixels.full_scale
    if stretch:
        table = auto_stretch(statistics(exact_histogram(luminance, full_scale)), full_scale).lookup_table(
            full_scale + 1
        )
    else:
        table = np.round(np.arange(full_scale + 1) * (255 / full_scale)).astype(np.uint8)
    if pixels.colour is not None:
        return table[np.minimum(_bin(pixels.colour, factor), full_scale)]
    grey = table[np.minimum(luminance, full_scale)]
    return np.repeat(grey[:, :, None], 3, axis=2)


def thumbnail(root: Path, image: Path, encoder: JpegEncoder) -> Path | bytes:
    """A small JPEG of a JPEG or FITS frame (a FITS one stretched: its linear data is black to
    the eye), made once and cached."""
    kind = gallery.image_format(image.name)
    if kind == "jpeg":
        return gallery.thumbnail(root, image, encoder)
    if kind != "fits":
        raise WandaError(ErrorCode.NO_THUMBNAIL, "thumbnails are made of JPEG and FITS images only")

    def make() -> bytes:
        with _unrenderable(image):
            pixels = render(load_fits(image), stretch=True, min_width=gallery.THUMB_MIN_WIDTH)
        return encoder.encode(pixels, "RGB", quality=THUMB_QUALITY)

    return gallery.cached(root, image, "thumb", make)


@contextlib.contextmanager
def _unrenderable(image: Path) -> Iterator[None]:
    """A file the renderer chokes on (odd sizes, odd scaling) is the client's 415, not a 500."""
    try:
        yield
    except WandaError:
        raise
    except (ArithmeticError, IndexError, ValueError) as exc:
        log.warning("%s cannot be shown: %r", image.name, exc)
        raise WandaError(ErrorCode.NO_THUMBNAIL, f"{image.name} cannot be shown") from None


def preview(root: Path, image: Path, encoder: JpegEncoder, *, stretch: bool) -> Path | bytes:
    """The frame at full size as a JPEG a browser shows (a raw Bayer frame in superpixels):
    a FITS frame linear or stretched, a JPEG frame as it is (the file) or stretched. Made once
    and cached; the cache keeps the newest few."""
    kind = gallery.image_format(image.name)
    if kind == "jpeg" and not stretch:
        return image

    def make() -> bytes:
        with _unrenderable(image):
            pixels = load_fits(image) if kind == "fits" else load_jpeg(image, encoder)
            rendered = render(pixels, stretch=stretch)
        return encoder.encode(rendered, "RGB", quality=VIEW_QUALITY)

    if kind not in ("jpeg", "fits"):
        raise WandaError(ErrorCode.NO_THUMBNAIL, "views are made of JPEG and FITS images only")
    return gallery.cached(root, image, "view-auto" if stretch else "view", make, bounded=True)
