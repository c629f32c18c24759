"""The capture gallery on disk: confinement, listings, thumbnails and their cache, zips, deletes.

Every function here blocks (it touches the disk) and is called from a thread, never the loop.
Every path a client names is resolved and must stay inside the capture directory; hidden names
(the temporaries of files being written, the thumbnail cache) are never listed or served.

A frame is one listing item: its images (the same name with another extension: ``light_0001.jpg``,
``light_0001.fits``, ``light_0001.dng``) share one sidecar (``light_0001.json``), one tile and one
delete.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
import re
import shutil
import threading
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import Any
from urllib.parse import quote

from wanda.errors import ErrorCode, WandaError
from wanda.jpeg import JpegEncoder
from wanda.storage.disk import TEMP_PREFIX, write_atomic

JPEG_SUFFIXES = (".jpg", ".jpeg")
FITS_SUFFIXES = (".fits", ".fit")
IMAGE_SUFFIXES = (*JPEG_SUFFIXES, *FITS_SUFFIXES, ".dng")
FORMATS = {**dict.fromkeys(JPEG_SUFFIXES, "jpeg"), **dict.fromkeys(FITS_SUFFIXES, "fits"), ".dng": "dng"}
FORMAT_ORDER = ("jpeg", "fits", "dng")  # the file that names a frame: its JPEG, else its FITS
THUMBS = ".thumbs"  # the thumbnail cache, hidden inside the capture directory
VIEWS = "views"  # its folder of full-size renditions (few are kept)
THUMB_MIN_WIDTH = 320
BOUNDED_CACHE = 24  # full-size renditions kept in the cache (thumbnails are small and all kept)
# A frame's sidecar is rewritten when its measurement arrives (wanda/storage/review.py) and removed
# with the frame's last image: one at a time, so a delete never leaves a sidecar behind.
SIDECARS = threading.Lock()
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


def image_format(name: str) -> str | None:
    """``jpeg``, ``fits`` or ``dng`` for an image's name, else None."""
    suffix = os.path.splitext(name)[1].lower()
    return FORMATS.get(suffix)


def stem_of(name: str) -> str:
    return name.rsplit(".", 1)[0]


@dataclass(frozen=True)
class _Frame:
    modified: float  # its newest image's
    images: tuple[_Image, ...]  # its JPEG first, then its FITS, then its DNG


def _frames(images: list[_Image]) -> list[_Frame]:
    """Images grouped by frame (the same name before the extension), newest first."""
    groups: dict[str, list[_Image]] = {}
    for image in images:
        groups.setdefault(stem_of(image.name), []).append(image)
    frames = [
        _Frame(
            max(image.modified for image in group),
            tuple(sorted(group, key=lambda i: (FORMAT_ORDER.index(image_format(i.name) or "dng"), i.name))),
        )
        for group in groups.values()
    ]
    frames.sort(key=lambda frame: (frame.modified, frame.images[0].name), reverse=True)
    return frames


@dataclass(frozen=True)
class Listing:
    names: list[str]  # every image, newest first
    frames: int  # how many frames (items) they make
    items: list[dict[str, Any]]  # the details of one page of frames


def list_files(root: Path, folder: str | None, offset: int, limit: int) -> Listing:
    """The frames of the capture directory (or one folder in it), newest first, with the details
    of ``limit`` of them from ``offset``, and the name of every image.

    Only the page gets its details built: a night's folder holds thousands of frames and a phone
    asks for the listing after every one.
    """
    base = root.resolve()
    directory = resolve_inside(root, folder, kind="dir") if folder else base
    if not directory.is_dir():
        return Listing([], 0, [])
    images, names = _scan(directory)
    frames = _frames(images)
    relative = directory.relative_to(base).as_posix()
    prefix = "" if relative == "." else relative + "/"
    items = [_item(prefix, frame, names) for frame in frames[offset : offset + limit]]
    return Listing([image.name for image in images], len(frames), items)


def capture_url(relative: str) -> str:
    return "/api/captures/" + quote(relative, errors="surrogateescape")  # a name that is not UTF-8 too


def _item(prefix: str, frame: _Frame, names: set[str]) -> dict[str, Any]:
    """A frame as the gallery shows it: one tile, every file of it to download, and where to find
    its thumbnail, its view in a browser (FITS as a JPEG rendition), its stretched view and its
    details."""
    primary = frame.images[0]
    downloads: list[dict[str, Any]] = [
        {
            "name": image.name,
            "path": prefix + image.name,
            "url": capture_url(prefix + image.name),
            "size": image.size,
            "format": image_format(image.name),
        }
        for image in frame.images
    ]
    by_format: dict[str | None, str] = {}
    for download in downloads:
        by_format.setdefault(download["format"], download["url"])
    jpeg, fits = by_format.get("jpeg"), by_format.get("fits")
    sidecar = stem_of(primary.name) + ".json"
    viewable = jpeg or fits  # a browser shows a JPEG; a FITS frame through its rendition
    return {
        "name": primary.name,
        "path": prefix + primary.name,
        "size": primary.size,
        "modified": frame.modified,
        "url": downloads[0]["url"],
        "thumb_url": f"{viewable}?thumb=1" if viewable else None,
        "preview_url": jpeg or (f"{fits}?preview=1" if fits else None),
        # Stretched from the linear FITS data where the frame has it, else from the JPEG.
        "stretched_url": f"{fits or jpeg}?preview=1&stretch=auto" if viewable else None,
        "info_url": f"{downloads[0]['url']}?info=1",
        "sidecar": sidecar if sidecar in names else None,
        "downloads": downloads,
    }


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
                        "frames": len({stem_of(image.name) for image in images}),
                        "size": sum(image.size for image in images),
                        "modified": images[0].modified if images else round(entry.stat().st_mtime, 3),
                        "session": "session_metadata.json" in names,
                    }
                )
    folders.sort(key=lambda f: str(f["name"]))
    return folders


