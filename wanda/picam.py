"""The picamera2 backend: the Raspberry Pi HQ camera (IMX477) through libcamera.

This is the preview path, a 1440x1080 stream with the astro controls fixed (no auto exposure, no
auto white balance), and stills taken from that stream with the exposure and gain of the still.
Stills at full sensor size through a mode switch, cancelling inside a long exposure, DNG, tuning
files and the hardware encoder are still to come.
"""

from __future__ import annotations

import threading
import time

from wanda.camera import CameraUnavailable, CaptureCancelled, PreviewFrame, StillImage

PREVIEW_SIZE = (1440, 1080)


class Picamera2Backend:
    name = "picamera2"
    preview_size = PREVIEW_SIZE

    def __init__(self, camera_num: int = 0):
        self._camera_num = camera_num
        self._camera = None
        self.exposure_limits = (0.0001, 230.0)
        self.gain_limits = (1.0, 16.0)
        self.exposure_s = 1 / 30
        self.gain = 8.0
        self._max_fps = 30.0

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415  (only on a Pi)
        except ImportError as exc:
            raise CameraUnavailable(f"picamera2 is not importable ({exc})") from None
        camera = Picamera2(self._camera_num)
        limits = camera.camera_controls
        # picamera2 reports (min, max, default); exposure in microseconds.
        if "ExposureTime" in limits:
            low, high, _ = limits["ExposureTime"]
            self.exposure_limits = (low / 1e6, high / 1e6)
        if "AnalogueGain" in limits:
            low, high, _ = limits["AnalogueGain"]
            self.gain_limits = (float(low), float(high))
        self.exposure_s = min(max(self.exposure_s, self.exposure_limits[0]), self.exposure_limits[1])
        # "RGB888" in picamera2's naming arrives as B, G, R bytes (hence "BGR" below).
        configuration = camera.create_preview_configuration(
            main={"size": PREVIEW_SIZE, "format": "RGB888"}, controls=self._controls()
        )
        camera.configure(configuration)
        camera.start()
        self._camera = camera

    def close(self) -> None:
        if self._camera is not None:
            self._camera.stop()
            self._camera.close()
            self._camera = None

    def _controls(self) -> dict:
        frame_us = int(max(1.0 / self._max_fps, self.exposure_s) * 1e6)
        return {
            "AeEnable": False,  # auto exposure would cap or double long exposures
            "AwbEnable": False,
            "ExposureTime": int(self.exposure_s * 1e6),
            "AnalogueGain": float(self.gain),
            "FrameDurationLimits": (frame_us, frame_us),
        }

    def set_controls(self, *, exposure_s: float | None = None, gain: float | None = None) -> None:
        if exposure_s is not None:
            self.exposure_s = min(max(float(exposure_s), self.exposure_limits[0]), self.exposure_limits[1])
        if gain is not None:
            self.gain = min(max(float(gain), self.gain_limits[0]), self.gain_limits[1])
        if self._camera is not None:
            self._camera.set_controls(self._controls())

    def _capture(self):
        """The next frame's pixels and metadata; the request goes back to picamera2 at once."""
        request = self._camera.capture_request()
        try:
            return request.make_array("main"), request.get_metadata()
        finally:
            request.release()

    def capture_preview(self, wake: threading.Event, max_fps: float) -> PreviewFrame | None:
        if max_fps != self._max_fps:
            self._max_fps = max_fps
            self._camera.set_controls(self._controls())
        pixels, metadata = self._capture()
        return PreviewFrame(
            pixels,
            "BGR",
            time.time(),
            metadata.get("ExposureTime", self.exposure_s * 1e6) / 1e6,
            metadata.get("AnalogueGain", self.gain),
        )

    def capture_still(
        self, exposure_s: float, gain: float, cancel: threading.Event, skip_frames: int = 0
    ) -> StillImage:
        self.set_controls(exposure_s=exposure_s, gain=gain)
        # Frames already in the pipeline were exposed with the old controls: let them pass.
        for _ in range(skip_frames + 2):
            if cancel.is_set():
                raise CaptureCancelled("the exposure was cancelled")
            self._camera.capture_request().release()
        if cancel.is_set():
            raise CaptureCancelled("the exposure was cancelled")
        started = time.time()
        pixels, metadata = self._capture()
        return StillImage(
            pixels=pixels,
            pixel_format="BGR",
            linear=None,
            started=started - self.exposure_s,
            exposure_s=metadata.get("ExposureTime", self.exposure_s * 1e6) / 1e6,
            gain=metadata.get("AnalogueGain", self.gain),
            metadata={k: v for k, v in metadata.items() if isinstance(v, int | float | str)},
        )
