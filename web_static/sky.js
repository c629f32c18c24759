// The sky panel: where the camera points (a plate solve, once or following the telescope), what is
// in the frame (labelled markers over the live view), and a target: its altitude now, how far it is
// from the solved centre in words, and an arrow on the live view towards it (a marker when it is in
// the frame). The solution comes from `POST /api/solve` or, while following, the `solve` topic; the
// markers from `GET /api/objects?in_view=1`, in the solved frame's pixels, scaled to the image shown.

import { api, command } from "./api.js";
import { $ } from "./dom.js";
import { pictureBox } from "./live.js";

const TARGET_KEY = "wanda.target"; // {name, ra, dec}: a reload keeps the target
const MAX_MARKERS = 30; // the brightest of what is in the frame (a wide field holds hundreds)
const MIN_MARKER_PX = 14; // a ring the eye finds, however small the object
const TARGET_REFRESH_MS = 60000; // the target's altitude now, again every minute
const ARROW_INSET_PX = 30; // the arrow's centre from the edge of the view

const sky = {
  solution: null, // the newest solved result shown
  objects: null, // the last in_view answer: {frame, objects, total}
  objectsAsked: 0, // answers to an older question are dropped
  target: null, // {name, ra, dec} and, once looked up, the server's answer
  subscribe: async () => null, // socket.js's (passed in by app.js: the socket imports this module)
};

const following = () => $("follow-toggle").getAttribute("aria-pressed") === "true";
const labelled = () => $("labels-toggle").getAttribute("aria-pressed") === "true";
const radians = (degrees) => (degrees * Math.PI) / 180;
const pad = (value, digits = 2) => String(value).padStart(digits, "0");
const signed = (value, digits) => `${value < 0 ? "−" : "+"}${Math.abs(value).toFixed(digits)}`;

function clock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}

/** 83.8290 -> "5h 35m 19.0s" */
export function formatRa(degrees) {
  let tenths = Math.round((((degrees % 360) + 360) % 360) * 2400); // tenths of a second of time
  if (tenths >= 864000) tenths -= 864000;
  const hours = Math.floor(tenths / 36000);
  const minutes = Math.floor((tenths % 36000) / 600);
  const seconds = (tenths % 600) / 10;
  return `${hours}h ${pad(minutes)}m ${pad(seconds.toFixed(1), 4)}s`;
}

/** -5.3914 -> "−5° 23′ 29″" */
export function formatDec(degrees) {
  const total = Math.round(Math.abs(degrees) * 3600);
  const sign = degrees < 0 && total ? "−" : "+";
  return `${sign}${Math.floor(total / 3600)}° ${pad(Math.floor((total % 3600) / 60))}′ ${pad(total % 60)}″`;
}

/** How far (ra, dec) is from the centre: east-west along the sky (RA difference times the cosine
 * of the mean declination; east is increasing RA) and north-south, in degrees. */
export function offset(centre, ra, dec) {
  const dRa = ((((ra - centre.ra) % 360) + 540) % 360) - 180;
  return { east: dRa * Math.cos(radians((dec + centre.dec) / 2)), north: dec - centre.dec, dRa };
}

function offsetWords({ east, north }) {
  return `${Math.abs(east).toFixed(1)}° ${east >= 0 ? "east" : "west"}, ${Math.abs(north).toFixed(1)}° ${north >= 0 ? "north" : "south"}`;
}

// -- the solution ---------------------------------------------------------------------------------

/** A solve's result, from the Solve button, the `solve` topic or the server's latest. */
export function showSolution(result) {
  if (!result || result.solved === null) return; // nothing solved yet
  if (!result.solved) { // the last solution stays; the failure is said beside the Solve button
    $("solve-message").textContent = result.message ? `not solved: ${result.message}` : "not solved";
    return;
  }
  if (sky.solution && result.time < sky.solution.time) return; // an older answer than what is shown
  sky.solution = result;
  $("solve-message").textContent = "";
  const status = $("solve-status");
  status.dataset.time = String(result.time);
  status.textContent = `Solved at ${clock(result.time)} in ${result.seconds.toFixed(2)} s${result.hint ? ` (${result.hint === "blind" ? "blind" : `${result.hint} hint`})` : ""}`;
  $("solve-figures").hidden = false;
  $("solve-centre").textContent = `${formatRa(result.ra)} ${formatDec(result.dec)}`;
  $("solve-degrees").textContent = `${result.ra.toFixed(4)}°, ${signed(result.dec, 4)}°`;
  const roll = Number(result.roll.toFixed(1)) % 360; // 359.99 is 0.0, not 360.0
  $("solve-roll").textContent = `${roll.toFixed(1)}°${result.mirrored ? " (mirrored)" : ""}`;
  $("solve-scale").textContent = `${result.scale.toFixed(2)}″/px`;
  $("solve-field").textContent = `${result.field_deg[0].toFixed(2)}° × ${result.field_deg[1].toFixed(2)}°`;
  $("solve-matched").textContent = `${result.matched} of ${result.stars}`;
  $("solve-seconds").textContent = `${result.seconds.toFixed(2)} s`;
  showOffset();
  if (labelled()) refreshObjects();
  else drawOverlay();
}

