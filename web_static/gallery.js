// The gallery, a place to judge the night's frames: single captures and session folders, paged; a
// tile per frame (a JPEG+FITS frame is one tile; a FITS one shows the server's stretched
// thumbnail); the full view zooms (fit, 1:1, wheel, pinch, drag), stretches, shows the frame's
// exposure, gain, type, date, sensor temperature, stars and HFR, and goes to the next or previous
// frame by arrow key, swipe or button; frames are selected to be deleted or zipped together.

import { api, command } from "./api.js";
import { confirmAction } from "./confirm.js";
import { $, fillSelect } from "./dom.js";
import { formatBytes, formatExposure } from "./format.js";
import { refreshResumable } from "./session.js";

// A night's folder holds thousands of frames: the grid shows the newest page and grows on request.
const GALLERY_PAGE = 60;
export const gallery = { folder: "", shown: GALLERY_PAGE, items: [] };
const selection = new Map(); // path -> item, kept across refreshes while the frame is listed
const FORMAT_NAMES = { jpeg: "JPEG", fits: "FITS", dng: "DNG" };

export async function refreshFolders() {
  const select = $("gallery-folder");
  try {
    const { details } = await api("GET", "/api/captures/folders");
    const folders = details.map((folder) => [folder.name, `${folder.name} (${folder.frames ?? folder.images})`]);
    fillSelect(select, [["", "Single captures"], ...folders]);
  } catch { /* the next refresh will try again */ }
}

export async function refreshGallery() {
  const folder = gallery.folder;
  let data;
  try {
    // The server hands out at most 1000 details an answer. A frame saved between two pages
    // shifts the offsets by one: skip what the grid already has.
    for (let offset = 0; offset < gallery.shown; offset += 1000) {
      const query = new URLSearchParams({ offset, limit: Math.min(1000, gallery.shown - offset) });
      if (folder) query.set("folder", folder);
      const page = await api("GET", `/api/captures?${query}`);
      if (data) {
        const seen = new Set(data.items.map((item) => item.path));
        data.items.push(...page.items.filter((item) => !seen.has(item.path)));
      } else {
        data = page;
      }
      if (offset + page.items.length >= page.total) break;
    }
  } catch {
    return;
  }
  if (folder !== gallery.folder) return; // another folder was chosen meanwhile
  gallery.items = data.items;
  const listed = new Set(data.items.map((item) => item.path));
  for (const path of [...selection.keys()]) if (!listed.has(path)) selection.delete(path);
  for (const item of data.items) if (selection.has(item.path)) selection.set(item.path, item);
  $("gallery-grid").replaceChildren(...data.items.map(galleryItem));
  showSelection();
  viewer.listChanged();
  $("gallery-empty").hidden = data.items.length > 0;
  const more = $("gallery-more");
  const left = data.total - data.items.length;
  more.hidden = left <= 0;
  more.textContent = `Show more (${left} older)`;
  $("folder-zip").hidden = !folder;
  $("folder-delete").hidden = !folder;
  if (folder) $("folder-zip").href = `/api/captures/${encodeURIComponent(folder)}.zip`;
}

function formats(item) {
  return (item.downloads || []).map((d) => FORMAT_NAMES[d.format] || d.format);
}

function galleryItem(item) {
  const entry = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "open";
  button.title = item.name;
  if (item.thumb_url) {
    const image = document.createElement("img");
    image.loading = "lazy";
    image.src = item.thumb_url;
    image.alt = item.name;
    button.append(image);
  } else {
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = item.name.split(".").pop().toUpperCase();
    button.append(kind);
  }
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = item.name;
  const kinds = document.createElement("span");
  kinds.className = "formats";
  kinds.textContent = formats(item).join(" + ");
  button.append(name, kinds);
  button.addEventListener("click", () => viewer.open(item));
  // The selection box: a touch-sized corner of the tile.
  const pick = document.createElement("label");
  pick.className = "pick";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = selection.has(item.path);
  box.setAttribute("aria-label", `select ${item.name}`);
  box.addEventListener("change", () => {
    if (box.checked) selection.set(item.path, item);
    else selection.delete(item.path);
    entry.classList.toggle("selected", box.checked);
    showSelection();
  });
  pick.append(box);
  entry.classList.toggle("selected", box.checked);
  entry.append(button, pick);
  return entry;
}

