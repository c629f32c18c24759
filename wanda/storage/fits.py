"""FITS files: one primary HDU of 16-bit linear data, the way stacking software reads them.

Unsigned 16-bit data is stored as FITS requires: signed 16-bit big-endian (BITPIX 16) with
BZERO 32768, so a reader adds 32768 back. Header cards are 80 characters, the header and the
data are each padded to a multiple of 2880 bytes. A colour image is three planes (NAXIS3 = 3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

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


def fits_bytes(data: np.ndarray, cards: Iterable[Card] = ()) -> bytes:
    """A FITS file of ``data``: uint16, 2-D (height, width) or 3-D (3, height, width)."""
    if data.dtype != np.uint16 or data.ndim not in (2, 3):
        raise ValueError("FITS data here is uint16, 2-D or three planes")
    shape = data.shape
    header = [
        card("SIMPLE", True, "conforms to FITS standard"),
        card("BITPIX", 16, "16-bit integers"),
        card("NAXIS", data.ndim),
    ]
    header.append(card("NAXIS1", shape[-1], "width"))
    header.append(card("NAXIS2", shape[-2], "height"))
    if data.ndim == 3:
        header.append(card("NAXIS3", shape[0], "colour planes"))
    header.append(card("BZERO", 32768, "data = stored + 32768: unsigned 16-bit"))
    header.append(card("BSCALE", 1))
    header.extend(card(k, v, c) for k, v, c in cards if v is not None)
    header.append(card("END"))
    head = b"".join(header)
    head += b" " * (-len(head) % BLOCK)
    # Flipping the top bit of an unsigned 16-bit value subtracts 32768 in two's complement.
    body = np.bitwise_xor(data, np.uint16(0x8000)).view(np.int16).astype(">i2").tobytes()
    body += b"\0" * (-len(body) % BLOCK)
    return head + body