async function solveOnce() {
  const button = $("solve-button");
  button.disabled = true;
  button.textContent = "Solving…";
  try {
    showSolution(await command($("solve-message"), "POST", "/api/solve", {}));
  } finally {
    button.disabled = false;
    button.textContent = "Solve";
  }
}

/** Follow: the server solves each new frame while this page listens to the `solve` topic. */
async function setFollow(on) {
  const toggle = $("follow-toggle");
  toggle.setAttribute("aria-pressed", String(on));
  if (on) {
    // Listening first: another page turning Follow off meanwhile then sees this one listen.
    await sky.subscribe();
    if (!(await command($("solve-message"), "POST", "/api/solve", { continuous: true }))) {
      toggle.setAttribute("aria-pressed", "false");
      await sky.subscribe();
    }
  } else {
    await sky.subscribe(); // without the solve topic, then continuous mode off unless another page follows
    const answer = await command($("solve-message"), "POST", "/api/solve", { continuous: false });
    if (answer && answer.listeners > 0) await command($("solve-message"), "POST", "/api/solve", { continuous: true });
  }
}

/** The server's latest solution, when the page connects (a reload keeps the panel and the arrow). */
export async function refreshSolution() {
  try {
    showSolution(await api("GET", "/api/solve"));
  } catch { /* the next connection tries again */ }
}

/** A new connection (the server may have restarted and forgotten continuous mode): follow again. */
export function resumeFollow() {
  if (following()) command($("solve-message"), "POST", "/api/solve", { continuous: true });
}

// -- what is in the frame ---------------------------------------------------------------------------

async function refreshObjects() {
  const asked = ++sky.objectsAsked;
  let answer = null;
  let problem = "";
  if (!sky.solution) { // not asked: the server would answer 404 (a console error) before its first solve
    $("labels-note").textContent = "Solve first: the labels come from the solution.";
    drawOverlay();
    return;
  }
  try {
    answer = await api("GET", "/api/objects?in_view=1");
  } catch (error) {
    problem = error.message;
  }
  if (asked !== sky.objectsAsked || !labelled()) return;
  sky.objects = answer;
  $("labels-message").textContent = problem;
  if (answer) {
    const shown = Math.min(answer.objects.length, MAX_MARKERS);
    $("labels-note").textContent = shown < answer.total ? `${shown} of ${answer.total} objects in the frame labelled (the brightest)` : `${answer.total} object${answer.total === 1 ? "" : "s"} in the frame`;
  }
  drawOverlay();
}

function setLabels(on) {
  $("labels-toggle").setAttribute("aria-pressed", String(on));
  sky.objectsAsked += 1; // an answer on its way is for the old state
  if (on) {
    refreshObjects();
  } else {
    sky.objects = null;
    $("labels-message").textContent = "";
    $("labels-note").textContent = "";
    drawOverlay();
  }
}

/** Screen directions of north and east at the frame's centre, per pixel (from the WCS's CD matrix). */
function axes(wcs) {
  const [[a, b], [c, d]] = wcs.cd;
  const determinant = a * d - b * c;
  return { north: [-b / determinant, a / determinant], east: [d / determinant, -c / determinant] };
}

/** A target's place in the solved frame (0-based pixels; null beyond 90° from the centre) and the
 * direction towards it (pixels, any length) from the frame's centre. */
function project(wcs, ra, dec) {
  const [ra0, dec0] = wcs.crval.map(radians);
  const dRa = radians(ra) - ra0;
  const d = radians(dec);
  const xi = Math.cos(d) * Math.sin(dRa);
  const eta = Math.cos(dec0) * Math.sin(d) - Math.sin(dec0) * Math.cos(d) * Math.cos(dRa);
  const cosC = Math.sin(dec0) * Math.sin(d) + Math.cos(dec0) * Math.cos(d) * Math.cos(dRa);
  const [[a, b], [c, e]] = wcs.cd;
  const determinant = a * e - b * c;
  const toPixels = (x, y) => [(e * x - b * y) / determinant, (a * y - c * x) / determinant];
  const direction = toPixels((xi * 180) / Math.PI, (eta * 180) / Math.PI);
  if (cosC <= 0.01) return { place: null, direction };
  const [u, v] = toPixels((xi * 180) / Math.PI / cosC, (eta * 180) / Math.PI / cosC);
  return { place: [u + wcs.crpix[0] - 1, v + wcs.crpix[1] - 1], direction };
}