// -- the selection ----------------------------------------------------------------------------

function showSelection() {
  const count = selection.size;
  $("gallery-selection").hidden = count === 0;
  $("selection-count").textContent = `${count} frame${count === 1 ? "" : "s"} selected`;
}

function clearSelection() {
  selection.clear();
  for (const box of $("gallery-grid").querySelectorAll(".pick input")) box.checked = false;
  for (const entry of $("gallery-grid").querySelectorAll("li.selected")) entry.classList.remove("selected");
  showSelection();
}

/** Every file of these frames (a JPEG+FITS frame is both). */
function filesOf(items) {
  return items.flatMap((item) => (item.downloads || [{ path: item.path }]).map((d) => d.path));
}

async function deleteSelection() {
  const items = [...selection.values()];
  const count = items.length;
  if (!count || !(await confirmAction(`Delete ${count} frame${count === 1 ? "" : "s"} and every file of them? This cannot be undone.`))) return;
  if (await command($("gallery-message"), "POST", "/api/captures/delete", { paths: filesOf(items) })) {
    clearSelection();
    refreshGallery();
    refreshFolders();
  }
}

/** A selection's zip: a form posted to a hidden frame, so the browser downloads it as it streams
 * (a fetch would hold the whole zip in memory). An answer that is not a download is an error. */
function zipSelection() {
  const items = [...selection.values()];
  if (!items.length) return;
  $("gallery-message").textContent = "";
  const form = document.createElement("form");
  form.method = "post";
  form.action = "/api/captures/zip";
  form.target = "selection-frame";
  form.hidden = true;
  for (const path of filesOf(items)) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = "paths";
    input.value = path;
    input.setAttribute("aria-label", path);
    form.append(input);
  }
  document.body.append(form);
  form.submit();
  form.remove();
}

function zipFailed() {
  let text = "the zip could not be made";
  try {
    const body = $("selection-frame").contentDocument?.body?.textContent || "";
    if (!body) return; // the empty frame itself
    text = JSON.parse(body).error || text;
  } catch { /* not the server's envelope */ }
  $("gallery-message").textContent = text;
}

// -- the full view ----------------------------------------------------------------------------

const MAX_SCALE = 16;
const SWIPE_PX = 50;

