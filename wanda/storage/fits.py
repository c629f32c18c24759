"""FITS files: one primary HDU of 16-bit linear data, the way stacking software reads them (or of
32-bit floats: a stack's mean).

Unsigned 16-bit data is stored as FITS requires: signed 16-bit big-endian (BITPIX 16) with
BZERO 32768, so a reader adds 32768 back. Header cards are 80 characters, the header and the
data are each padded to a multiple of 2880 bytes. A colour image is three planes (NAXIS3 = 3).

``read_fits`` reads such a file back (and 8-bit or signed 16-bit ones) for the gallery's previews
and measurements; ``read_header`` only its cards.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

BLOCK = 2880
CARD = 80

Card = tuple[str, Any, str]  # keyword, value, comment


def _value(value: Any) -> str:
    """A fixed-format value: logicals and numbers right-aligned in columns 11-30, strings quoted."""
    if isinstance(value, bool):
        return f"{'T' if value else 'F':>20}"
    if isinstance(value, int | np.integer):
        return f"{int(value):>20}"
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise ValueError(f"FITS cannot hold {value}")
        text = f"{float(value):.15G}"
        if "." not in text and "E" not in text:
            text += "."
        return f"{text:>20}"
    text = str(value).replace("'", "''")
    if not text.isascii() or not text.isprintable():
        raise ValueError(f"FITS strings are printable ASCII: {value!r}")
    return f"'{text:<8}'"[:70]  # at least 8 characters between the quotes, as the standard asks


def card(keyword: str, value: Any = None, comment: str = "") -> bytes:
    keyword = keyword.upper()
    if len(keyword) > 8 or not all(c.isupper() or c.isdigit() or c in "-_" for c in keyword):
        raise ValueError(f"not a FITS keyword: {keyword!r}")
    if value is None:
        text = f"{keyword:<8}"
    else:
        text = f"{keyword:<8}= {_value(value)}"
        if comment:
            text += f" / {comment}"
    return text[:CARD].ljust(CARD).encode("ascii")


def fits_bytes(data: np.ndarray, cards: Iterable[Card] = ()) -> bytearray:
    """A FITS file of ``data``: uint16 or float32 (a stack's mean), 2-D (height, width) or 3-D
    (3, height, width), which may be a view (a transposed stack's planes). Written straight into
    the file's one buffer: a full-size stack is 148 MB, and copies of it would not fit a Pi."""
    if data.dtype not in (np.uint16, np.float32) or data.ndim not in (2, 3):
        raise ValueError("FITS data here is uint16 or float32, 2-D or three planes")
    floating = data.dtype == np.float32
    shape = data.shape
    header = [
        card("SIMPLE", True, "conforms to FITS standard"),
        card("BITPIX", -32 if floating else 16, "32-bit floating point" if floating else "16-bit integers"),
        card("NAXIS", data.ndim),
    ]
    header.append(card("NAXIS1", shape[-1], "width"))
    header.append(card("NAXIS2", shape[-2], "height"))
    if data.ndim == 3:
        header.append(card("NAXIS3", shape[0], "colour planes"))
    if not floating:
        header.append(card("BZERO", 32768, "data = stored + 32768: unsigned 16-bit"))
        header.append(card("BSCALE", 1))
    header.extend(card(k, v, c) for k, v, c in cards if v is not None)
    header.append(card("END"))
    head = b"".join(header)
    head += b" " * (-len(head) % BLOCK)
    size = data.size * data.dtype.itemsize
    out = bytearray(len(head) + size + (-size % BLOCK))  # the data's padding: zeros
    out[: len(head)] = head
    body = np.frombuffer(out, ">f4" if floating else ">i2", data.size, len(head)).reshape(shape)
    if floating:
        body[...] = data  # IEEE 754 big-endian; NaN where no value (FITS's blank)
    else:
        # Flipping the top bit of an unsigned 16-bit value subtracts 32768 in two's complement.
        body[...] = np.bitwise_xor(data, np.uint16(0x8000)).view(np.int16)
    return out


# -- reading back ------------------------------------------------------------------------------------

MAX_HEADER_BLOCKS = 64  # 2,304 cards: far more than any camera writes; a longer header is not a FITS file


@dataclass(frozen=True)
class FitsImage:
    header: dict[str, Any]  # keyword -> value (str, bool, int or float), as written
    data: np.ndarray  # uint16, (height, width) or (planes, height, width)
    full_scale: int  # the largest value the data can hold (DATAMAX where the file says it)


def card_value(text: str) -> Any:
    """The value of a header card's value field (columns 11-80): string, logical, int or float."""
    text = text.strip()
    if text.startswith("'"):
        value, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":  # a doubled quote is a quote
                    value.append("'")
                    i += 2
                    continue
                break
            value.append(text[i])
            i += 1
        return "".join(value).rstrip()
    text = text.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text.replace("D", "E"))
    except ValueError:
        return text or None


def read_header(file: BinaryIO) -> tuple[dict[str, Any], int]:
    """The primary header's cards and the offset of its data. ValueError when it is not FITS."""
    header: dict[str, Any] = {}
    for block in range(MAX_HEADER_BLOCKS):
        chunk = file.read(BLOCK)
        if len(chunk) < BLOCK:
            raise ValueError("not a FITS file: the header ends early")
        if block == 0 and not chunk.startswith(b"SIMPLE  ="):
            raise ValueError("not a FITS file")
        for start in range(0, BLOCK, CARD):
            text = chunk[start : start + CARD].decode("ascii", "replace")
            keyword = text[:8].strip()
            if keyword == "END":
                return header, (block + 1) * BLOCK
            if text[8:10] == "= " and keyword not in header:
                header[keyword] = card_value(text[10:])
    raise ValueError("not a FITS file: no END within the header")


# The most values read_fits decodes: a 12-megapixel colour frame (the HQ camera's 4056 x 3040 x 3).
MAX_FITS_VALUES = 4056 * 3040 * 3


def read_fits(path: Path) -> FitsImage:
    """A FITS file's primary image as unsigned 16-bit data: what WANDA writes (BITPIX 16 with BZERO
    32768, or a stack's 32-bit floats, scaled so that their largest value is full scale), signed
    16-bit (negative values read as 0) or 8-bit data. ValueError for anything else."""
    with open(path, "rb") as file:
        header, offset = read_header(file)
        bitpix, naxis = header.get("BITPIX"), header.get("NAXIS")
        if bitpix not in (8, 16, -32) or naxis not in (2, 3):
            raise ValueError(f"FITS data of BITPIX {bitpix} and NAXIS {naxis} is not read here")
        axes = [header.get(f"NAXIS{axis}") for axis in range(naxis, 0, -1)]
        shape = tuple(n for n in axes if isinstance(n, int) and not isinstance(n, bool) and n > 0)
        if len(shape) != naxis or (naxis == 3 and shape[0] not in (1, 3)):
            raise ValueError(f"FITS data of axes {axes} is not an image read here")
        if min(shape[-2:]) < 2:
            raise ValueError(f"FITS data of axes {axes} is not an image: a row or a column")
        count = math.prod(shape)
        if count > MAX_FITS_VALUES:  # decoded and rendered in memory: a Pi has 2 GB or less
            raise ValueError(f"FITS data of {count / 1e6:.0f} million values is more than WANDA reads")
        if os.fstat(file.fileno()).st_size - offset < count * (abs(bitpix) // 8):
            raise ValueError("the FITS data ends early")
        file.seek(offset)
        stored = np.fromfile(file, dtype={8: ">u1", 16: ">i2", -32: ">f4"}[bitpix], count=count)
    zero, scale = header.get("BZERO", 0), header.get("BSCALE", 1)
    if bitpix == -32:
        values = np.nan_to_num(stored.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(values.max()) if values.size else 0.0
        data = np.clip(np.round(values * np.float32(65535 / top if top > 0 else 0.0)), 0, 65535).astype(np.uint16)
        return FitsImage(header, data.reshape(shape), 65535)
    if bitpix == 8:
        data, full_scale = stored.astype(np.uint16), 255
    elif zero == 32768 and scale == 1:  # unsigned 16-bit: flip the top bit back
        data, full_scale = np.bitwise_xor(stored.view(">u2"), np.uint16(0x8000)).astype(np.uint16), 65535
    else:
        data, full_scale = np.clip(stored, 0, None).astype(np.uint16), 32767
    datamax = header.get("DATAMAX")
    if isinstance(datamax, int | float) and 1 <= datamax < full_scale:  # below 1: no scale at all
        full_scale = int(datamax)
    return FitsImage(header, data.reshape(shape), full_scale)