function markerElement(name, className, x, y, width, height, angle) {
  const marker = document.createElement("div");
  marker.className = className;
  marker.dataset.name = name;
  marker.style.left = `${x}px`;
  marker.style.top = `${y}px`;
  const ring = document.createElement("div");
  ring.className = "sky-ring";
  ring.style.width = `${width}px`;
  ring.style.height = `${height}px`;
  ring.style.transform = `translate(-50%, -50%) rotate(${angle}deg)`;
  const label = document.createElement("span");
  label.className = "sky-label";
  label.textContent = name;
  const reach = Math.max(width, height) / 2 * Math.SQRT1_2; // up and to the right of the ring
  label.style.left = `${reach + 2}px`;
  label.style.top = `${-reach - 2}px`;
  marker.append(ring, label);
  return marker;
}

/** The markers over the live view: the objects in the frame (Labels) and the target when it is in
 * it, placed from the solved frame's pixels on the picture as it is shown (fit or 1:1). */
function drawOverlay() {
  const overlay = $("sky-overlay");
  const box = pictureBox();
  overlay.replaceChildren();
  const solution = sky.solution;
  const objects = labelled() ? sky.objects : null;
  if (!box || (!objects && !(sky.target && solution))) {
    overlay.hidden = true;
    drawPointer();
    return;
  }
  overlay.hidden = false;
  Object.assign(overlay.style, { left: `${box.left}px`, top: `${box.top}px`, width: `${box.width}px`, height: `${box.height}px` });
  if (objects) {
    const { width, height } = objects.frame;
    const sx = box.width / width;
    const sy = box.height / height;
    const { north, east } = solution ? axes(solution.wcs) : { north: [0, -1], east: [-1, 0] };
    for (const item of objects.objects.slice(0, MAX_MARKERS)) {
      const [major, minor] = item.size_arcmin;
      const majorPx = item.size_px * sx;
      const ellipse = minor && major && item.position_angle !== null; // else a circle: no orientation known
      const minorPx = ellipse ? (majorPx * minor) / major : majorPx;
      let angle = 0;
      if (ellipse) { // the major axis at the position angle (east of north), on the screen
        const pa = radians(item.position_angle);
        const nx = Math.hypot(...north);
        const ex = Math.hypot(...east);
        const dx = (Math.cos(pa) * north[0]) / nx + (Math.sin(pa) * east[0]) / ex;
        const dy = (Math.cos(pa) * north[1]) / nx + (Math.sin(pa) * east[1]) / ex;
        angle = (Math.atan2(dy * sy, dx * sx) * 180) / Math.PI;
      }
      overlay.append(markerElement(item.name, "sky-marker", (item.x + 0.5) * sx, (item.y + 0.5) * sy,
        Math.max(majorPx, MIN_MARKER_PX), Math.max(minorPx, MIN_MARKER_PX), angle));
    }
  }
  if (sky.target && solution) {
    const [width, height] = solution.wcs.image_size;
    const { place } = project(solution.wcs, sky.target.ra, sky.target.dec);
    if (place && place[0] >= -0.5 && place[0] <= width - 0.5 && place[1] >= -0.5 && place[1] <= height - 0.5) {
      const sx = box.width / width;
      const sy = box.height / height;
      const marker = markerElement(sky.target.name, "sky-marker target-marker", (place[0] + 0.5) * sx, (place[1] + 0.5) * sy, 28, 28, 0);
      marker.querySelector(".sky-label").textContent = `${sky.target.name} (target)`;
      overlay.append(marker);
    }
  }
  drawPointer();
}

