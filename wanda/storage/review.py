"""Judging a saved frame: its details (exposure, gain, frame type, date, sensor temperature) from
its sidecar, or from its FITS header where it has no sidecar, and its stars and HFR, measured once
per frame on the `measure` thread and kept in its sidecar.

Every frame saved is offered to the ``Measurer`` as it is saved; a frame it never got (saved before
WANDA measured, or offered while its queue was full) is measured when the gallery first asks for
its details. The measurement goes into the sidecar by an atomic rewrite, under the lock that
deletes take, so a frame deleted meanwhile does not get its sidecar back.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wanda import __version__
from wanda.astro.measure import analyse
from wanda.errors import ErrorCode, WandaError
from wanda.jpeg import JpegEncoder
from wanda.storage import gallery
from wanda.storage.disk import write_atomic
from wanda.storage.fits import read_header
from wanda.storage.renditions import FramePixels, load_fits, load_jpeg
from wanda.storage.stills import IMAGE_TYPES
from wanda.timestamps import utc_iso

log = logging.getLogger(__name__)

MEASURE_QUEUE = 64  # frames waiting to be measured; more are measured when the gallery asks
MEASURE_WIDTH = 1440  # a bigger JPEG is measured at half size (or less), as the live analysis does
UNRECORDED = 256  # measurements a full or read-only disk would not take, kept in memory
FRAME_TYPES = {value: key for key, value in IMAGE_TYPES.items()}  # "Light Frame" -> "light"


def sidecar_of(image: Path) -> Path:
    return image.with_name(gallery.stem_of(image.name) + ".json")


def _notes(sidecar: Path) -> dict[str, Any] | None:
    """The sidecar's JSON object; None if there is none (or it is a link, or not an object)."""
    try:
        if sidecar.is_symlink():  # it may lead anywhere
            return None
        notes = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return notes if isinstance(notes, dict) else None


def _source(images: list[Path]) -> Path | None:
    """What a frame is measured on: its linear FITS data where it has any, else its JPEG."""
    for kind in ("fits", "jpeg"):
        for image in images:
            if gallery.image_format(image.name) == kind:
                return image
    return None


def measure(image: Path, encoder: JpegEncoder) -> dict[str, Any]:
    """Stars and focus figures of ``image``'s frame (wanda/astro/measure.py's ``analyse``), in
    pixels of the full frame. Blocks for a fraction of a second: on the `measure` thread."""
    source = _source(gallery.frame_images(image))
    if source is None:
        raise WandaError(ErrorCode.NO_THUMBNAIL, "only JPEG and FITS frames are measured")
    pixels: FramePixels = (
        load_fits(source)
        if gallery.image_format(source.name) == "fits"
        else load_jpeg(source, encoder, max_width=MEASURE_WIDTH)
    )
    started = time.perf_counter()
    figures = analyse(pixels.luminance, pixels.full_scale, scale=pixels.scale)
    return {
        "star_count": figures["star_count"],
        "measured_stars": figures["measured_stars"],
        "saturated_stars": figures["saturated_stars"],
        "hfr": figures["hfr"],
        "fwhm": figures["fwhm"],
        "background": figures["background"],
        "noise": figures["noise"],
        "source": source.name,
        "measured": utc_iso(time.time()),
        "measure_ms": round(1000 * (time.perf_counter() - started), 1),
        "software": f"WANDA {__version__}",
    }


def record(image: Path, measurement: dict[str, Any]) -> bool:
    """Keep ``measurement`` in the frame's sidecar (made if the frame has none), rewritten
    atomically. False when there is nothing to write to: the frame went, or its sidecar is not
    WANDA's JSON object. OSError when the disk refuses."""
    sidecar = sidecar_of(image)
    with gallery.SIDECARS:
        if not gallery.frame_images(image):
            return False  # deleted meanwhile: its sidecar went with it
        notes = _notes(sidecar)
        if notes is None:
            if sidecar.exists() or sidecar.is_symlink():
                return False  # something else under that name: not ours to overwrite
            # A frame being saved shows its image before its sidecar: never replace the sidecar
            # that lands meanwhile with one that has only the measurement.
            try:
                write_atomic(sidecar, _encoded({"measurement": measurement}), overwrite=False)
                return True
            except FileExistsError:
                notes = _notes(sidecar)
                if notes is None:
                    return False
        notes["measurement"] = measurement
        write_atomic(sidecar, _encoded(notes))
    return True


def _encoded(notes: dict[str, Any]) -> bytes:
    return json.dumps(notes, indent=2).encode("utf-8")


