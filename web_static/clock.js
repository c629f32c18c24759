// The Pi's clock against this device's. A Pi has no clock of its own and a field has no network,
// but the observer's phone knows the time: more than 2 s apart, the status bar says so and offers
// to set the Pi's clock from this device (never a clock NTP keeps).

import { api, command } from "./api.js";
import { $ } from "./dom.js";
import { formatDuration } from "./format.js";

const TOLERANCE_MS = 2000;

/** The Pi's clock minus this device's, in ms (the request's round trip halved), and its state. */
async function measure() {
  const sent = Date.now();
  const status = await api("GET", "/api/clock");
  const received = Date.now();
  return { status, offset: status.server_time * 1000 - (sent + received) / 2 };
}

export async function checkClock() {
  let reading;
  try {
    reading = await measure();
  } catch {
    return; // offline: the next connection checks again
  }
  const { status, offset } = reading;
  const pill = $("clock-state");
  const button = $("clock-set");
  const apart = Math.abs(offset) > TOLERANCE_MS;
  pill.hidden = !apart;
  button.hidden = !apart || Boolean(status.synchronized) || status.synchronized === null;
  if (!apart) return;
  const amount = formatDuration(Math.abs(offset) / 1000) || `${(Math.abs(offset) / 1000).toFixed(1)} s`;
  pill.textContent = status.synchronized
    ? `this device's clock is ${amount} off the Pi's (the Pi's is synchronised)`
    : `Pi clock ${amount} ${offset < 0 ? "behind" : "ahead of"} this device`;
  pill.title = status.detail;
}

export function setupClock() {
  $("clock-set").addEventListener("click", async () => {
    // The time when clicked, not when the page was loaded.
    if (await command($("clock-message"), "POST", "/api/clock", { unix_time: Date.now() / 1000 })) checkClock();
  });
}
