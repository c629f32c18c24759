// The WebSocket: connect with back-off, subscribe to the topics the page wants, and hand each
// event to the panel that shows it. A reconnect after a server restart reloads what is not pushed.

import { showAnalysis } from "./analysis.js";
import { eventsSeen } from "./api.js";
import { checkClock } from "./clock.js";
import { showCamera } from "./camera.js";
import { showExposing, showLastCapture } from "./capture.js";
import { $ } from "./dom.js";
import { clearGalleryMessage, gallery, refreshFolders, refreshGallery } from "./gallery.js";
import { live } from "./live.js";
import { showMount } from "./mount.js";
import { showPolar } from "./polar.js";
import { offlineText, showOffline, showOnline } from "./offline.js";
import { refreshResumable, showSession } from "./session.js";
import { refreshSite, showSite } from "./site.js";
import { refreshSolution, refreshTarget, resumeFollow, showCentring, showSolution } from "./sky.js";
import { refreshStackSources, showCalibrationEvent, showStack } from "./stack.js";
import { refreshStorage } from "./storage.js";

const socket = { ws: null, retry: 1000, everConnected: false, topics: [], replies: new Map(), asked: 0 };

// The topics the server sends only when asked for by name (they cost it CPU), each wanted while
// its control says so: the analysis while its panel is open, the solve while the sky panel follows.
const OPT_IN = {
  analysis: () => $("analysis-panel").open,
  solve: () => $("follow-toggle").getAttribute("aria-pressed") === "true",
};

function showSocket(state, text) {
  $("ws-state").dataset.state = state;
  $("ws-state").textContent = text;
}

function wantedTopics() {
  return socket.topics.filter((topic) => !(topic in OPT_IN) || OPT_IN[topic]());
}

/** Ask for the topics the page wants now; resolves (true when the server took them) once the server
 * has answered, so what follows knows the subscription holds. */
export function subscribe() {
  if (!(socket.ws && socket.ws.readyState === WebSocket.OPEN && socket.topics.length)) return Promise.resolve(false);
  socket.asked += 1;
  const id = `subscribe-${socket.asked}`;
  socket.ws.send(JSON.stringify({ id, action: "subscribe", params: { topics: wantedTopics() } }));
  return new Promise((resolve) => socket.replies.set(id, resolve));
}

function answerReplies(ok) {
  for (const resolve of socket.replies.values()) resolve(ok);
  socket.replies.clear();
}

export function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const ws = new WebSocket(url);
  socket.ws = ws;
  showSocket("connecting", socket.everConnected ? "reconnecting…" : "connecting…");
  ws.addEventListener("open", () => {
    socket.retry = 1000;
    showSocket("open", "connected");
    checkClock(); // a restarted Pi may have come back with yesterday's time
    if (socket.everConnected) {
      // The server may have restarted: the stream and the lists start afresh (the statuses come
      // by themselves on connect).
      showOnline();
      live.start();
      refreshAll();
    }
    socket.everConnected = true;
  });
  ws.addEventListener("message", (event) => handleMessage(JSON.parse(event.data)));
  ws.addEventListener("close", () => {
    answerReplies(false);
    // Refused for want of the password? Then the login page, not endless reconnects.
    fetch("/api/health").then((r) => { if (r.status === 401) location.assign("/login"); }, () => {});
    const wait = socket.retry;
    socket.retry = Math.min(socket.retry * 2, 15000);
    if (socket.everConnected) {
      showOffline();
      showSocket("closed", offlineText(Math.round(wait / 1000)));
    } else {
      showSocket("closed", `no connection, retrying in ${Math.round(wait / 1000)} s`);
    }
    setTimeout(connect, wait);
  });
}

function handleMessage(message) {
  if ("id" in message) { // a command's reply; errors of our subscribe only matter to the log
    if (!message.ok) console.warn("WebSocket command failed:", message.error);
    const resolve = socket.replies.get(message.id);
    socket.replies.delete(message.id);
    if (resolve) resolve(Boolean(message.ok));
    return;
  }
  const { topic, event, data } = message;
  if (topic in eventsSeen) eventsSeen[topic] += 1;
  if (topic === "system" && event === "site") {
    showSite(data);
    refreshTarget(); // its altitude depends on the site
  } else if (topic === "system" && event === "hello") {
    socket.topics = data.topics;
    if (socket.topics.some((name) => name in OPT_IN)) subscribe();
    resumeFollow(); // a restarted server has forgotten continuous mode
  } else if (topic === "camera") {
    handleCameraEvent(event, data);
  } else if (topic === "session") {
    showSession(data); // every session event carries the session's status
    if (event === "session_progress") showFolderCount(data.folder, data.captured_images);
    const ended = ["session_complete", "session_stop", "session_error"].includes(event);
    if (event === "session_progress" || ended) {
      refreshStorage();
      if (gallery.folder === data.folder) refreshGallery();
    }
    if (ended || event === "session_start") refreshStackSources();
    if (ended) {
      refreshFolders();
      clearGalleryMessage(); // a delete the session refused (its folder was busy) may go on now
    }
    if (event === "session_start") refreshFolders();
  } else if (topic === "mount" && event.startsWith("center_")) {
    showCentring(data); // centring a target: its rounds, then its end
  } else if (topic === "mount") {
    showMount(data);
  } else if (topic === "analysis") {
    showAnalysis(data);
  } else if (topic === "solve") {
    showSolution(data);
  } else if (topic === "stack") {
    showStack(data);
  } else if (topic === "calibration") {
    showCalibrationEvent(event, data);
  } else if (topic === "polar_align") {
    showPolar(data);
  }
}

/** The gallery's folder list counts a running session's frames as they are saved (from the event:
 * listing the folders again for every frame would cost the server a scan per viewer). */
function showFolderCount(folder, frames) {
  const option = [...$("gallery-folder").options].find((o) => o.value === folder);
  if (option) option.textContent = `${folder} (${frames})`;
}

function handleCameraEvent(event, data) {
  if (event === "status") {
    showCamera(data);
  } else if (event === "capture_start" || event === "capture_progress") {
    showExposing(data);
  } else if (event === "capture_complete") {
    showExposing(null);
    if (data.path && !data.path.includes("/")) { // a single capture (not a session's frame, nor an unsaved Alpaca one)
      showLastCapture(data);
      if (gallery.folder === "") refreshGallery();
    }
    refreshStorage();
  } else if (event === "capture_error") {
    showExposing(null);
  }
}

export function refreshAll() {
  refreshStorage();
  refreshSite();
  refreshTarget(); // its altitude now
  refreshSolution();
  refreshFolders();
  refreshGallery();
  refreshResumable();
}
