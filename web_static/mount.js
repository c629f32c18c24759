// The mount panel: sidereal tracking, its speed and direction, and the mount's status.

import { commandShowing } from "./api.js";
import { $ } from "./dom.js";

export function showMount(status) {
  $("tracking-toggle").checked = status.tracking;
  if (document.activeElement !== $("mount-speed")) $("mount-speed").value = status.speed;
  $("mount-direction").value = status.direction ? "cw" : "ccw";
  const error = status.max_timing_error_ms !== undefined ? ` · max step error ${status.max_timing_error_ms} ms` : "";
  $("mount-status").textContent = `${status.status} · ${status.steps} steps${error}`;
}

async function track(start) {
  const body = start
    ? { action: "start", speed: Number($("mount-speed").value), direction: $("mount-direction").value }
    : { action: "stop" };
  await commandShowing("mount", showMount, $("mount-message"), "POST", "/api/mount/tracking", body);
}

export function setupMount() {
  $("tracking-toggle").addEventListener("change", (event) => track(event.target.checked));
  // While tracking, speed and direction change live; otherwise they wait for the next start.
  for (const id of ["mount-speed", "mount-direction"]) {
    $(id).addEventListener("change", () => { if ($("tracking-toggle").checked) track(true); });
  }
}
