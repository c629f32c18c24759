// The capture panel: a single capture, its progress and cancel, the last capture's thumbnail,
// and the camera pill in the status bar.

import { api, command } from "./api.js";
import { $ } from "./dom.js";
import { formatExposure } from "./format.js";
import { session } from "./state.js";

export function showExposing(exposure) {
  const box = $("capture-progress-box");
  const exposing = Boolean(exposure);
  box.hidden = !exposing;
  $("cancel-button").hidden = !exposing;
  $("capture-button").disabled = exposing || Boolean(session.status && session.status.active);
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
}
