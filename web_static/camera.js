// The camera panel: exposure (a logarithmic slider and a text field taking units), ISO, night
// vision, frame type and file format. A control the user is editing is not overwritten.

import { commandShowing } from "./api.js";
import { showExposing } from "./capture.js";
import { $ } from "./dom.js";
import { formatExposure, parseExposure } from "./format.js";
import { camera } from "./state.js";

const EXPOSURE_FLOOR = 1e-4; // the slider's left end: 100 µs

function exposureRange() {
  return [Math.max(EXPOSURE_FLOOR, camera.limits.exposure[0]), camera.limits.exposure[1]];
}

function sliderToExposure(position) {
  const [low, high] = exposureRange();
  return low * (high / low) ** (position / 1000);
}

function exposureToSlider(seconds) {
  const [low, high] = exposureRange();
  return Math.round((1000 * Math.log(seconds / low)) / Math.log(high / low));
}

/** Show a camera status, leaving alone the control the user is editing right now (unless
 * ``refused``: a value the camera refused goes back to what the camera has). */
export function showCamera(status, refused = false) {
  camera.status = status;
  if (status.limits) {
    camera.limits = { exposure: status.limits.exposure_seconds, iso: status.limits.iso };
    $("iso-input").min = status.limits.iso[0];
    $("iso-input").max = status.limits.iso[1];
  }
  const editing = refused ? null : document.activeElement;
  if (editing !== $("exposure-text")) $("exposure-text").value = formatExposure(status.exposure_seconds);
  if (editing !== $("exposure-slider")) $("exposure-slider").value = exposureToSlider(status.exposure_seconds);
  if (editing !== $("iso-input")) $("iso-input").value = Math.round(status.iso);
  $("gain-text").textContent = `gain ${status.gain.toFixed(2)}`;
  $("nv-mode").checked = status.night_vision_mode;
  if (editing !== $("nv-intensity")) $("nv-intensity").value = status.night_vision_intensity;
  $("nv-value").textContent = `×${status.night_vision_intensity}`;
  $("frame-type").value = status.frame_type;
  $("file-format").value = status.file_format;
  $("save-raw").checked = status.save_raw;
  showExposing(status.exposure);
}

async function setCamera(changes, output) {
  const status = await commandShowing("camera", showCamera, output, "POST", "/api/camera/settings", changes);
  if (!status && camera.status) showCamera(camera.status, true); // put the control back to what the camera has
}

export function setupCamera() {
  const slider = $("exposure-slider");
  slider.addEventListener("input", () => { $("exposure-text").value = formatExposure(sliderToExposure(slider.value)); });
  slider.addEventListener("change", () => setCamera({ exposure_seconds: +sliderToExposure(slider.value).toPrecision(4) }, $("exposure-error")));
  $("exposure-text").addEventListener("change", (event) => {
    const seconds = parseExposure(event.target.value);
    if (!Number.isFinite(seconds) || seconds <= 0) {
      $("exposure-error").textContent = seconds === 0 || /^\s*-/.test(event.target.value)
        ? "exposure: must be positive"
        : "exposure: write a duration such as 30 s, 250 ms, 500 µs or 1/250";
      return;
    }
    setCamera({ exposure_seconds: seconds }, $("exposure-error"));
  });
  $("iso-input").addEventListener("change", (event) => setCamera({ iso: Number(event.target.value) }, $("iso-error")));
  $("nv-mode").addEventListener("change", (event) => setCamera({ night_vision_mode: event.target.checked }, $("nv-error")));
  $("nv-intensity").addEventListener("input", (event) => { $("nv-value").textContent = `×${event.target.value}`; });
  $("nv-intensity").addEventListener("change", (event) => setCamera({ night_vision_intensity: Number(event.target.value) }, $("nv-error")));
  $("frame-type").addEventListener("change", (event) => setCamera({ frame_type: event.target.value }, $("frame-type-error")));
  $("file-format").addEventListener("change", (event) => setCamera({ file_format: event.target.value }, $("file-format-error")));
  $("save-raw").addEventListener("change", (event) => setCamera({ save_raw: event.target.checked }, $("file-format-error")));
}