/** The arrow towards the target, at the edge of the visible view, when the target is not in sight. */
function drawPointer() {
  const arrow = $("target-arrow");
  const solution = sky.solution;
  const box = pictureBox();
  if (!sky.target || !solution || !box) {
    arrow.hidden = true;
    return;
  }
  const viewport = $("viewport");
  const layer = $("sky-pointer").getBoundingClientRect();
  const outer = viewport.getBoundingClientRect();
  // The visible part of the view, in the pointer layer's coordinates.
  const left = outer.left + viewport.clientLeft - layer.left;
  const top = outer.top + viewport.clientTop - layer.top;
  const visible = { left, top, right: left + viewport.clientWidth, bottom: top + viewport.clientHeight };
  const [width, height] = solution.wcs.image_size;
  const sx = box.width / width;
  const sy = box.height / height;
  // The picture's origin in the layer: the box is in the viewport's scrolled coordinates.
  const originX = left + box.left - viewport.scrollLeft;
  const originY = top + box.top - viewport.scrollTop;
  const { place, direction } = project(solution.wcs, sky.target.ra, sky.target.dec);
  const centre = [(visible.left + visible.right) / 2, (visible.top + visible.bottom) / 2];
  let dx;
  let dy;
  if (place) {
    const x = originX + (place[0] + 0.5) * sx;
    const y = originY + (place[1] + 0.5) * sy;
    if (x >= visible.left && x <= visible.right && y >= visible.top && y <= visible.bottom) {
      arrow.hidden = true; // in sight: its marker shows where
      return;
    }
    [dx, dy] = [x - centre[0], y - centre[1]];
  } else {
    [dx, dy] = [direction[0] * sx, direction[1] * sy];
  }
  const length = Math.hypot(dx, dy) || 1;
  [dx, dy] = [dx / length, dy / length];
  const halfWidth = Math.max((visible.right - visible.left) / 2 - ARROW_INSET_PX, 1);
  const halfHeight = Math.max((visible.bottom - visible.top) / 2 - ARROW_INSET_PX, 1);
  const reach = Math.min(Math.abs(dx) > 1e-9 ? halfWidth / Math.abs(dx) : Infinity, Math.abs(dy) > 1e-9 ? halfHeight / Math.abs(dy) : Infinity);
  arrow.hidden = false;
  arrow.style.left = `${centre[0] + dx * reach}px`;
  arrow.style.top = `${centre[1] + dy * reach}px`;
  arrow.querySelector(".target-arrow-head").style.transform = `rotate(${(Math.atan2(dy, dx) * 180) / Math.PI}deg)`;
  const label = arrow.querySelector(".target-arrow-label");
  label.textContent = sky.target.name;
  label.style.left = `${20 - dx * 46}px`; // inside the view, behind the arrow
  label.style.top = `${14 - dy * 34}px`;
  arrow.setAttribute("aria-label", `towards ${sky.target.name}: ${$("target-offset").textContent}`);
}

// -- the target -----------------------------------------------------------------------------------

function showOffset() {
  const text = $("target-offset");
  const target = sky.target;
  if (!target) return;
  const solution = sky.solution;
  if (!solution) {
    text.textContent = "Solve to see how far it is from where the camera points.";
    $("target-delta").textContent = "";
  } else {
    const away = offset(solution, target.ra, target.dec);
    const [width, height] = solution.wcs.image_size;
    const { place } = project(solution.wcs, target.ra, target.dec);
    const inFrame = place && place[0] >= -0.5 && place[0] <= width - 0.5 && place[1] >= -0.5 && place[1] <= height - 0.5;
    text.textContent = `${inFrame ? "In the frame: " : ""}${offsetWords(away)} of the centre`;
    const dRaMinutes = Math.round((Math.abs(away.dRa) / 15) * 60);
    $("target-delta").textContent = `RA ${away.dRa < 0 ? "−" : "+"}${Math.floor(dRaMinutes / 60)}h ${pad(dRaMinutes % 60)}m, Dec ${signed(target.dec - solution.dec, 1)}°`;
  }
  drawOverlay();
}

function showTarget() {
  const target = sky.target;
  $("target-box").hidden = !target;
  if (!target) {
    drawOverlay();
    return;
  }
  const found = target.found;
  const names = found && found.object.common_names.length ? ` · ${found.object.common_names[0]}` : "";
  $("target-name").textContent = `${target.name}${names}`;
  const object = found && found.object;
  $("target-altitude").textContent = !object
    ? ""
    : object.altitude === null
      ? "altitude unknown"
      : `altitude ${object.altitude.toFixed(1)}°, azimuth ${object.azimuth.toFixed(0)}° at ${clock(found.time)}`;
  $("target-warning").textContent = (found && found.warning) || "";
  showOffset();
}

/** Look a name up; on success it becomes the target (kept in this browser), else the server's
 * message and its suggestions show beside the box. */
