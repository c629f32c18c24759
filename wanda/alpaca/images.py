"""An Alpaca camera's image on the wire: ImageArray as JSON, or as ImageBytes.

Both carry the image column by column ("column-major": ``Value[x][y]``, x across and y down from the
top left), as ASCOM's ImageArray is indexed. ImageBytes (``Accept: application/imagebytes``) is a
44-byte header of eleven little-endian 32-bit integers, then the pixels:

    MetadataVersion (1), ErrorNumber, ClientTransactionID, ServerTransactionID, DataStart (44),
    ImageElementType, TransmissionElementType, Rank, Dimension1, Dimension2, Dimension3

ImageElementType is Int32 (2: what ImageArray holds) and the pixels travel as UInt16 (8), the
sensor's values being 0..65535. A failure is answered in JSON whatever was asked for, as ASCOM's
own servers do (the client reads the Content-Type).

Pure functions of arrays, run on a thread (a 12-megapixel frame is 24 MB of ImageBytes and about
50 MB of JSON); an image keeps what they made (wanda/alpaca/camera.py), so the answer's own header
is all a download adds.
"""

from __future__ import annotations

import json
import struct

import numpy as np

IMAGE_BYTES = "application/imagebytes"
HEADER = struct.Struct("<iiIIiiiiiii")
METADATA_VERSION = 1
INT32, UINT16 = 2, 8  # ASCOM's ImageArrayElementTypes

# Each 16-bit value's decimal text, to build JSON without a Python int and str per pixel.
_DECIMALS = np.array([str(i).encode() for i in range(65536)], dtype=object)


def pixel_bytes(pixels: np.ndarray) -> bytes:
    """ImageBytes' data: ``pixels`` (height, width) of uint16, column by column, little-endian."""
    return np.ascontiguousarray(pixels.T, dtype="<u2").tobytes()


def bytes_header(width: int, height: int, client_transaction: int, server_transaction: int) -> bytes:
    """The ImageBytes header of a ``width`` x ``height`` image (rank 2)."""
    return HEADER.pack(
        METADATA_VERSION, 0, client_transaction, server_transaction, HEADER.size, INT32, UINT16, 2, width, height, 0
    )


def json_values(pixels: np.ndarray) -> bytes:
    """ImageArray's ``Value`` in JSON: ``[[column 0], [column 1], ...]`` of ``pixels`` (height, width)."""
    return b"[" + b",".join(b"[" + b",".join(_DECIMALS[column]) + b"]" for column in pixels.T) + b"]"


def json_parts(values: bytes, client_transaction: int, server_transaction: int) -> tuple[bytes, bytes, bytes]:
    """ImageArray's JSON answer (Type 2: Int32; Rank 2) as three parts to send in turn."""
    tail = json.dumps(
        {
            "ClientTransactionID": client_transaction,
            "ServerTransactionID": server_transaction,
            "ErrorNumber": 0,
            "ErrorMessage": "",
        }
    ).encode()
    return b'{"Type":2,"Rank":2,"Value":', values, b"," + tail[1:]