class Measurer:
    """The `measure` thread: measures saved frames one at a time, from a queue of at most
    ``limit`` frames (a frame offered to a full queue is left to be measured when the gallery asks
    for it), and keeps each measurement in the frame's sidecar."""

    def __init__(
        self,
        *,
        limit: int = MEASURE_QUEUE,
        measure_frame: Callable[[Path, JpegEncoder], dict[str, Any]] = measure,
    ):
        self.limit = limit
        self._measure = measure_frame
        self._encoder: JpegEncoder | None = None  # made on the thread, when first needed
        self._queue: deque[Path] = deque()
        self._queued: set[Path] = set()
        self._working: Path | None = None
        self._changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Measurements the sidecar would not take (a full or read-only disk, a sidecar not WANDA's).
        self.unrecorded: OrderedDict[Path, dict[str, Any]] = OrderedDict()
        self.measured = 0  # frames measured (counted for tests and the curious)
        self.refused = 0  # frames offered to a full queue

    @staticmethod
    def _key(image: Path) -> Path:
        """The frame's name without its extension, whichever image and spelling of the path named it."""
        return Path(os.path.realpath(image.parent)) / gallery.stem_of(image.name)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="measure", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop after the frame being measured; the queue is dropped. Shutdown waits ``timeout`` at
        most: a frame cut short is measured when the gallery next asks for it."""
        with self._changed:
            self._stopping = True
            self._queue.clear()
            self._queued.clear()
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, image: Path) -> bool:
        """Queue ``image``'s frame to be measured (from any thread; never blocks). False when the
        queue is full or the measurer has stopped."""
        key = self._key(image)
        with self._changed:
            if key in self._queued or key == self._working:
                return True
            if self._stopping or len(self._queue) >= self.limit:
                self.refused += 1
                return False
            self._queue.append(image)
            self._queued.add(key)
            self._changed.notify()
        return True

    @property
    def idle(self) -> bool:
        with self._changed:
            return not self._queue and self._working is None

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                image = self._queue.popleft()
                self._queued.discard(self._key(image))
                self._working = self._key(image)
            try:
                self._measure_and_record(image)
            except Exception:  # a frame that cannot be measured must not end the thread
                log.exception("measuring %s failed", image)
            finally:
                with self._changed:
                    self._working = None

    def _measure_and_record(self, image: Path) -> None:
        notes = _notes(sidecar_of(image))
        if notes is not None and "measurement" in notes:
            return  # once per frame
        if self._encoder is None:
            self._encoder = JpegEncoder()
        try:
            measurement = self._measure(image, self._encoder)
        except FileNotFoundError:
            return  # deleted before its turn
        except (OSError, WandaError) as exc:  # unreadable: say so, and do not try again
            reason = exc.message if isinstance(exc, WandaError) else (exc.strerror or str(exc))
            measurement = {"error": reason, "measured": utc_iso(time.time())}
        except Exception:  # a file the star finder chokes on: said once, never measured again
            log.exception("measuring %s failed", image.name)
            measurement = {"error": "it could not be measured (see the server log)", "measured": utc_iso(time.time())}
        self.measured += 1
        try:
            if record(image, measurement) or not gallery.frame_images(image):
                return  # kept in the sidecar, or the frame went meanwhile
            reason = "its sidecar is not a JSON object"
        except OSError as exc:
            reason = exc.strerror or str(exc)
        log.info("the measurement of %s is kept in memory: %s", image.name, reason)
        with self._changed:  # shown, and not measured again at every look
            self.unrecorded[self._key(image)] = measurement
            while len(self.unrecorded) > UNRECORDED:
                self.unrecorded.popitem(last=False)

    def known(self, image: Path) -> dict[str, Any] | None:
        """A measurement its sidecar would not take, if ``image``'s frame has one."""
        with self._changed:
            return self.unrecorded.get(self._key(image))


def frame_info(root: Path, image: Path, measurer: Measurer) -> dict[str, Any]:
    """What the gallery's full view shows of ``image``'s frame: from its sidecar, else from its
    FITS header; and its measurement, or ``pending`` (then it is queued to be measured)."""
    base = root.resolve()
    images = gallery.frame_images(image) or [image]
    notes = _notes(sidecar_of(image)) or {}
    fits = next((p for p in images if gallery.image_format(p.name) == "fits"), None)
    header: dict[str, Any] = {}
    if fits is not None:
        try:
            with open(fits, "rb") as file:
                header = read_header(file)[0]
        except (OSError, ValueError):
            header = {}
    camera = notes.get("camera")
    if not isinstance(camera, dict):
        camera = {}
    date_obs = header.get("DATE-OBS")
    if isinstance(date_obs, str) and date_obs and not date_obs.endswith("Z"):
        date_obs += "Z"  # FITS writes UTC without the zone
    info = {
        "name": image.name,
        "path": image.relative_to(base).as_posix(),
        "files": [p.relative_to(base).as_posix() for p in images],
        "frame_type": notes.get("frame_type", FRAME_TYPES.get(str(header.get("IMAGETYP")))),
        "exposure_seconds": notes.get("exposure_seconds", header.get("EXPTIME")),
        "gain": notes.get("gain", header.get("GAIN")),
        "iso": notes.get("iso", header.get("ISOSPEED")),
        "date_obs": notes.get("date_obs", date_obs),
        "sensor_temperature": camera.get("SensorTemperature", header.get("CCD-TEMP")),
        "width": notes.get("width", header.get("NAXIS1")),
        "height": notes.get("height", header.get("NAXIS2")),
        "object": notes.get("object", header.get("OBJECT")),
        "source": "sidecar" if notes else ("fits header" if header else None),
        "measurement": _measurement(notes, images, measurer),
    }
    return info


def _measurement(notes: dict[str, Any], images: list[Path], measurer: Measurer) -> dict[str, Any]:
    measured = notes.get("measurement")
    if not isinstance(measured, dict):
        measured = measurer.known(images[0])
    if isinstance(measured, dict):
        return {"state": "failed" if "error" in measured else "measured", **measured}
    if _source(images) is None:
        return {"state": "unavailable"}
    measurer.submit(images[0])  # measured now, once: a frame saved before WANDA measured them
    return {"state": "pending"}