def frame_images(image: Path) -> list[Path]:
    """Every image of ``image``'s frame (itself included), its JPEG first, then its FITS, then
    its DNG. Links are not followed."""
    stem = stem_of(image.name)
    found: dict[tuple[int, int], Path] = {}  # by inode: a FAT drive finds "X.JPG" as "x.jpg" too
    for suffix in (*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES)):
        candidate = image.with_name(stem + suffix)
        try:
            stat = candidate.lstat()
        except OSError:
            continue
        if S_ISREG(stat.st_mode):
            found.setdefault((stat.st_dev, stat.st_ino), candidate)
    return sorted(found.values(), key=lambda p: (FORMAT_ORDER.index(image_format(p.name) or "dng"), p.name))


def thumbnail(root: Path, image: Path, encoder: JpegEncoder) -> Path | bytes:
    """A small JPEG of a JPEG ``image``, made once and cached (see ``cached``)."""
    if not image.name.lower().endswith(JPEG_SUFFIXES):
        raise WandaError(ErrorCode.NO_THUMBNAIL, "thumbnails are made of JPEG and FITS images only")

    def make() -> bytes:
        data = image.read_bytes()
        width = jpeg_width(data)
        # libjpeg scales while it decodes: take the smallest size still at least THUMB_MIN_WIDTH wide.
        factor = max((f for f in (1, 2, 4, 8) if width // f >= THUMB_MIN_WIDTH), default=1)
        pixels = encoder.decode(data, scale=(1, factor))
        return encoder.encode(pixels, "RGB", quality=80)

    return cached(root, image, "", make)


def cached(root: Path, image: Path, kind: str, make: Callable[[], bytes], *, bounded: bool = False) -> Path | bytes:
    """A JPEG made of ``image`` by ``make()`` (``kind`` says which: "" for its thumbnail), made
    once and cached under ``.thumbs`` keyed by the image's mtime and size: the cached file, or the
    JPEG itself when the cache cannot be written (a full or read-only disk still shows its gallery).
    ``bounded``: a full-size rendition; they go to ``.thumbs/views``, which keeps the BOUNDED_CACHE
    newest."""
    stat = image.stat()
    key = _thumbnail_key(image.relative_to(root.resolve()).as_posix())
    cache = root.resolve() / THUMBS
    folder = cache / VIEWS if bounded else cache
    version = f"{stat.st_mtime_ns}.{stat.st_size}"
    cached_file = folder / f"{key}.{version}{'.' + kind if kind else ''}.jpg"
    if cached_file.is_file():
        return cached_file
    made = make()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{glob.escape(key)}.*.jpg"):  # renditions of an earlier version of the image
            if not old.name[len(key) + 1 :].startswith(version + "."):
                old.unlink(missing_ok=True)
        write_atomic(cached_file, made)
        if bounded:
            _trim(folder)
    except OSError as exc:
        log.debug("rendition of %s not cached: %s", image.name, exc)  # a gallery view asks for dozens
        return made
    return cached_file


def _trim(folder: Path) -> None:
    """Keep the BOUNDED_CACHE newest renditions in ``folder``: full-size views fill a disk quickly."""
    with os.scandir(folder) as entries:
        made = [(e.stat().st_mtime_ns, e.path) for e in entries if e.is_file() and not e.name.startswith(TEMP_PREFIX)]
    made.sort(reverse=True)
    for _, path in made[BOUNDED_CACHE:]:
        Path(path).unlink(missing_ok=True)


def _thumbnail_key(relative: str) -> str:
    """The cache's name for an image: its path with "__" for "/", or a digest when that (with the
    mtime and size after it) would pass a filesystem's 255 bytes."""
    key = relative.replace("/", "__")
    if len(os.fsencode(key)) > 180:
        # A folder's delete does not find it by its prefix: it stays in the cache, harmless.
        key = "long__" + hashlib.sha256(os.fsencode(relative)).hexdigest()
    return key


def jpeg_width(data: bytes) -> int:
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
    entries = []
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(base)
        if any(part.startswith(TEMP_PREFIX) for part in relative.parts):
            continue
        if path.is_symlink() or not path.is_file():
            continue  # never follow a link out of the capture directory
        entries.append((path, relative.as_posix()))
    write_zip_of(entries, sink)


def write_zip_of(entries: Iterable[tuple[Path, str]], sink: ChunkWriter) -> None:
    """These files (path, name in the zip) as a zip, written as it is built."""
    # ChunkWriter is the writable file-like object zipfile asks for (its stubs want a narrower type).
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[call-overload]
        for path, name in entries:
            # A name that is not UTF-8 (copied from another system) goes in with its odd bytes replaced.
            archive.write(path, os.fsencode(name).decode("utf-8", "replace"))
    sink.flush()


def _selected(root: Path, relatives: Sequence[str]) -> list[Path]:
    """The files a selection names, each checked as every client path is, in order and once
    each; the first that fails the check fails the whole selection."""
    targets: dict[Path, None] = {}
    for relative in relatives:
        targets.setdefault(resolve_inside(root, relative), None)
    return list(targets)


def selection(root: Path, relatives: Sequence[str]) -> list[tuple[Path, str]]:
    """The files of a selection and the sidecars of its images, with their names in a zip (their
    paths in the capture directory, so two folders' ``light_0001.jpg`` do not collide)."""
    base = root.resolve()
    entries: dict[Path, str] = {}
    for target in _selected(root, relatives):
        entries.setdefault(target, target.relative_to(base).as_posix())
        sidecar = target.with_name(stem_of(target.name) + ".json")
        if image_format(target.name) and not sidecar.is_symlink() and sidecar.is_file():
            entries.setdefault(sidecar, sidecar.relative_to(base).as_posix())
    return list(entries.items())


def delete(root: Path, relative: str, busy_folder: Path | None) -> dict[str, Any]:
    """Delete one capture (with its frame's sidecar and thumbnails) or a whole folder."""
    target = resolve_inside(root, relative, kind="any")
    base = root.resolve()
    if target.is_dir():
        if busy_folder is not None and busy_folder.resolve() == target:
            raise WandaError(ErrorCode.FOLDER_IN_USE, f"{relative} belongs to the running session: stop it first")
        count = sum(1 for p in target.rglob("*") if p.is_file())
        with SIDECARS:
            shutil.rmtree(target)
        _forget_thumbnails(base, target.relative_to(base).as_posix() + "__")
        return {"deleted": target.relative_to(base).as_posix(), "files": count}
    _refuse_busy([target], busy_folder)
    return {"deleted": target.relative_to(base).as_posix(), "files": _remove(base, target)}


def delete_files(root: Path, relatives: Sequence[str], busy_folder: Path | None) -> dict[str, Any]:
    """Delete several captures: every path is checked first, and if one fails (outside, missing,
    the running session's) nothing is deleted."""
    base = root.resolve()
    targets = _selected(root, relatives)
    _refuse_busy(targets, busy_folder)
    deleted, removed = [], 0
    for target in targets:
        try:
            removed += _remove(base, target, forget=False)
        except FileNotFoundError:
            continue  # gone meanwhile (another page deleted it): what was asked for is done
        deleted.append(target.relative_to(base).as_posix())
    # Once for the whole selection: the cache holds thousands of renditions on a long night.
    _forget_renditions(base, {_thumbnail_key(relative) for relative in deleted})
    return {"deleted": deleted, "files": removed}


def _refuse_busy(targets: Iterable[Path], busy_folder: Path | None) -> None:
    busy = busy_folder.resolve() if busy_folder is not None else None
    for target in targets:
        if target.parent == busy:
            name = target.relative_to(busy.parent).as_posix()
            raise WandaError(ErrorCode.FOLDER_IN_USE, f"{name} belongs to the running session: stop it first")


def _remove(base: Path, target: Path, *, forget: bool = True) -> int:
    """Delete one file and (``forget``) its thumbnails; the frame's sidecar goes with the frame's
    last image (a JPEG deleted from a JPEG+FITS frame leaves the FITS its notes). How many files
    went."""
    removed = 1
    with SIDECARS:
        target.unlink()
        sidecar = target.with_name(stem_of(target.name) + ".json")
        if image_format(target.name) and not frame_images(target) and not sidecar.is_symlink() and sidecar.is_file():
            sidecar.unlink()
            removed += 1
    if forget:
        _forget_thumbnails(base, target.relative_to(base).as_posix().replace("/", "__") + ".")
    return removed


_RENDITION = re.compile(r"^(?P<key>.+)\.\d+\.\d+(?:\.[a-z-]+)?\.jpg$")  # see cached()


def _forget_renditions(base: Path, keys: set[str]) -> None:
    """Remove the cached renditions of the images with these cache keys, reading each cache once."""
    for cache in (base / THUMBS, base / THUMBS / VIEWS):
        try:
            with os.scandir(cache) as entries:
                names = [entry.name for entry in entries]
        except OSError:
            continue
        for name in names:
            match = _RENDITION.match(name)
            if match and match["key"] in keys:
                (cache / name).unlink(missing_ok=True)


def _forget_thumbnails(base: Path, prefix: str) -> None:
    for cache in (base / THUMBS, base / THUMBS / VIEWS):
        if cache.is_dir():
            for cached_file in cache.glob(f"{glob.escape(prefix.replace('/', '__'))}*"):
                cached_file.unlink(missing_ok=True)
