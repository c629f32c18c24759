// WANDA's browser client: no build step, nothing from the internet.
//
// State comes from the server's WebSocket events (every browser shows the same thing; a
// reconnect gets every topic's status again); commands go over REST, whose envelope carries the
// error message shown next to the control that caused it.

const $ = (id) => document.getElementById(id);

// -- the server ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError("OFFLINE", "the server cannot be reached");
  }
  if (response.status === 401) {
    location.assign("/login"); // a password is set and this browser has not logged in (or it changed)
    throw new ApiError("UNAUTHORIZED", "log in first");
  }
  let envelope;
  try {
    envelope = await response.json();
  } catch {
    throw new ApiError("BAD_RESPONSE", `the server answered HTTP ${response.status}`);
  }
  if (!envelope.success) throw new ApiError(envelope.code, envelope.error);
  return envelope.data;
}

// Events seen per topic. A command's answer is older than any event that arrived while it was on
// its way (REST and the WebSocket are two connections), so it is shown only if none did.
const eventsSeen = { camera: 0, mount: 0, session: 0 };

async function commandShowing(topic, show, output, method, path, body) {
  const before = eventsSeen[topic];
  const data = await command(output, method, path, body);
  if (data && eventsSeen[topic] === before) show(data);
  return data;
}

/** Run a command; show its error in `output` (cleared on success). */
async function command(output, method, path, body) {
  try {
    const data = await api(method, path, body);
    if (output) output.textContent = "";
    return data;
  } catch (error) {
    if (output) output.textContent = error.message;
    return null;
  }
}

// -- formatting ------------------------------------------------------------------------------------

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

function formatBytes(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${units[unit]}`;
}

function formatHours(hours) {
  if (!Number.isFinite(hours) || hours <= 0) return "";
  const minutes = Math.round(hours * 60);
  if (minutes < 1) return "under a minute left";
  return minutes < 60 ? `${minutes} min left` : `${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

// -- night mode ----------------------------------------------------------------------------------

function setupNightMode() {
  const toggle = $("night-toggle");
  const show = () => toggle.setAttribute("aria-pressed", String(document.documentElement.classList.contains("night")));
  toggle.addEventListener("click", () => {
    const night = document.documentElement.classList.toggle("night");
    localStorage.setItem("wanda.night", night ? "1" : "0");
    show();
  });
  show();
}

// -- live view -------------------------------------------------------------------------------------

const live = {
  retry: 1000,
  timer: null,
  stretch: false,
  start() {
    clearTimeout(this.timer);
    // A new URL each time: a new connection, never a cached one.
    $("live").src = `/stream?${this.stretch ? "stretch=auto&" : ""}t=${Date.now()}`;
    $("stream-state").textContent = "";
  },
  lost() {
    $("stream-state").textContent = `stream lost, retrying in ${Math.round(this.retry / 1000)} s`;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), this.retry);
    this.retry = Math.min(this.retry * 2, 15000);
  },
};

