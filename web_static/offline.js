// What the page shows when it has lost the server: everything that came from the server is
// marked stale (greyed, not usable) with the time the connection went, and the live view says
// its frame is the last one received. The state is taken afresh on reconnect (socket.js).

import { showExposing } from "./capture.js";
import { $ } from "./dom.js";

const STALE = ["camera-panel", "capture-panel", "session-panel", "mount-panel", "sky-panel", "analysis-panel", "gallery-panel"];
export const connection = { offlineSince: null };

function clock(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }); // 22:14, as observers log times
}

/** The connection is gone: from now on nothing on the page is known to be true. */
export function showOffline() {
  if (connection.offlineSince) return;
  connection.offlineSince = new Date();
  document.documentElement.classList.add("offline");
  for (const id of STALE) $(id).inert = true; // greyed by the style sheet; commands would fail anyway
  showExposing(null); // a countdown would freeze and its Cancel could not reach the server
  $("camera-state").textContent = "camera –";
  $("live-offline").textContent = `Offline since ${clock(connection.offlineSince)}: this is the last frame received.`;
  $("live-offline").hidden = false;
}

/** The text of the connection pill while offline. */
export function offlineText(retrySeconds) {
  return `offline since ${clock(connection.offlineSince)} · reconnecting in ${retrySeconds} s`;
}

export function showOnline() {
  if (!connection.offlineSince) return;
  connection.offlineSince = null;
  document.documentElement.classList.remove("offline");
  for (const id of STALE) $(id).inert = false;
  $("live-offline").hidden = true;
}