async function findTarget(query) {
  const message = $("target-message");
  const suggestions = $("target-suggestions");
  message.textContent = "";
  suggestions.replaceChildren();
  suggestions.hidden = true;
  if (!query.trim()) {
    message.textContent = "type a name: M31, NGC 7000, Orion Nebula";
    return;
  }
  try {
    setTarget(await api("GET", `/api/objects?q=${encodeURIComponent(query.trim())}`));
  } catch (error) {
    message.textContent = error.message;
    const names = (error.data && error.data.suggestions) || [];
    if (names.length) {
      suggestions.append(...names.map((name) => {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = name;
        button.addEventListener("click", () => { $("target-query").value = name; findTarget(name); });
        return button;
      }));
      suggestions.hidden = false;
    }
  }
}

function setTarget(found) {
  const { name, ra, dec } = found.object;
  sky.target = { name, ra, dec, found };
  localStorage.setItem(TARGET_KEY, JSON.stringify({ name, ra, dec }));
  showTarget();
}

function clearTarget() {
  sky.target = null;
  localStorage.removeItem(TARGET_KEY);
  $("target-message").textContent = "";
  showTarget();
}

/** The target's altitude now (and its warning) again: on connect, when the site changes, each minute. */
export async function refreshTarget() {
  const target = sky.target;
  if (!target) return;
  try {
    const found = await api("GET", `/api/objects?q=${encodeURIComponent(target.name)}`);
    if (sky.target === target) {
      target.found = found;
      showTarget();
    }
  } catch { /* offline, or the name is no longer known: the target stays as it was */ }
}

// -- centring the target in RA -------------------------------------------------------------------

/** A centring's state (POST /api/mount/center's answer, or a `mount` center_* event): its rounds as
 * they go, then how it ended and what to do with Dec by hand. */
export function showCentring(state) {
  const status = $("centre-status");
  const running = state.running === true;
  $("target-centre").disabled = running;
  $("centre-stop").hidden = !running;
  if (running) {
    const last = state.rounds[state.rounds.length - 1];
    status.textContent = last
      ? `Centring ${state.target.name}: ${state.offset.text}${last.steps ? ` · moving ${Math.abs(last.steps)} steps` : ""}`
      : `Centring ${state.target.name}: solving…`;
    return;
  }
  if (state.centred === null || state.centred === undefined) {
    status.textContent = ""; // never ran, or the request itself failed (its message says why)
    return;
  }
  const dec = state.dec_by_hand ? ` Now ${state.dec_by_hand}.` : "";
  status.textContent = state.centred ? `${state.message}.${dec}` : "";
  $("centre-message").textContent = state.centred ? "" : `Not centred: ${state.message}${dec}`;
}

async function centreTarget() {
  const target = sky.target;
  if (!target) return;
  $("centre-message").textContent = "";
  showCentring({ running: true, target, rounds: [] });
  try {
    showCentring(await api("POST", "/api/mount/center", { target: target.name }));
  } catch (error) {
    if (error.data && Array.isArray(error.data.rounds)) showCentring(error.data);
    else {
      showCentring({ running: false, centred: null });
      $("centre-message").textContent = error.message;
    }
  }
}

async function stopCentring() {
  try {
    await api("DELETE", "/api/mount/center");
  } catch (error) {
    $("centre-message").textContent = error.message;
  }
}

function restoreTarget() {
  try {
    const saved = JSON.parse(localStorage.getItem(TARGET_KEY) || "null");
    if (saved && typeof saved.name === "string" && Number.isFinite(saved.ra) && Number.isFinite(saved.dec)) {
      sky.target = { name: saved.name, ra: saved.ra, dec: saved.dec, found: null };
      $("target-query").value = saved.name;
      showTarget();
    }
  } catch { /* a damaged entry: no target */ }
}

export function setupSky(subscribe) {
  sky.subscribe = subscribe;
  $("solve-button").addEventListener("click", solveOnce);
  $("follow-toggle").addEventListener("click", () => setFollow(!following()));
  $("labels-toggle").addEventListener("click", () => setLabels(!labelled()));
  $("target-form").addEventListener("submit", (event) => {
    event.preventDefault();
    findTarget($("target-query").value);
  });
  $("target-clear").addEventListener("click", clearTarget);
  $("target-centre").addEventListener("click", centreTarget);
  $("centre-stop").addEventListener("click", stopCentring);
  // The markers follow the picture: zoom, resizes, a new stream, panning in 1:1.
  const redraw = () => requestAnimationFrame(drawOverlay);
  new ResizeObserver(redraw).observe($("live"));
  $("live").addEventListener("load", redraw);
  $("viewport").addEventListener("scroll", () => requestAnimationFrame(drawPointer), { passive: true });
  window.addEventListener("resize", redraw);
  restoreTarget();
  setInterval(refreshTarget, TARGET_REFRESH_MS);
}
