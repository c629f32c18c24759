// The Stack panel: live stacking of the live view or a session's frames (start, stop, reset, save),
// what was stacked and rejected and why, the view switch between the live frames and the stack, and
// the master darks, flats and bias (build one from a session, delete).

import { api, command, commandShowing } from "./api.js";
import { $, chooseIfListed, fillSelect } from "./dom.js";
import { live } from "./live.js";

const REASONS = {
  too_few_stars: "too few stars",
  not_aligned: "not aligned",
  swollen_stars: "swollen stars",
  dimmed: "dimmed (clouds?)",
  settings_changed: "other settings",
  unreadable: "unreadable",
  not_calibrated: "masters do not fit",
};

let shown = null; // the stack's state last shown

/** The stack's state, from its events or a command's answer. */
export function showStack(state) {
  shown = state;
  $("stack-start").disabled = state.running;
  $("stack-stop").disabled = !state.running;
  $("stack-save").disabled = !state.stacked;
  const rejections = Object.entries(state.rejections || {})
    .map(([reason, count]) => `${REASONS[reason] || reason} ${count}`)
    .join(", ");
  const parts = [
    `${state.stacked} stacked`,
    `${state.rejected} rejected${rejections ? ` (${rejections})` : ""}`,
    `${state.skipped} skipped`,
    `${state.integration_s.toFixed(1)} s integration`,
  ];
  if (state.snr_gain) parts.push(`noise ${state.snr_gain.toFixed(1)}× lower than one frame`);
  let doing = state.running ? "Stacking" : "Stopped";
  if (state.source === "session") {
    doing = `${state.running ? "Stacking" : state.done ? "Stacked" : "Stopped"} session ${state.session}`;
    if (state.running) parts.unshift(`${state.waiting} waiting`);
  }
  $("stack-status").textContent = `${doing} · ${parts.join(" · ")}${state.error ? ` · ${state.error}` : ""}`;
  if (state.running) showSource(state.source === "session" ? state.session : "");
  const last = state.last;
  $("stack-last").textContent = last && last.accepted === false ? `Last frame rejected: ${last.message}` : "";
  showCalibration(state.calibration);
}

/** Which master frames the stack takes off its frames, and what it looked for in vain. */
function showCalibration(used) {
  const line = $("stack-calibration");
  if (!used) {
    line.textContent = "";
    return;
  }
  const dark = used.dark ? `dark ${used.dark}` : used.bias ? `bias ${used.bias} (no dark)` : "no dark";
  const flat = used.flat ? `flat ${used.flat}` : "no flat";
  const missing = used.missing && used.missing.length ? ` · ${used.missing.join("; ")}` : "";
  line.textContent = `Calibration: ${dark}, ${flat}${missing}`;
}

async function stackCommand(path, body = {}) {
  return commandShowing("stack", showStack, $("stack-message"), "POST", path, body);
}

/** What the stack can take: the live view, or a session of light frames (newest first). */
export async function refreshStackSources() {
  let sessions;
  try {
    ({ sessions } = await api("GET", "/api/sessions"));
  } catch {
    return; // offline: the lists stay as they were
  }
  const lights = sessions.filter((s) => (s.frame_type || "light") === "light" && (s.captured_images || s.status === "running"));
  fillSelect($("stack-source"), [["", "the live view"], ...lights.map((s) => [s.folder, sessionLabel(s)])]);
  if (shown && shown.running) showSource(shown.source === "session" ? shown.session : "");
  const calibration = sessions.filter((s) => ["dark", "flat", "bias"].includes(s.frame_type) && s.captured_images && s.status !== "running");
  fillSelect($("calibration-session"), calibration.map((s) => [s.folder, `${s.name}: ${s.captured_images} ${s.frame_type}s`]));
  $("calibration-build").disabled = !calibration.length;
}

function sessionLabel(s) {
  return `session ${s.name} (${s.captured_images} frames${s.status === "running" ? ", running" : ""})`;
}

/** The source select shows what a running stack takes (a page opened later would else offer the
 * live view, and its Start would clear a session's stack for it). */
function showSource(folder) {
  chooseIfListed($("stack-source"), folder);
}

/** The masters on the server, each with its delete button. */
export async function refreshMasters() {
  let masters;
  try {
    ({ masters } = await api("GET", "/api/calibration"));
  } catch {
    return;
  }
  const items = masters.map((m) => {
    const item = document.createElement("li");
    const fits = [`${m.width}x${m.height}`, m.kind === "dark" ? `${m.exposure_s} s` : null, m.kind === "flat" ? null : `gain ${m.gain}`];
    if (m.temperature !== null && m.kind === "dark") fits.push(`${m.temperature} °C`);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete ${m.name}`);
    remove.addEventListener("click", async () => {
      if (await command($("calibration-message"), "DELETE", `/api/calibration/${encodeURIComponent(m.name)}`)) refreshMasters();
    });
    item.append(`${m.kind} ${m.name}: ${fits.filter(Boolean).join(", ")}, ${m.frames} frames (${m.method}) `, remove);
    return item;
  });
  $("calibration-masters").replaceChildren(...items);
  if (!items.length) $("calibration-masters").textContent = "None yet: take a session of darks (or flats, bias) as FITS, then build.";
}

/** A master being built (topic `calibration`): its progress, then what it became. */
export function showCalibrationEvent(event, data) {
  if (event === "calibration_progress") {
    const percent = data.rows ? Math.round((100 * data.rows_done) / data.rows) : 0;
    $("calibration-progress").textContent = `Building from ${data.session}: ${percent}%`;
  } else if (event === "calibration_done") {
    $("calibration-progress").textContent = `Built ${data.name} from ${data.frames} frames.`;
    refreshMasters();
  }
}

async function buildMaster() {
  const button = $("calibration-build");
  button.disabled = true;
  const body = { session: $("calibration-session").value, method: $("calibration-method").value };
  const built = await command($("calibration-message"), "POST", "/api/calibration", body);
  button.disabled = !$("calibration-session").value;
  if (built) $("calibration-progress").textContent = `Built ${built.name} from ${built.frames} frames.`;
}

async function save() {
  const saved = await command($("stack-message"), "POST", "/api/stack/save", {});
  if (saved) {
    const link = document.createElement("a");
    link.href = saved.url;
    link.textContent = saved.file;
    link.target = "_blank";
    $("stack-saved").replaceChildren("Saved ", link, ` and ${saved.fits}`);
  }
}

function showView(stack) {
  live.source = stack ? "stack" : "live";
  $("stack-view").setAttribute("aria-pressed", String(stack));
  $("stretch-toggle").disabled = stack; // the stack is always stretched
  live.start();
}

export function setupStack() {
  $("stack-start").addEventListener("click", async () => {
    const session = $("stack-source").value;
    const body = session ? { source: "session", session } : { source: "preview" };
    if (await stackCommand("/api/stack/start", body)) showView(true); // watching it build is the point
  });
  $("calibration-build").addEventListener("click", buildMaster);
  $("stack-panel").addEventListener("toggle", () => {
    if ($("stack-panel").open) {
      refreshStackSources();
      refreshMasters();
    }
  });
  $("stack-stop").addEventListener("click", () => stackCommand("/api/stack/stop"));
  $("stack-reset").addEventListener("click", () => stackCommand("/api/stack/reset"));
  $("stack-save").addEventListener("click", save);
  $("stack-view").addEventListener("click", () => showView(live.source !== "stack"));
}
