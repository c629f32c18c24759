// The capture panel: a single capture, its progress and cancel, the last capture's thumbnail,
// and the camera pill in the status bar.

import { api, command } from "./api.js";
import { confirmAction } from "./confirm.js";
import { $ } from "./dom.js";
import { formatExposure } from "./format.js";
import { session } from "./state.js";

export function showExposing(exposure) {
  const box = $("capture-progress-box");
  const exposing = Boolean(exposure);
  const running = session.status && session.status.active ? session.status : null;
  box.hidden = !exposing;
  // A session's frame is the session's: its Cancel would end the whole session, so the button
  // says that, and asks first.
  $("cancel-button").hidden = !exposing || Boolean(running);
  $("capture-stop-session").hidden = !exposing || !running;
  $("capture-owner").hidden = !running;
  if (running) {
    const frame = Math.min(running.captured_images + 1, running.total_images);
    $("capture-owner").textContent = `Session ${running.name}: frame ${frame} of ${running.total_images}`;
  }
  $("capture-button").disabled = exposing || Boolean(running);
  if (exposing) {
    $("capture-progress").value = exposure.progress;
    $("capture-countdown").textContent = `${exposure.remaining.toFixed(1)} s`;
    $("camera-state").textContent = `exposing ${formatExposure(exposure.exposure_seconds)}`;
  } else {
    $("camera-state").textContent = "camera idle";
  }
}

export function showLastCapture(capture) {
  const holder = $("last-capture");
  holder.replaceChildren();
  const link = document.createElement("a");
  link.href = capture.url;
  link.target = "_blank";
  const image = document.createElement("img");
  image.src = `${capture.url}?thumb=1`;
  image.alt = `last capture ${capture.file}`;
  link.append(image);
  holder.append(link);
}

export function setupCapture() {
  $("capture-button").addEventListener("click", async () => {
    $("capture-message").textContent = "";
    try {
      await api("POST", "/api/camera/capture");
    } catch (error) {
      $("capture-message").textContent = error.code === "CAPTURE_CANCELLED" ? "Cancelled: nothing was saved." : error.message;
    }
  });
  $("cancel-button").addEventListener("click", () => command($("capture-message"), "POST", "/api/camera/capture/cancel"));
  $("capture-stop-session").addEventListener("click", async () => {
    const name = session.status && session.status.name;
    if (!(await confirmAction(`Stop the session ${name}? The frame being taken is dropped; the frames saved stay, and it can be resumed.`, "Stop session"))) return;
    command($("capture-message"), "POST", "/api/session/stop");
  });
}
