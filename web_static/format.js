// Numbers as the page writes them, and exposures as the user may type them.

export function formatExposure(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  if (seconds < 1e-3) return `${Math.round(seconds * 1e6)} µs`;
  if (seconds < 1) return `${+(seconds * 1e3).toPrecision(3)} ms`;
  if (seconds < 60) return `${+seconds.toPrecision(4)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds - minutes * 60);
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}

/** "30", "30 s", "250ms", "500 µs", "1/250", "2 min" -> seconds (NaN when it is not a duration). */
export function parseExposure(text) {
  const value = text.trim().toLowerCase().replace(",", ".");
  const fraction = value.match(/^1\s*\/\s*(\d+(?:\.\d+)?)\s*s?$/);
  if (fraction) return 1 / Number(fraction[1]);
  const match = value.match(/^(\d+(?:\.\d+)?|\.\d+)\s*(µs|us|ms|s|sec|m|min)?$/);
  if (!match) return NaN;
  const scale = { "µs": 1e-6, us: 1e-6, ms: 1e-3, s: 1, sec: 1, m: 60, min: 60 }[match[2] || "s"];
  return Number(match[1]) * scale;
}

export function formatBytes(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${units[unit]}`;
}

export function formatHours(hours) {
  if (!Number.isFinite(hours) || hours <= 0) return "";
  const minutes = Math.round(hours * 60);
  if (minutes < 1) return "under a minute left";
  return minutes < 60 ? `${minutes} min left` : `${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

/** A duration in seconds as "42 s", "5 min 3 s" or "2 h 5 min" ("" when there is none). */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return "";
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return whole % 60 ? `${minutes} min ${whole % 60} s` : `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}
