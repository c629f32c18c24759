"""The capture gallery on disk: confinement, listings, thumbnails, zips, deletes.

Every function here blocks (it touches the disk) and is called from a thread, never the loop.
Every path a client names is resolved and must stay inside the capture directory; hidden names
(the temporaries of files being written, the thumbnail cache) are never listed or served.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from wanda.errors import ErrorCode, WandaError
from wanda.jpeg import JpegEncoder
from wanda.storage.disk import TEMP_PREFIX, write_atomic

JPEG_SUFFIXES = (".jpg", ".jpeg")  # the images with thumbnails
IMAGE_SUFFIXES = (*JPEG_SUFFIXES, ".fits", ".fit", ".dng")
THUMBS = ".thumbs"  # the thumbnail cache, hidden inside the capture directory
THUMB_MIN_WIDTH = 320
ZIP_CHUNK = 256 * 1024
NAME_MAX = 255  # bytes in one name: what ext4, FAT and exFAT allow
PATH_MAX = 4096

log = logging.getLogger(__name__)


def _parts(relative: str) -> tuple[str, ...]:
    if "\x00" in relative or "\\" in relative:
        raise WandaError(ErrorCode.INVALID_PATH, "the path contains a forbidden character")
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or any(p in (".", "..") or p.startswith(TEMP_PREFIX) for p in parts):
        raise WandaError(ErrorCode.INVALID_PATH, "the path must name something inside the capture directory")
    if len(_bytes(relative)) > PATH_MAX or any(len(_bytes(part)) > NAME_MAX for part in parts):
        raise WandaError(
            ErrorCode.NAME_TOO_LONG,
            f"a name may be {NAME_MAX} bytes long, a path {PATH_MAX}: no capture has a longer one",
        )
    return parts


def _bytes(name: str) -> bytes:
    return os.fsencode(name)  # as the filesystem sees it (undecodable bytes came in as surrogates)


def resolve_inside(root: Path, relative: str, *, kind: str = "file") -> Path:
    """The file (or folder, or either: ``kind``) that ``relative`` names under ``root``.

    Refused: NUL bytes, backslashes, absolute paths, ``.`` and ``..`` parts, hidden names, and
    symbolic links that lead out of ``root``: 400 for a malformed path, 404 for anything else.
    """
    parts = _parts(relative)
    base = root.resolve()
    try:
        candidate = (base / PurePosixPath(*parts)).resolve()
    except RuntimeError:  # Python 3.11's word for a symbolic link loop (3.13 raises OSError ELOOP)
        raise OSError(errno.ELOOP, "symbolic link loop", relative) from None
    found = (
        candidate.is_relative_to(base)
        and candidate != base
        and ((kind in ("file", "any") and candidate.is_file()) or (kind in ("dir", "any") and candidate.is_dir()))
    )
    if not found:
        raise WandaError(ErrorCode.FILE_NOT_FOUND, f"no such capture: {relative}")
    return candidate


def _visible(entry: os.DirEntry) -> bool:
    return not entry.name.startswith(TEMP_PREFIX)


@dataclass(frozen=True)
class _Image:
    modified: float
    name: str
    size: int


def _scan(directory: Path) -> tuple[list[_Image], set[str]]:
    """The images of one folder, newest first, and the names of all its visible files (for the
    sidecars and the session metadata)."""
    images = []
    names = set()
    with os.scandir(directory) as entries:
        for entry in entries:
            if not _visible(entry) or not entry.is_file(follow_symlinks=False):
                continue  # no links: what they point to may be anywhere
            names.add(entry.name)
            if not entry.name.lower().endswith(IMAGE_SUFFIXES):
                continue
            stat = entry.stat(follow_symlinks=False)
            images.append(_Image(round(stat.st_mtime, 3), entry.name, stat.st_size))
    images.sort(key=lambda image: (image.modified, image.name), reverse=True)
    return images, names


@dataclass(frozen=True)
class Listing:
    names: list[str]  # every image, newest first
    items: list[dict[str, Any]]  # the details of one page of them


def list_files(root: Path, folder: str | None, offset: int, limit: int) -> Listing:
    """The images of the capture directory (or one folder in it), newest first, with the details
    of ``limit`` of them from ``offset``.

    Only the page gets its details built: a night's folder holds thousands of frames and a phone
    asks for the listing after every one.
    """
    base = root.resolve()
    directory = resolve_inside(root, folder, kind="dir") if folder else base
    if not directory.is_dir():
        return Listing([], [])
    images, names = _scan(directory)
    relative = directory.relative_to(base).as_posix()
    prefix = "" if relative == "." else relative + "/"
    items = []
    for image in images[offset : offset + limit]:
        url = "/api/captures/" + quote(prefix + image.name, errors="surrogateescape")  # a name that is not UTF-8 too
        sidecar = image.name.rsplit(".", 1)[0] + ".json"
        items.append(
            {
                "name": image.name,
                "path": prefix + image.name,
                "size": image.size,
                "modified": image.modified,
                "url": url,
                "thumb_url": url + "?thumb=1" if image.name.lower().endswith(JPEG_SUFFIXES) else None,
                "sidecar": sidecar if sidecar in names else None,
            }
        )
    return Listing([image.name for image in images], items)


def list_folders(root: Path) -> list[dict[str, Any]]:
    base = root.resolve()
    if not base.is_dir():
        return []
    folders = []
    with os.scandir(base) as entries:
        for entry in entries:
            if _visible(entry) and entry.is_dir(follow_symlinks=False):
                images, names = _scan(Path(entry.path))
                folders.append(
                    {
                        "name": entry.name,
                        "images": len(images),
                        "size": sum(image.size for image in images),
                        "modified": images[0].modified if images else round(entry.stat().st_mtime, 3),
                        "session": "session_metadata.json" in names,
                    }
                )
    folders.sort(key=lambda f: str(f["name"]))
    return folders


def thumbnail(root: Path, image: Path, encoder: JpegEncoder) -> Path | bytes:
    """A small JPEG of ``image``, made once and cached under ``.thumbs`` (keyed by its mtime): the
    cached file, or the JPEG itself when the cache cannot be written (a full or read-only disk
    still shows its gallery)."""
    if not image.name.lower().endswith(JPEG_SUFFIXES):
        raise WandaError(ErrorCode.NO_THUMBNAIL, "thumbnails are made of JPEG images only")
    stat = image.stat()
    key = _thumbnail_key(image.relative_to(root.resolve()).as_posix())
    cache = root.resolve() / THUMBS
    cached = cache / f"{key}.{stat.st_mtime_ns}.{stat.st_size}.jpg"
    if cached.is_file():
        return cached
    data = image.read_bytes()
    width = _jpeg_width(data)
    # libjpeg scales while it decodes: take the smallest size still at least THUMB_MIN_WIDTH wide.
    factor = max((f for f in (1, 2, 4, 8) if width // f >= THUMB_MIN_WIDTH), default=1)
    pixels = encoder.decode(data, scale=(1, factor))
    small = encoder.encode(pixels, "RGB", quality=80)
    try:
        cache.mkdir(exist_ok=True)
        for old in cache.glob(f"{key}.*.jpg"):  # an earlier version of the same image
            old.unlink(missing_ok=True)
        write_atomic(cached, small)
    except OSError as exc:
        log.debug("thumbnail of %s not cached: %s", image.name, exc)  # a gallery view asks for dozens
        return small
    return cached


def _thumbnail_key(relative: str) -> str:
    """The cache's name for an image: its path with "__" for "/", or a digest when that (with the
    mtime and size after it) would pass a filesystem's 255 bytes."""
    key = relative.replace("/", "__")
    if len(os.fsencode(key)) > 180:
        # A folder's delete does not find it by its prefix: it stays in the cache, harmless.
        key = "long__" + hashlib.sha256(os.fsencode(relative)).hexdigest()
    return key


