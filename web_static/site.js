// Where the telescope stands (for altitudes, and later polar alignment): from the configuration,
// typed in, or this device's location with the observer's consent. Browsers give a location only
// to secure pages (https, or localhost): on http://<the Pi> the page says so and asks for it typed.

import { api, command } from "./api.js";
import { $ } from "./dom.js";

function degrees(value, positive, negative) {
  return `${Math.abs(value).toFixed(4)}° ${value >= 0 ? positive : negative}`;
}

const SOURCES = { config: "from the configuration", device: "from a device's location", typed: "typed in" };

export function showSite(site) {
  $("site-text").textContent = site.known
    ? `${degrees(site.latitude, "N", "S")}, ${degrees(site.longitude, "E", "W")} (${SOURCES[site.source] || site.source})`
    : "not set: altitudes need it";
  for (const [id, value] of [["site-latitude", site.latitude], ["site-longitude", site.longitude]]) {
    if (document.activeElement !== $(id) && value !== null) $(id).value = value;
  }
}

export async function refreshSite() {
  try {
    showSite(await api("GET", "/api/site"));
  } catch { /* the next connection tries again */ }
}

async function setSite(body) {
  const site = await command($("site-message"), "POST", "/api/site", body);
  if (site) showSite(site);
}

export function setupSite() {
  const locate = $("site-locate");
  if (!window.isSecureContext || !navigator.geolocation) {
    locate.disabled = true;
    locate.title = "browsers give their location only to https or localhost pages: type it in";
    $("site-note").textContent = "This device's location is only offered to https or localhost pages: type the site in.";
  }
  locate.addEventListener("click", () => {
    $("site-message").textContent = "";
    navigator.geolocation.getCurrentPosition(
      (position) => setSite({ latitude: position.coords.latitude, longitude: position.coords.longitude, source: "device" }),
      (error) => { $("site-message").textContent = `no location from this device: ${error.message || "refused"}`; },
      { enableHighAccuracy: false, timeout: 20000, maximumAge: 600000 },
    );
  });
  $("site-form").addEventListener("submit", (event) => {
    event.preventDefault();
    // An empty field is sent as missing (not 0, a place in the Atlantic): the server says so.
    const read = (id) => ($(id).value.trim() === "" ? null : Number($(id).value));
    setSite({ latitude: read("site-latitude"), longitude: read("site-longitude"), source: "typed" });
  });
}
