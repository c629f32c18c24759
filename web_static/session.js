// The session panel: start a series of frames (the form is remembered by the server), its
// progress, stop, resume an unfinished one, and the session pill in the status bar.

import { api, command, commandShowing } from "./api.js";
import { $ } from "./dom.js";
import { formatDuration, formatHours } from "./format.js";
import { camera, session } from "./state.js";

const ENDINGS = {
  completed: "completed",
  stopped: "stopped",
  error: "failed",
  interrupted: "was interrupted (the server stopped)",
};

/** How the last session ended, said until the observer dismisses it (remembered on this device). */
function showEnded(status) {
  const box = $("session-ended");
  const key = `${status.folder}|${status.status}|${status.captured_images}`;
  if (!(status.status in ENDINGS) || status.active || localStorage.getItem("wanda.sessionDismissed") === key) {
    box.hidden = true;
    return;
  }
  const took = formatDuration(status.elapsed_time);
  const frames = `${status.captured_images} of ${status.total_images} frames${took ? ` in ${took}` : ""}`;
  const where = status.captured_images ? ` Saved in ${status.session_dir}.` : "";
  const reason = status.error ? ` ${status.error.replace(/\.$/, "")}.` : "";
  $("session-ended-text").textContent = `${status.name} ${ENDINGS[status.status]}: ${frames}.${reason}${where}`;
  box.dataset.state = status.status;
  box.dataset.key = key;
  box.dataset.folder = status.folder;
  $("session-ended-show").hidden = !status.captured_images;
  box.hidden = false;
}

export function showSession(status) {
  session.status = status;
  const running = Boolean(status.active);
  showEnded(status);
  $("session-form").hidden = running;
  $("session-running").hidden = !running;
  const pill = $("session-state");
  if (running) {
    const captured = status.captured_images;
    $("session-summary").textContent = `${status.name}: ${captured} of ${status.total_images} frames${status.late ? " (running late)" : ""}. ${formatHours(status.remaining_time)}`;
    $("session-progress").value = status.progress;
    pill.hidden = false;
    pill.textContent = `${status.name} ${captured}/${status.total_images}`;
  } else {
    pill.hidden = true;
    refreshResumable();
  }
  $("capture-button").disabled = running || Boolean(camera.status && camera.status.exposure);
}

export async function refreshResumable() {
  const resume = $("session-resume");
  try {
    const { sessions } = await api("GET", "/api/sessions");
    const candidate = sessions.find((s) => ["interrupted", "stopped", "error"].includes(s.status) && s.captured_images < s.total_images);
    resume.hidden = !candidate;
    if (candidate) {
      resume.textContent = `Resume ${candidate.name} (${candidate.captured_images}/${candidate.total_images})`;
      resume.dataset.name = candidate.folder;
    }
  } catch {
    resume.hidden = true;
  }
}

function readSessionForm() {
  const mode = document.querySelector('input[name="sessionMode"]:checked')?.value || "rapid";
  return {
    name: $("session-name").value.trim(),
    totalImages: Number($("session-frames").value),
    enableTracking: $("session-tracking").checked,
    useCurrentSettings: true,
    sessionMode: mode,
    totalTimeHours: Number($("session-hours").value) || 1,
    ditherEvery: Number($("session-dither-every").value) || 0,
    ditherSteps: Number($("session-dither-steps").value) || 3,
  };
}

function fillSessionForm(form) {
  $("session-name").value = form.name || "";
  $("session-frames").value = form.totalImages || 10;
  $("session-tracking").checked = Boolean(form.enableTracking);
  $(form.sessionMode === "timed" ? "session-timed" : "session-rapid").checked = true;
  $("session-hours").value = form.totalTimeHours || 1;
  $("session-dither-every").value = form.ditherEvery || 0;
  $("session-dither-steps").value = form.ditherSteps || 3;
}

export function setupSession() {
  api("GET", "/api/session/config").then(fillSessionForm, () => fillSessionForm({}));
  $("session-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = readSessionForm();
    await command(null, "POST", "/api/session/config", form); // remembered for next time
    const start = { name: form.name, total_images: form.totalImages, enable_tracking: form.enableTracking };
    if (form.sessionMode === "timed") start.total_time_hours = form.totalTimeHours;
    if (form.ditherEvery > 0) start.dither = { every: form.ditherEvery, max_steps: form.ditherSteps };
    await commandShowing("session", (result) => showSession(result.session_status), $("session-message"), "POST", "/api/session/start", start);
  });
  $("session-stop").addEventListener("click", () => command($("session-message"), "POST", "/api/session/stop"));
  $("session-ended-dismiss").addEventListener("click", () => {
    localStorage.setItem("wanda.sessionDismissed", $("session-ended").dataset.key);
    $("session-ended").hidden = true;
  });
  $("session-ended-show").addEventListener("click", () => {
    const select = $("gallery-folder");
    select.value = $("session-ended").dataset.folder;
    select.dispatchEvent(new Event("change"));
    $("gallery-panel").scrollIntoView({ behavior: "smooth" });
  });
  $("session-resume").addEventListener("click", (event) =>
    command($("session-message"), "POST", "/api/session/resume", { name: event.target.dataset.name }));
}
