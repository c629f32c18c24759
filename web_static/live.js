// The live view: the MJPEG stream in an <img> (restarted with back-off when it breaks), fit or
// 1:1 with panning, the crosshair, the auto-stretch, and the stream's frame rate and viewers.

import { api } from "./api.js";
import { $ } from "./dom.js";

export const live = {
  retry: 1000,
  timer: null,
  stretch: false,
  source: "live", // or "stack": the live stack (stack.js), always stretched
  start() {
    clearTimeout(this.timer);
    // A new URL each time: a new connection, never a cached one.
    const query = this.source === "stack" ? "source=stack&" : this.stretch ? "stretch=auto&" : "";
    $("live").src = `/stream?${query}t=${Date.now()}`;
    $("stream-state").textContent = "";
  },
  lost() {
    $("stream-state").textContent = `stream lost, retrying in ${Math.round(this.retry / 1000)} s`;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), this.retry);
    this.retry = Math.min(this.retry * 2, 15000);
  },
};

/** Where the live image's picture is inside the viewport (its content box: `object-fit: contain`
 * letterboxes it in fit mode), in the viewport's scrolled coordinates; null before a frame. */
export function pictureBox() {
  const image = $("live");
  if (!image.naturalWidth || !image.clientWidth) return null;
  const scale = Math.min(image.clientWidth / image.naturalWidth, image.clientHeight / image.naturalHeight);
  const width = image.naturalWidth * scale;
  const height = image.naturalHeight * scale;
  return {
    left: image.offsetLeft + image.clientLeft + (image.clientWidth - width) / 2,
    top: image.offsetTop + image.clientTop + (image.clientHeight - height) / 2,
    width,
    height,
  };
}

export function setupLiveView() {
  const image = $("live");
  const viewport = $("viewport");
  image.addEventListener("load", () => { live.retry = 1000; });
  image.addEventListener("error", () => live.lost());
  live.start();

  const zoom = $("zoom-toggle");
  zoom.addEventListener("click", () => {
    const actual = viewport.classList.toggle("actual");
    viewport.classList.toggle("fit", !actual);
    zoom.setAttribute("aria-pressed", String(actual));
    zoom.textContent = actual ? "Fit" : "1:1";
    if (actual) { // start at the centre of the field, where the star to focus on usually is
      viewport.scrollLeft = (viewport.scrollWidth - viewport.clientWidth) / 2;
      viewport.scrollTop = (viewport.scrollHeight - viewport.clientHeight) / 2;
    }
  });

  const stretch = $("stretch-toggle");
  stretch.addEventListener("click", () => {
    live.stretch = !live.stretch;
    stretch.setAttribute("aria-pressed", String(live.stretch));
    live.start();
  });

  const crosshair = $("crosshair-toggle");
  crosshair.addEventListener("click", () => {
    const shown = $("crosshair").hidden;
    $("crosshair").hidden = !shown;
    crosshair.setAttribute("aria-pressed", String(shown));
  });

  // Pan in 1:1 by dragging with a mouse (touch scrolls natively) or with the arrow keys.
  let drag = null;
  viewport.addEventListener("pointerdown", (event) => {
    if (!viewport.classList.contains("actual") || event.pointerType === "touch") return;
    drag = { x: event.clientX, y: event.clientY, left: viewport.scrollLeft, top: viewport.scrollTop };
    viewport.classList.add("dragging");
    viewport.setPointerCapture(event.pointerId);
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag) return;
    viewport.scrollLeft = drag.left - (event.clientX - drag.x);
    viewport.scrollTop = drag.top - (event.clientY - drag.y);
  });
  const endDrag = () => { drag = null; viewport.classList.remove("dragging"); };
  viewport.addEventListener("pointerup", endDrag);
  viewport.addEventListener("pointercancel", endDrag);
  viewport.addEventListener("keydown", (event) => {
    const step = event.shiftKey ? 200 : 50;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (!viewport.classList.contains("actual") || !moves[event.key]) return;
    viewport.scrollBy(...moves[event.key]);
    event.preventDefault();
  });
}

export async function pollStreamState() {
  try {
    const state = await api("GET", "/state");
    const viewers = state.viewer_count + (state.stretched_viewer_count || 0) + (state.stack_viewer_count || 0);
    $("stream-stats").textContent = `${state.encoded_fps.toFixed(1)} fps · ${viewers} viewer${viewers === 1 ? "" : "s"}`;
  } catch {
    $("stream-stats").textContent = "– fps · – viewers";
  }
}
