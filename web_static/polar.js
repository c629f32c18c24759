// The Polar alignment panel (wanda/polar_align.py): the assistant's steps (solve, turn the RA axis,
// solve again, turn the knobs), the error in altitude and azimuth with which way to turn each knob,
// and over the live view the target circle and the arrow the field must follow to it: the
// altitude knob's leg, then the azimuth knob's.

import { command, commandShowing } from "./api.js";
import { $ } from "./dom.js";
import { pictureBox } from "./live.js";

const SVG = "http://www.w3.org/2000/svg";
const MIN_TARGET_PX = 8; // the target circle is never drawn smaller on the screen
const REASONS = {
  aligned: "Aligned",
  cancelled: "Cancelled",
  solve_failed: "A solve failed",
  no_frame: "No frame came",
  rotation_too_small: "The field did not turn far enough",
  mount_error: "The mount failed",
};

let shown = null; // the assistant's state last shown

/** The assistant's state, from its events or a command's answer. */
export function showPolar(state) {
  shown = state && state.phase ? state : null;
  const running = Boolean(shown && shown.running);
  $("polar-start").disabled = running;
  $("polar-cancel").disabled = !running;
  for (const item of $("polar-steps").children) {
    const step = Number(item.dataset.step);
    const current = running && shown.step === step;
    item.classList.toggle("done", Boolean(shown) && (shown.step > step || (shown.done && step <= 4)));
    if (current) item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
  }
  const status = $("polar-status");
  status.dataset.updates = shown ? shown.updates : 0;
  status.dataset.phase = shown ? shown.phase : "";
  status.dataset.frameTime = shown && shown.frame_time ? shown.frame_time : ""; // of the error shown
  if (!shown) {
    status.textContent = "Not aligning.";
  } else if (shown.running) {
    const turned = shown.phase === "waiting_for_hand" && shown.turned_deg !== null ? ` (turned ${shown.turned_deg.toFixed(1)}° so far)` : "";
    status.textContent = `Step ${shown.step} of 4: ${shown.message}${turned}`;
  } else {
    status.textContent = `${REASONS[shown.reason] || "Ended"}: ${shown.message}`;
  }
  showFigures(shown);
  $("polar-advice").textContent = shown ? [shown.warning, shown.advice].filter(Boolean).join(" · ") : "";
  drawPolarOverlay();
}

/** The error, and which way to turn each knob (the observer's words, and data attributes). */
function showFigures(state) {
  const figures = $("polar-figures");
  if (!state || state.alt_error_arcmin === null || state.alt_error_arcmin === undefined) {
    figures.hidden = true;
    return;
  }
  figures.hidden = false;
  const { altitude, azimuth } = state.knobs;
  const arrows = { up: "↑", down: "↓", left: "←", right: "→" };
  showKnob($("polar-alt"), altitude, `${arrows[altitude.direction]} ${altitude.text}`);
  showKnob($("polar-az"), azimuth, `${arrows[azimuth.side]} ${azimuth.text}`);
  $("polar-total").textContent = `${state.total_error_arcmin.toFixed(2)}' from the refracted pole`;
}

function showKnob(element, knob, text) {
  element.textContent = text;
  element.dataset.direction = knob.direction;
  element.dataset.arcmin = knob.arcmin;
}

/** The target circle and the arrow over the picture, from the solved frame's pixels. */
function drawPolarOverlay() {
  const svg = $("polar-overlay");
  const box = pictureBox();
  const drawn = shown && shown.running && shown.overlay;
  // An <svg> has no `hidden` property (SVGElement is no HTMLElement): the attribute itself.
  svg.toggleAttribute("hidden", !drawn || !box);
  if (!drawn || !box) return;
  const { width, height } = drawn;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  Object.assign(svg.style, { left: `${box.left}px`, top: `${box.top}px`, width: `${box.width}px`, height: `${box.height}px` });
  const perScreenPx = width / box.width;
  const centre = (point) => point.map((v) => v + 0.5); // pixel centres: 0 is the first pixel's middle
  const [from, corner, to] = [drawn.from, drawn.corner, drawn.to].map(centre);
  const line = (a, b, className) => element("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: className });
  svg.replaceChildren(
    element("circle", { cx: from[0], cy: from[1], r: 4 * perScreenPx, class: "polar-from" }),
    line(from, corner, "polar-leg polar-alt-leg"),
    line(corner, to, "polar-leg polar-az-leg"),
    element("circle", {
      cx: to[0],
      cy: to[1],
      r: Math.max(drawn.radius_px, MIN_TARGET_PX * perScreenPx),
      class: "polar-target",
    }),
  );
}

function element(name, attributes) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

async function polarCommand(body) {
  await commandShowing("polar_align", showPolar, $("polar-message"), "POST", "/api/polar-align", body);
}

async function cancel() {
  const answer = await command($("polar-message"), "POST", "/api/polar-align", { action: "cancel" });
  if (answer && answer.state) showPolar(answer.state);
}

function start() {
  polarCommand({
    action: "start",
    rotate_deg: Number($("polar-rotate").value),
    mode: $("polar-mode").value,
    direction: $("polar-direction").value,
    limit_arcmin: Number($("polar-limit").value),
  });
}

export function setupPolar() {
  $("polar-start").addEventListener("click", start);
  $("polar-cancel").addEventListener("click", cancel);
  // The drawing follows the picture: zoom, resizes, a new stream.
  const redraw = () => requestAnimationFrame(drawPolarOverlay);
  new ResizeObserver(redraw).observe($("live"));
  $("live").addEventListener("load", redraw);
  window.addEventListener("resize", redraw);
}
