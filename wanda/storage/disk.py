"""Files on disk: atomic writes and the capture directory.

Every file WANDA writes goes to a hidden temporary name beside its final name, is flushed to disk,
and is then renamed into place, so a crash, a kill or a full disk leaves either the whole file or
nothing under the final name (and the gallery never lists the hidden temporaries).
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import json
import logging
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_PREFIX = "."  # temporaries are hidden files; listings skip names starting with it
Blob = bytes | bytearray  # a file's contents as written (a big FITS is built in place, in a bytearray)
USB_SUBFOLDER = "wanda_captures"


def plain_name(name: str) -> bool:
    """A name that can only be an entry right in a folder: not empty, ``.`` or ``..``, no path
    separator or NUL (asking whether others exist would tell a client about the disk outside it)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def choose_captures_dir(
    configured: Path | None, media_root: Path = Path("/media"), user: str | None = None, home: Path | None = None
) -> tuple[Path, str]:
    """Where captures go, and why: ``--captures``, else the first writable USB drive mounted under
    ``/media/<user>/`` (in its ``wanda_captures`` folder), else ``~/wanda_captures``.

    Raspberry Pi OS mounts a USB drive at ``/media/<user>/<label>`` and removes the folder when the
    drive goes, so a writable folder there is a mounted drive.
    """
    if configured is not None:
        return configured, "--captures"
    user = user or getpass.getuser()
    drives = media_root / user
    try:
        candidates = sorted(p for p in drives.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        candidates = []
    for drive in candidates:
        if os.access(drive, os.W_OK | os.X_OK):
            return drive / USB_SUBFOLDER, f"USB drive {drive.name} under {drives}"
        log.info("USB drive %s is not writable for %s: skipped", drive, user)
    return (home or Path.home()) / USB_SUBFOLDER, f"no writable USB drive under {drives}"


def disk_space(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the filesystem holding ``path`` (or its nearest existing parent)."""
    usage = shutil.disk_usage(_nearest_existing(path))
    return usage.free, usage.total


def _nearest_existing(path: Path) -> Path:
    """``path``, or the nearest parent that exists (the captures folder is made on first use)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def unwritable_reason(path: Path) -> str | None:
    """Why WANDA may not write under ``path`` (or its nearest existing parent), in words an
    observer can act on, or None when it may: a disk mounted read-only (as the kernel does after
    an error, or a card's lock switch), a folder WANDA's user may not write, or a file where the
    folder would go."""
    existing = _nearest_existing(path)
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError as exc:
        return f"{existing} cannot be read ({exc.strerror or exc})"
    if read_only:
        return f"the disk holding {existing} is mounted read-only (after a disk error, or a locked card?)"
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"WANDA's user ({getpass.getuser()}) may not write in {existing}: chown it, or choose --captures"
    return None


def writable(path: Path) -> bool:
    """Whether WANDA may write under ``path`` (see :func:`unwritable_reason`)."""
    return unwritable_reason(path) is None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some filesystems (and platforms) cannot open a directory; the rename still holds
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` all or nothing.

    With ``overwrite=False`` an existing file is never replaced (FileExistsError), also on
    filesystems without hard links (FAT and exFAT USB drives).
    """
    temp = _write_temporary(path, data)
    try:
        if overwrite:
            os.replace(temp, path)
        else:
            _rename_exclusive(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_temporary(path: Path, data: Blob) -> Path:
    """``data`` flushed to disk under a hidden temporary name beside ``path``."""
    temp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temp, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _rename_exclusive(temp: Path, path: Path) -> None:
    try:
        os.link(temp, path)  # atomic and fails if the name exists
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
        # No hard links here: only WANDA writes these names, and one writer at a time.
        if path.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.replace(temp, path)
    else:
        # The file is in place: a temporary that will not go is swept at the next start, and
        # failing here would make the caller roll back a save that succeeded.
        with contextlib.suppress(OSError):
            temp.unlink()


_NUMBERED = re.compile(r"^(?P<stem>[A-Za-z]+)_(?P<number>\d+)\.")


@dataclass(frozen=True)
class SavedFile:
    path: Path
    sidecar: Path | None
    companions: tuple[Path, ...] = ()  # the same frame in other formats (the raw DNG)


class NumberedFiles:
    """Hands out ``<stem>_0001.<ext>``, ``<stem>_0002.<ext>``, ... in one folder: numbering goes on
    after a restart (from the highest number on disk) and a name on disk is never reused."""

    def __init__(self, folder: Path, stem: str):
        self.folder = folder
        self.stem = stem
        self._lock = threading.Lock()
        self._next: int | None = None

    def _highest_on_disk(self) -> int:
        highest = 0
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return 0
        for name in names:
            match = _NUMBERED.match(name)
            if match and match["stem"] == self.stem:
                highest = max(highest, int(match["number"]))
        return highest

    def save(
        self, extension: str, data: Blob, sidecar: dict | None = None, companions: dict[str, Blob] | None = None
    ) -> SavedFile:
        """Write the next numbered file, its companions (``{"dng": bytes}``: the same name with that
        extension) and its JSON sidecar; never overwrite an image.

        Every part is written to a temporary before any final name appears, so a full disk fails
        the save before the gallery could list part of the frame; the parts then take their names
        by renames, which need no room for data.
        """
        companions = companions or {}
        if extension in companions or "json" in companions:
            raise ValueError(f"a companion may not be named like the image or its sidecar: {sorted(companions)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        contents = {extension: data, **companions}
        if sidecar is not None:
            contents["json"] = json.dumps(sidecar, indent=2).encode("utf-8")
        temporaries: dict[str, Path] = {}
        placed: list[Path] = []
        try:
            for part, content in contents.items():
                # Named after the stem: the number is only chosen once every part is on disk.
                temporaries[part] = _write_temporary(self.folder / f"{self.stem}.{part}", content)
            with self._lock:
                if self._next is None:
                    self._next = self._highest_on_disk() + 1
                while True:
                    path = self.folder / f"{self.stem}_{self._next:04d}.{extension}"
                    self._next += 1
                    try:
                        _rename_exclusive(temporaries[extension], path)
                    except FileExistsError:
                        continue  # put there by someone else: take the next number
                    break
            placed.append(path)
            for part in companions:
                companion = path.with_suffix(f".{part}")
                _rename_exclusive(temporaries[part], companion)
                placed.append(companion)
            sidecar_path = None
            if sidecar is not None:
                # The images land first: a crash in between leaves images without notes, never
                # notes without an image.
                sidecar_path = path.with_suffix(".json")
                os.replace(temporaries["json"], sidecar_path)
            _fsync_dir(self.folder)
        except BaseException:
            # A save that fails leaves nothing: the caller reports the frame as not saved, so no
            # part of it may stay to be listed or counted.
            for leftover in (*placed, *temporaries.values()):
                leftover.unlink(missing_ok=True)
            raise
        return SavedFile(path, sidecar_path, tuple(placed[1:]))