const viewer = {
  items: [],
  index: -1,
  item: null,
  stretch: null, // the user's choice while the view is open; null: as the frame suits
  info: null,
  token: 0, // which frame the answers in flight are for
  scale: 1,
  x: 0,
  y: 0,
  fitted: true,

  open(item) {
    this.items = gallery.items;
    this.stretch = null;
    this.fitted = true;
    this.show(this.items.findIndex((i) => i.path === item.path));
    if (!$("image-dialog").open) $("image-dialog").showModal();
    $("image-view").focus();
  },

  show(index) {
    if (index < 0 || index >= this.items.length) return;
    this.index = index;
    const item = (this.item = this.items[index]);
    this.token += 1;
    $("image-title").textContent = item.name;
    $("image-position").textContent = `${index + 1} / ${this.items.length}`;
    $("image-prev").disabled = index === 0;
    $("image-next").disabled = index === this.items.length - 1;
    $("image-info").textContent = `${formats(item).join(" + ")} · ${formatBytes(item.size)} · saved ${new Date(item.modified * 1000).toLocaleString()}`;
    this.showFiles(item);
    this.showInfo(null);
    this.load(); // zoomed in, the next frame shows the same spot: stars compared at 1:1
    this.fetchInfo(this.token, 0);
  },

  /** Stretched by the user's choice, or if the frame has no JPEG (its linear FITS data is black). */
  stretched() {
    const item = this.item;
    return this.stretch ?? !(item.downloads || []).some((d) => d.format === "jpeg");
  },

  load() {
    const item = this.item;
    const stretched = this.stretched();
    const url = stretched ? item.stretched_url : item.preview_url;
    const button = $("image-stretch");
    button.setAttribute("aria-pressed", String(stretched));
    button.disabled = !item.stretched_url;
    const image = $("image-full");
    image.hidden = !url;
    $("image-none").hidden = Boolean(url);
    image.alt = `${item.name}${stretched ? ", stretched" : ""}`;
    if (!url) {
      image.removeAttribute("src");
      return;
    }
    if (image.getAttribute("src") !== url) image.src = url;
    else this.place();
  },

  showFiles(item) {
    const downloads = item.downloads || [{ name: item.name, url: item.url, format: "" }];
    const primary = $("image-download");
    for (const extra of $("image-files").querySelectorAll("a.extra")) extra.remove();
    downloads.forEach((download, i) => {
      const link = i === 0 ? primary : Object.assign(document.createElement("a"), { className: "button extra" });
      link.href = download.url;
      link.setAttribute("download", download.name);
      link.textContent = downloads.length > 1 ? `Download ${FORMAT_NAMES[download.format] || download.name}` : "Download";
      link.title = download.name;
      if (i > 0) $("image-delete").before(link);
    });
  },

  async fetchInfo(token, tries) {
    let info;
    try {
      info = await api("GET", this.item.info_url);
    } catch {
      return; // the details stay at "–"
    }
    if (token !== this.token) return; // another frame is shown now
    this.showInfo(info);
    // Measured on the server's thread as it was saved; a frame saved before is measured now.
    if (info.measurement?.state === "pending" && tries < 60) {
      setTimeout(() => { if (token === this.token && $("image-dialog").open) this.fetchInfo(token, tries + 1); }, 1000);
    }
  },

  showInfo(info) {
    const set = (id, text) => { $(id).textContent = text ?? "–"; };
    const number = (value, digits) => (Number.isFinite(value) ? value.toFixed(digits) : null);
    set("image-exposure", info && Number.isFinite(info.exposure_seconds) ? formatExposure(info.exposure_seconds) : null);
    set("image-gain", info && Number.isFinite(info.gain) ? `${number(info.gain, 2)} (ISO ${Math.round(info.iso ?? info.gain * 100)})` : null);
    set("image-type", info?.frame_type ? info.frame_type[0].toUpperCase() + info.frame_type.slice(1) : null);
    set("image-date", info?.date_obs ? info.date_obs.replace("T", " ").replace(/\.\d+Z$|Z$/, "") : null);
    set("image-temperature", info && number(info.sensor_temperature, 1) !== null ? `${number(info.sensor_temperature, 1)} °C` : null);
    const measurement = info?.measurement || {};
    const waiting = measurement.state === "pending" ? "measuring…" : null;
    set("image-stars", measurement.state === "measured" ? String(measurement.star_count) : waiting);
    set("image-hfr", measurement.state === "measured" && number(measurement.hfr, 2) ? `${number(measurement.hfr, 2)} px` : waiting);
    $("image-meta").dataset.state = measurement.state || "";
  },

  /** The list was read again (a capture, a delete): keep showing the same frame. */
  listChanged() {
    if (!$("image-dialog").open || !this.item) return;
    this.items = gallery.items;
    const index = this.items.findIndex((i) => i.path === this.item.path);
    if (index >= 0) {
      this.index = index;
      $("image-position").textContent = `${index + 1} / ${this.items.length}`;
      $("image-prev").disabled = index === 0;
      $("image-next").disabled = index === this.items.length - 1;
    }
  },

  async remove() {
    const item = this.item;
    const files = formats(item);
    const what = files.length > 1 ? `${item.name} (${files.join(" and ")})` : item.name;
    if (!(await confirmAction(`Delete ${what}? This cannot be undone.`))) return;
    if (!(await command($("gallery-message"), "POST", "/api/captures/delete", { paths: filesOf([item]) }))) {
      $("image-dialog").close();
      return;
    }
    selection.delete(item.path);
    this.items = this.items.filter((i) => i.path !== item.path);
    if (this.items.length) this.show(Math.min(this.index, this.items.length - 1)); // on to the next frame
    else $("image-dialog").close();
    refreshGallery();
    refreshFolders();
  },

  // -- zoom and pan: the image is placed by a transform inside the view --------------------------

  fitScale() {
    const image = $("image-full");
    const view = $("image-view");
    if (!image.naturalWidth) return 1;
    return Math.min(view.clientWidth / image.naturalWidth, view.clientHeight / image.naturalHeight);
  },

  /** Place the image: fitted, or as zoomed and panned (kept inside the view). */
  place() {
    const image = $("image-full");
    const view = $("image-view");
    if (this.fitted) this.scale = this.fitScale();
    const width = image.naturalWidth * this.scale;
    const height = image.naturalHeight * this.scale;
    const clamp = (value, room) => (room >= 0 ? room / 2 : Math.min(0, Math.max(room, value)));
    this.x = clamp(this.x, view.clientWidth - width);
    this.y = clamp(this.y, view.clientHeight - height);
    image.style.transform = `translate(${this.x}px, ${this.y}px) scale(${this.scale})`;
    image.dataset.scale = this.scale.toFixed(4);
    const actual = Math.abs(this.scale - 1) < 1e-3;
    const zoom = $("image-zoom");
    zoom.textContent = this.fitted ? "1:1" : "Fit";
    zoom.setAttribute("aria-pressed", String(!this.fitted));
    $("image-scale").textContent = image.naturalWidth ? `${actual ? "1:1" : `${Math.round(this.scale * 100)} %`}` : "";
  },

  /** Zoom by ``factor`` about the view's point (cx, cy). */
  zoomAt(factor, cx, cy) {
    const low = Math.min(this.fitScale(), 1);
    const scale = Math.min(MAX_SCALE, Math.max(low, this.scale * factor));
    this.x = cx - ((cx - this.x) * scale) / this.scale;
    this.y = cy - ((cy - this.y) * scale) / this.scale;
    this.scale = scale;
    this.fitted = false;
    this.place();
  },

  /** Fit, or 1:1 about the point (cx, cy) of the view (its centre unless given). */
  toggleZoom(cx, cy) {
    const view = $("image-view");
    if (this.fitted) this.zoomAt(1 / this.scale, cx ?? view.clientWidth / 2, cy ?? view.clientHeight / 2);
    else {
      this.fitted = true;
      this.place();
    }
  },

  pannable() {
    const image = $("image-full");
    const view = $("image-view");
    return image.naturalWidth * this.scale > view.clientWidth + 1 || image.naturalHeight * this.scale > view.clientHeight + 1;
  },
};

