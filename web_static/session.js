// The session panel: start a series of frames (the form is remembered by the server), its
// progress, stop, resume an unfinished one, and the session pill in the status bar.

import { api, command, commandShowing } from "./api.js";
import { $ } from "./dom.js";
import { formatHours } from "./format.js";
import { camera, session } from "./state.js";

export function showSession(status) {
  session.status = status;
  const running = Boolean(status.active);
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
  };
}

function fillSessionForm(form) {
  $("session-name").value = form.name || "";
  $("session-frames").value = form.totalImages || 10;
  $("session-tracking").checked = Boolean(form.enableTracking);
  $(form.sessionMode === "timed" ? "session-timed" : "session-rapid").checked = true;
  $("session-hours").value = form.totalTimeHours || 1;
}

export function setupSession() {
  api("GET", "/api/session/config").then(fillSessionForm, () => fillSessionForm({}));
  $("session-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = readSessionForm();
    await command(null, "POST", "/api/session/config", form); // remembered for next time
    const start = { name: form.name, total_images: form.totalImages, enable_tracking: form.enableTracking };
    if (form.sessionMode === "timed") start.total_time_hours = form.totalTimeHours;
    await commandShowing("session", (result) => showSession(result.session_status), $("session-message"), "POST", "/api/session/start", start);
  });
  $("session-stop").addEventListener("click", () => command($("session-message"), "POST", "/api/session/stop"));
  $("session-resume").addEventListener("click", (event) =>
    command($("session-message"), "POST", "/api/session/resume", { name: event.target.dataset.name }));
}