def _jpeg_width(data: bytes) -> int:
    """The width in a JPEG's frame header (SOFn), without decoding the image."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7 : i + 9], "big")
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    raise WandaError(ErrorCode.NO_THUMBNAIL, "the image is not a readable JPEG")


class ChunkWriter:
    """A file-like sink for zipfile that hands 256 KiB chunks to ``emit`` (which may block: that
    is the back-pressure from a slow client). Setting ``cancelled`` stops the writer."""

    def __init__(self, emit: Callable[[bytes], None]):
        self._emit = emit
        self._buffer = bytearray()
        self.cancelled = threading.Event()

    def write(self, data: bytes) -> int:
        if self.cancelled.is_set():
            raise OSError("the download was cancelled")
        self._buffer += data
        if len(self._buffer) >= ZIP_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._emit(bytes(self._buffer))
            self._buffer.clear()


def write_zip(folder: Path, sink: ChunkWriter) -> None:
    """The folder's visible files as a zip, written as it is built (nothing whole in memory)."""
    base = folder.resolve()
    # ChunkWriter is the writable file-like object zipfile asks for (its stubs want a narrower type).
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[call-overload]
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(base)
            if any(part.startswith(TEMP_PREFIX) for part in relative.parts):
                continue
            if path.is_symlink() or not path.is_file():
                continue  # never follow a link out of the capture directory
            # A name that is not UTF-8 (copied from another system) goes in with its odd bytes replaced.
            archive.write(path, os.fsencode(relative.as_posix()).decode("utf-8", "replace"))
    sink.flush()


def delete(root: Path, relative: str, busy_folder: Path | None) -> dict[str, Any]:
    """Delete one capture (with its sidecar and thumbnails) or a whole folder."""
    target = resolve_inside(root, relative, kind="any")
    base = root.resolve()
    if target.is_dir():
        if busy_folder is not None and busy_folder.resolve() == target:
            raise WandaError(ErrorCode.FOLDER_IN_USE, f"{relative} belongs to the running session: stop it first")
        count = sum(1 for p in target.rglob("*") if p.is_file())
        shutil.rmtree(target)
        _forget_thumbnails(base, target.relative_to(base).as_posix() + "__")
        return {"deleted": target.relative_to(base).as_posix(), "files": count}
    if busy_folder is not None and target.parent == busy_folder.resolve():
        raise WandaError(ErrorCode.FOLDER_IN_USE, f"{relative} belongs to the running session: stop it first")
    target.unlink()
    removed = 1
    sidecar = target.with_suffix(".json")
    if sidecar != target and sidecar.is_file():
        sidecar.unlink()
        removed += 1
    _forget_thumbnails(base, target.relative_to(base).as_posix().replace("/", "__") + ".")
    return {"deleted": target.relative_to(base).as_posix(), "files": removed}


def _forget_thumbnails(base: Path, prefix: str) -> None:
    cache = base / THUMBS
    if cache.is_dir():
        for cached in cache.glob(f"{prefix.replace('/', '__')}*"):
            cached.unlink(missing_ok=True)