function setupViewer() {
  const dialog = $("image-dialog");
  const view = $("image-view");
  const image = $("image-full");
  image.addEventListener("load", () => viewer.place());
  image.addEventListener("error", () => {
    if (!image.getAttribute("src")) return;
    image.hidden = true; // no broken-image icon (white at night): say so instead
    $("image-none").hidden = false;
  });
  $("image-prev").addEventListener("click", () => viewer.show(viewer.index - 1));
  $("image-next").addEventListener("click", () => viewer.show(viewer.index + 1));
  $("image-zoom").addEventListener("click", () => viewer.toggleZoom());
  $("image-stretch").addEventListener("click", () => {
    viewer.stretch = !viewer.stretched();
    viewer.load();
  });
  $("image-delete").addEventListener("click", () => viewer.remove());
  dialog.addEventListener("keydown", (event) => {
    if (event.target.closest?.("input, select, textarea")) return;
    const moves = { ArrowLeft: -1, ArrowRight: 1 };
    if (moves[event.key]) {
      viewer.show(viewer.index + moves[event.key]);
      event.preventDefault();
    } else if (event.key === "+" || event.key === "=" || event.key === "-") {
      viewer.zoomAt(event.key === "-" ? 1 / 1.25 : 1.25, view.clientWidth / 2, view.clientHeight / 2);
      event.preventDefault();
    }
  });
  dialog.addEventListener("close", () => { viewer.token += 1; });
  new ResizeObserver(() => { if (dialog.open) viewer.place(); }).observe(view);

  view.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = view.getBoundingClientRect();
    viewer.zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  view.addEventListener("dblclick", (event) => {
    const box = view.getBoundingClientRect();
    viewer.toggleZoom(event.clientX - box.left, event.clientY - box.top);
  });

  // One pointer pans (when the frame is bigger than the view) or swipes to the next frame; two pinch.
  const pointers = new Map();
  let gesture = null;
  const point = (event) => {
    const box = view.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  };
  const pinch = () => {
    const [a, b] = [...pointers.values()];
    return { distance: Math.hypot(a.x - b.x, a.y - b.y), x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
  };
  view.addEventListener("pointerdown", (event) => {
    view.setPointerCapture(event.pointerId);
    pointers.set(event.pointerId, point(event));
    if (pointers.size === 2) gesture = { kind: "pinch", ...pinch() };
    else if (pointers.size === 1) {
      const start = point(event);
      gesture = { kind: viewer.pannable() ? "pan" : "swipe", start, last: start };
    }
  });
  view.addEventListener("pointermove", (event) => {
    if (!pointers.has(event.pointerId) || !gesture) return;
    pointers.set(event.pointerId, point(event));
    if (gesture.kind === "pinch" && pointers.size === 2) {
      const now = pinch();
      if (gesture.distance > 0) viewer.zoomAt(now.distance / gesture.distance, now.x, now.y);
      viewer.x += now.x - gesture.x;
      viewer.y += now.y - gesture.y;
      viewer.place();
      gesture = { kind: "pinch", ...now };
    } else if (gesture.kind === "pan") {
      const now = point(event);
      viewer.x += now.x - gesture.last.x;
      viewer.y += now.y - gesture.last.y;
      gesture.last = now;
      viewer.place();
      view.classList.add("dragging");
    }
  });
  const end = (event) => {
    if (!pointers.has(event.pointerId)) return;
    const now = point(event);
    pointers.delete(event.pointerId);
    if (gesture?.kind === "swipe" && event.type === "pointerup") {
      const dx = now.x - gesture.start.x;
      const dy = now.y - gesture.start.y;
      if (Math.abs(dx) > SWIPE_PX && Math.abs(dx) > 1.5 * Math.abs(dy)) viewer.show(viewer.index + (dx < 0 ? 1 : -1));
    }
    view.classList.remove("dragging");
    if (pointers.size === 0) gesture = null;
    else if (gesture?.kind === "pinch") { // one finger left: it pans from here
      const [last] = pointers.values();
      gesture = { kind: "pan", start: last, last };
    }
  };
  view.addEventListener("pointerup", end);
  view.addEventListener("pointercancel", end);
}

/** A gallery error (a refused delete) shows beside the gallery until it no longer applies: another
 * folder is chosen, the delete is tried again, or the session that kept the folder busy ends. */
export function clearGalleryMessage() {
  $("gallery-message").textContent = "";
}

export function setupGallery() {
  $("gallery-folder").addEventListener("change", (event) => {
    clearGalleryMessage();
    clearSelection();
    gallery.folder = event.target.value;
    gallery.shown = GALLERY_PAGE;
    refreshGallery();
  });
  $("gallery-more").addEventListener("click", () => {
    gallery.shown += GALLERY_PAGE;
    refreshGallery();
  });
  $("folder-delete").addEventListener("click", async () => {
    const folder = gallery.folder;
    if (!folder || !(await confirmAction(`Delete the folder ${folder} and every frame in it?`))) return;
    if (await command($("gallery-message"), "DELETE", `/api/captures/${encodeURIComponent(folder)}`)) {
      gallery.folder = "";
      clearSelection();
      await refreshFolders();
      refreshGallery();
      refreshResumable(); // a session whose folder went can no longer be resumed
    }
  });
  $("selection-delete").addEventListener("click", deleteSelection);
  $("selection-zip").addEventListener("click", zipSelection);
  $("selection-clear").addEventListener("click", clearSelection);
  $("selection-frame").addEventListener("load", zipFailed);
  setupViewer();
}
