// The storage pill in the status bar: free space and the frames it still holds, or why captures
// cannot be saved.

import { api } from "./api.js";
import { $ } from "./dom.js";
import { formatBytes } from "./format.js";

export async function refreshStorage() {
  try {
    const storage = await api("GET", "/api/storage");
    const pill = $("storage-state");
    pill.dataset.state = storage.state;
    pill.title = storage.message;
    pill.textContent = {
      read_only: "captures folder is read-only",
      full: `disk full · ${formatBytes(storage.free)} free`,
      low: `disk nearly full · ${formatBytes(storage.free)} free`,
    }[storage.state] ?? `${formatBytes(storage.free)} free · ~${storage.frames_left} frames`;
  } catch {
    $("storage-state").textContent = "storage –";
  }
}