function setupLiveView() {
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

async function pollStreamState() {
  try {
    const state = await api("GET", "/state");
    const viewers = state.viewer_count + (state.stretched_viewer_count || 0);
    $("stream-stats").textContent = `${state.encoded_fps.toFixed(1)} fps · ${viewers} viewer${viewers === 1 ? "" : "s"}`;
  } catch {
    $("stream-stats").textContent = "– fps · – viewers";
  }
}

// -- camera ----------------------------------------------------------------------------------------

const camera = { status: null, limits: { exposure: [1e-4, 230], iso: [100, 1600] } };
const EXPOSURE_FLOOR = 1e-4; // the slider's left end: 100 µs

function exposureRange() {
  return [Math.max(EXPOSURE_FLOOR, camera.limits.exposure[0]), camera.limits.exposure[1]];
}

function sliderToExposure(position) {
  const [low, high] = exposureRange();
  return low * (high / low) ** (position / 1000);
}

function exposureToSlider(seconds) {
  const [low, high] = exposureRange();
  return Math.round((1000 * Math.log(seconds / low)) / Math.log(high / low));
}

/** Show a camera status, leaving alone the control the user is editing right now. */
function showCamera(status) {
  camera.status = status;
  if (status.limits) {
    camera.limits = { exposure: status.limits.exposure_seconds, iso: status.limits.iso };
    $("iso-input").min = status.limits.iso[0];
    $("iso-input").max = status.limits.iso[1];
  }
  const editing = document.activeElement;
  if (editing !== $("exposure-text")) $("exposure-text").value = formatExposure(status.exposure_seconds);
  if (editing !== $("exposure-slider")) $("exposure-slider").value = exposureToSlider(status.exposure_seconds);
  if (editing !== $("iso-input")) $("iso-input").value = Math.round(status.iso);
  $("gain-text").textContent = `gain ${status.gain.toFixed(2)}`;
  $("nv-mode").checked = status.night_vision_mode;
  if (editing !== $("nv-intensity")) $("nv-intensity").value = status.night_vision_intensity;
  $("nv-value").textContent = `×${status.night_vision_intensity}`;
  $("frame-type").value = status.frame_type;
  $("file-format").value = status.file_format;
  $("save-raw").checked = status.save_raw;
  showExposing(status.exposure);
}

async function setCamera(changes, output) {
  const status = await commandShowing("camera", showCamera, output, "POST", "/api/camera/settings", changes);
  if (!status && camera.status) showCamera(camera.status); // put the control back to what the camera has
}

function setupCamera() {
  const slider = $("exposure-slider");
  slider.addEventListener("input", () => { $("exposure-text").value = formatExposure(sliderToExposure(slider.value)); });
  slider.addEventListener("change", () => setCamera({ exposure_seconds: +sliderToExposure(slider.value).toPrecision(4) }, $("exposure-error")));
  $("exposure-text").addEventListener("change", (event) => {
    const seconds = parseExposure(event.target.value);
    if (!Number.isFinite(seconds) || seconds <= 0) {
      $("exposure-error").textContent = "exposure: write a duration such as 30 s, 250 ms, 500 µs or 1/250";
      return;
    }
    setCamera({ exposure_seconds: seconds }, $("exposure-error"));
  });
  $("iso-input").addEventListener("change", (event) => setCamera({ iso: Number(event.target.value) }, $("iso-error")));
  $("nv-mode").addEventListener("change", (event) => setCamera({ night_vision_mode: event.target.checked }, $("nv-error")));
  $("nv-intensity").addEventListener("input", (event) => { $("nv-value").textContent = `×${event.target.value}`; });
  $("nv-intensity").addEventListener("change", (event) => setCamera({ night_vision_intensity: Number(event.target.value) }, $("nv-error")));
  $("frame-type").addEventListener("change", (event) => setCamera({ frame_type: event.target.value }, $("frame-type-error")));
  $("file-format").addEventListener("change", (event) => setCamera({ file_format: event.target.value }, $("file-format-error")));
  $("save-raw").addEventListener("change", (event) => setCamera({ save_raw: event.target.checked }, $("file-format-error")));
}

// -- capture ---------------------------------------------------------------------------------------

function showExposing(exposure) {
  const box = $("capture-progress-box");
  const exposing = Boolean(exposure);
  box.hidden = !exposing;
  $("cancel-button").hidden = !exposing;
  $("capture-button").disabled = exposing || Boolean(session.status && session.status.active);
  if (exposing) {
    $("capture-progress").value = exposure.progress;
    $("capture-countdown").textContent = `${exposure.remaining.toFixed(1)} s`;
    $("camera-state").textContent = `exposing ${formatExposure(exposure.exposure_seconds)}`;
  } else {
    $("camera-state").textContent = "camera idle";
  }
}

function showLastCapture(capture) {
  const holder = $("last-capture");
  holder.replaceChildren();
  const link = document.createElement("a");
  link.href = capture.url;
  link.target = "_blank";
  const image = document.createElement("img");
  image.src = `${capture.url}?thumb=1`;
  image.alt = `last capture ${capture.file}`;
  link.append(image);
  holder.append(link);
}

function setupCapture() {
  $("capture-button").addEventListener("click", async () => {
    $("capture-message").textContent = "";
    try {
      await api("POST", "/api/camera/capture");
    } catch (error) {
      $("capture-message").textContent = error.code === "CAPTURE_CANCELLED" ? "Cancelled: nothing was saved." : error.message;
    }
  });
  $("cancel-button").addEventListener("click", () => command($("capture-message"), "POST", "/api/camera/capture/cancel"));
}

// -- session ---------------------------------------------------------------------------------------

const session = { status: null };

function showSession(status) {
  session.status = status;
  const running = Boolean(status.active);
  $("session-form").hidden = running;
  $("session-running").hidden = !running;
  const pill = $("session-state");
  if (running) {
    const captured = status.captured_images;
    $("session-summary").textContent = `${status.name}: ${captured} of ${status.total_images} frames${status.late ? " (running late)" : ""}. ${formatHours(status.remaining_time)}`;
    $("session-progress").value = status.progress;
    pill.hidden = false;
    pill.textContent = `${status.name} ${captured}/${status.total_images}`;
  } else {
    pill.hidden = true;
    refreshResumable();
  }
  $("capture-button").disabled = running || Boolean(camera.status && camera.status.exposure);
}

async function refreshResumable() {
  const resume = $("session-resume");
  try {
    const { sessions } = await api("GET", "/api/sessions");
    const candidate = sessions.find((s) => ["interrupted", "stopped", "error"].includes(s.status) && s.captured_images < s.total_images);
    resume.hidden = !candidate;
    if (candidate) {
      resume.textContent = `Resume ${candidate.name} (${candidate.captured_images}/${candidate.total_images})`;
      resume.dataset.name = candidate.folder;
    }
  } catch {
    resume.hidden = true;
  }
}

function readSessionForm() {
  const mode = document.querySelector('input[name="sessionMode"]:checked')?.value || "rapid";
  return {
    name: $("session-name").value.trim(),
    totalImages: Number($("session-frames").value),
    enableTracking: $("session-tracking").checked,
    useCurrentSettings: true,
    sessionMode: mode,
    totalTimeHours: Number($("session-hours").value) || 1,
  };
}

function fillSessionForm(form) {
  $("session-name").value = form.name || "";
  $("session-frames").value = form.totalImages || 10;
  $("session-tracking").checked = Boolean(form.enableTracking);
  $(form.sessionMode === "timed" ? "session-timed" : "session-rapid").checked = true;
  $("session-hours").value = form.totalTimeHours || 1;
}

function setupSession() {
  api("GET", "/api/session/config").then(fillSessionForm, () => fillSessionForm({}));
  $("session-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = readSessionForm();
    await command(null, "POST", "/api/session/config", form); // remembered for next time
    const start = { name: form.name, total_images: form.totalImages, enable_tracking: form.enableTracking };
    if (form.sessionMode === "timed") start.total_time_hours = form.totalTimeHours;
    await commandShowing("session", (result) => showSession(result.session_status), $("session-message"), "POST", "/api/session/start", start);
  });
  $("session-stop").addEventListener("click", () => command($("session-message"), "POST", "/api/session/stop"));
  $("session-resume").addEventListener("click", (event) =>
    command($("session-message"), "POST", "/api/session/resume", { name: event.target.dataset.name }));
}

