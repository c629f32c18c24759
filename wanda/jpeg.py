"""JPEG encoding with libjpeg-turbo (through PyTurboJPEG below 2, which loads the libturbojpeg 2.1
of Debian 12 and Raspberry Pi OS Bookworm)."""

from __future__ import annotations

import threading

import numpy as np

INSTALL_HINT = "libjpeg-turbo is missing: install it with `sudo apt-get install libturbojpeg0`"


class JpegUnavailable(RuntimeError):
    """libturbojpeg cannot be loaded; the message says which package to install."""


def _load():
    try:
        import turbojpeg
    except ImportError:
        raise JpegUnavailable("PyTurboJPEG is not installed: `pip install 'PyTurboJPEG<2'`") from None
    try:
        return turbojpeg, turbojpeg.TurboJPEG()
    except (OSError, RuntimeError):
        raise JpegUnavailable(INSTALL_HINT) from None


class JpegEncoder:
    """Encodes frames; counts its encodes so tests and /state can check "once per frame"."""

    def __init__(self, quality: int = 80):
        module, self._tj = _load()
        self.quality = quality
        self._formats = {"RGB": module.TJPF_RGB, "BGR": module.TJPF_BGR, "RGBX": module.TJPF_RGBX}
        self._subsample = module.TJSAMP_420  # smaller parts and faster encodes; fine for a preview
        self._lock = threading.Lock()
        self.encodes = 0

    def encode(self, pixels: np.ndarray, pixel_format: str = "RGB", quality: int | None = None) -> bytes:
        data = self._tj.encode(
            pixels,
            quality=quality or self.quality,
            pixel_format=self._formats[pixel_format],
            jpeg_subsample=self._subsample,
        )
        with self._lock:
            self.encodes += 1
        return data

    def decode(self, data: bytes, scale: tuple[int, int] | None = None) -> np.ndarray:
        """RGB pixels of a JPEG, optionally scaled while decoding (1/2, 1/4, 1/8: cheap)."""
        return self._tj.decode(data, pixel_format=self._formats["RGB"], scaling_factor=scale)
