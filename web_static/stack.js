// The Stack panel: live stacking of the live view (start, stop, reset, save), what was stacked and
// rejected and why, and the view switch between the live frames and the stack.

import { command, commandShowing } from "./api.js";
import { $ } from "./dom.js";
import { live } from "./live.js";

const REASONS = {
  too_few_stars: "too few stars",
  not_aligned: "not aligned",
  swollen_stars: "swollen stars",
  dimmed: "dimmed (clouds?)",
};

/** The stack's state, from its events or a command's answer. */
export function showStack(state) {
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
  $("stack-status").textContent = `${state.running ? "Stacking" : "Stopped"} · ${parts.join(" · ")}`;
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

async function stackCommand(path) {
  return commandShowing("stack", showStack, $("stack-message"), "POST", path, {});
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
    if (await stackCommand("/api/stack/start")) showView(true); // watching it build is the point
  });
  $("stack-stop").addEventListener("click", () => stackCommand("/api/stack/stop"));
  $("stack-reset").addEventListener("click", () => stackCommand("/api/stack/reset"));
  $("stack-save").addEventListener("click", save);
  $("stack-view").addEventListener("click", () => showView(live.source !== "stack"));
}