// -- mount -----------------------------------------------------------------------------------------

function showMount(status) {
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

function setupMount() {
  $("tracking-toggle").addEventListener("change", (event) => track(event.target.checked));
  // While tracking, speed and direction change live; otherwise they wait for the next start.
  for (const id of ["mount-speed", "mount-direction"]) {
    $(id).addEventListener("change", () => { if ($("tracking-toggle").checked) track(true); });
  }
}

// -- analysis (filled when the server publishes the `analysis` topic) -----------------------------

const TREND_POINTS = 120; // a minute at two analyses a second
const hfrTrend = [];

function showAnalysis(data) {
  $("analysis-note").textContent = "";
  const figure = (value, digits) => (Number.isFinite(value) ? value.toFixed(digits) : "–");
  $("star-count").textContent = data.star_count ?? "–";
  $("hfr").textContent = figure(data.hfr, 2);
  $("fwhm").textContent = figure(data.fwhm, 2);
  const clipped = data.clipped ? ` · ${(100 * data.clipped).toFixed(2)} % clipped` : "";
  $("levels").textContent = `min ${data.min} · median ${data.median} · max ${data.max}${clipped}`;
  const histogram = data.histogram && (data.histogram.luminance || data.histogram);
  if (Array.isArray(histogram)) drawHistogram(histogram);
  if (Number.isFinite(data.hfr)) {
    hfrTrend.push(data.hfr);
    if (hfrTrend.length > TREND_POINTS) hfrTrend.shift();
    drawTrend();
  }
}

function accent() {
  return getComputedStyle(document.documentElement).getPropertyValue("--accent").trim();
}

function drawHistogram(bins) {
  const canvas = $("histogram");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const peak = Math.log1p(Math.max(...bins));
  const width = canvas.width / bins.length;
  context.fillStyle = accent();
  bins.forEach((count, index) => {
    const height = peak ? (Math.log1p(count) / peak) * canvas.height : 0; // log: faint tails stay visible
    context.fillRect(index * width, canvas.height - height, Math.max(width, 1), height);
  });
}

/** HFR over time while focusing: the line goes down as the stars get sharper. */
function drawTrend() {
  const canvas = $("hfr-trend");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (hfrTrend.length < 2) return;
  const low = Math.min(...hfrTrend) * 0.95;
  const high = Math.max(...hfrTrend) * 1.05;
  const y = (value) => canvas.height - ((value - low) / (high - low || 1)) * canvas.height;
  context.strokeStyle = accent();
  context.lineWidth = 2;
  context.beginPath();
  hfrTrend.forEach((value, index) => {
    const x = (index / (TREND_POINTS - 1)) * canvas.width;
    if (index === 0) context.moveTo(x, y(value));
    else context.lineTo(x, y(value));
  });
  context.stroke();
  const best = Math.min(...hfrTrend);
  context.fillStyle = accent();
  context.font = "14px system-ui, sans-serif";
  context.fillText(`best ${best.toFixed(2)} px`, 6, 16);
}

// -- gallery ---------------------------------------------------------------------------------------

// A night's folder holds thousands of frames: the grid shows the newest page and grows on request.
const GALLERY_PAGE = 60;
const gallery = { folder: "", shown: GALLERY_PAGE };

async function refreshFolders() {
  const select = $("gallery-folder");
  try {
    const { details } = await api("GET", "/api/captures/folders");
    const keep = select.value;
    select.replaceChildren(new Option("Single captures", ""));
    for (const folder of details) select.append(new Option(`${folder.name} (${folder.images})`, folder.name));
    select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
  } catch { /* the next refresh will try again */ }
}

async function refreshGallery() {
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
  const grid = $("gallery-grid");
  grid.replaceChildren(...data.items.map(galleryItem));
  $("gallery-empty").hidden = data.items.length > 0;
  const more = $("gallery-more");
  const left = data.total - data.items.length;
  more.hidden = left <= 0;
  more.textContent = `Show more (${left} older)`;
  $("folder-zip").hidden = !folder;
  $("folder-delete").hidden = !folder;
  if (folder) $("folder-zip").href = `/api/captures/${encodeURIComponent(folder)}.zip`;
}

function galleryItem(item) {
  const entry = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
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
  button.append(name);
  button.addEventListener("click", () => openImage(item));
  entry.append(button);
  return entry;
}

function openImage(item) {
  const dialog = $("image-dialog");
  $("image-title").textContent = item.name;
  const full = $("image-full");
  const isJpeg = /\.jpe?g$/i.test(item.name);
  full.hidden = !isJpeg;
  full.src = isJpeg ? item.url : "";
  full.alt = item.name;
  $("image-info").textContent = `${formatBytes(item.size)} · ${new Date(item.modified * 1000).toLocaleString()}`;
  $("image-download").href = item.url;
  $("image-download").setAttribute("download", item.name);
  $("image-delete").onclick = async () => {
    if (!(await confirmDelete(`Delete ${item.name}? This cannot be undone.`))) return;
    dialog.close();
    await command($("session-message"), "DELETE", item.url);
    refreshGallery();
    refreshFolders();
  };
  dialog.showModal();
}

/** A confirmation in the page's own colours (a native confirm() would flash white at night). */
function confirmDelete(text) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

function setupGallery() {
  $("gallery-folder").addEventListener("change", (event) => {
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
    if (!folder || !(await confirmDelete(`Delete the folder ${folder} and every frame in it?`))) return;
    if (await command($("session-message"), "DELETE", `/api/captures/${encodeURIComponent(folder)}`)) {
      gallery.folder = "";
      await refreshFolders();
      refreshGallery();
    }
  });
}

async function refreshStorage() {
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

// -- the WebSocket -----------------------------------------------------------------------------------

const socket = { ws: null, retry: 1000, everConnected: false, topics: [] };

function showSocket(state, text) {
  $("ws-state").dataset.state = state;
  $("ws-state").textContent = text;
}

function wantedTopics() {
  // The analysis costs the server CPU: ask for it only while its panel is open.
  return socket.topics.filter((topic) => topic !== "analysis" || $("analysis-panel").open);
}

function subscribe() {
  if (socket.ws && socket.ws.readyState === WebSocket.OPEN && socket.topics.length) {
    socket.ws.send(JSON.stringify({ id: "subscribe", action: "subscribe", params: { topics: wantedTopics() } }));
  }
}

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const ws = new WebSocket(url);
  socket.ws = ws;
  showSocket("connecting", socket.everConnected ? "reconnecting…" : "connecting…");
  ws.addEventListener("open", () => {
    socket.retry = 1000;
    showSocket("open", "connected");
    if (socket.everConnected) {
      // The server may have restarted: the stream and the lists start afresh (the statuses come
      // by themselves on connect).
      live.start();
      refreshAll();
    }
    socket.everConnected = true;
  });
  ws.addEventListener("message", (event) => handleMessage(JSON.parse(event.data)));
  ws.addEventListener("close", () => {
    // Refused for want of the password? Then the login page, not endless reconnects.
    fetch("/api/health").then((r) => { if (r.status === 401) location.assign("/login"); }, () => {});
    const wait = socket.retry;
    socket.retry = Math.min(socket.retry * 2, 15000);
    showSocket("closed", `offline, reconnecting in ${Math.round(wait / 1000)} s`);
    setTimeout(connect, wait);
  });
}

function handleMessage(message) {
  if ("id" in message) { // a command's reply; errors of our subscribe only matter to the log
    if (!message.ok) console.warn("WebSocket command failed:", message.error);
    return;
  }
  const { topic, event, data } = message;
  if (topic in eventsSeen) eventsSeen[topic] += 1;
  if (topic === "system" && event === "hello") {
    socket.topics = data.topics;
    if (socket.topics.includes("analysis")) subscribe();
  } else if (topic === "camera") {
    handleCameraEvent(event, data);
  } else if (topic === "session") {
    showSession(data);
    if (event === "session_progress" || event === "session_complete") {
      refreshStorage();
      if (gallery.folder === data.folder) refreshGallery();
      if (event === "session_complete") refreshFolders();
    }
    if (event === "session_start") refreshFolders();
  } else if (topic === "mount") {
    showMount(data);
  } else if (topic === "analysis") {
    showAnalysis(data);
  }
}

function handleCameraEvent(event, data) {
  if (event === "status") {
    showCamera(data);
  } else if (event === "capture_start" || event === "capture_progress") {
    showExposing(data);
  } else if (event === "capture_complete") {
    showExposing(null);
    if (!data.path.includes("/")) { // a single capture, not a session's frame
      showLastCapture(data);
      if (gallery.folder === "") refreshGallery();
    }
    refreshStorage();
  } else if (event === "capture_error") {
    showExposing(null);
  }
}

function refreshAll() {
  refreshStorage();
  refreshFolders();
  refreshGallery();
  refreshResumable();
}

// -- start ---------------------------------------------------------------------------------------------

setupNightMode();
setupLiveView();
setupCamera();
setupCapture();
setupSession();
setupMount();
setupGallery();
$("analysis-panel").addEventListener("toggle", subscribe);
$("hfr-reset").addEventListener("click", () => { hfrTrend.length = 0; drawTrend(); });
connect();
refreshAll();
pollStreamState();
setInterval(pollStreamState, 2000);
setInterval(refreshStorage, 30000);
