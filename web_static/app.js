// WANDA's browser client: no build step, nothing from the internet.
//
// State comes from the server's WebSocket events (every browser shows the same thing; a
// reconnect gets every topic's status again); commands go over REST, whose envelope carries the
// error message shown next to the control that caused it.
//
// This entry wires the panels together; each module owns one panel or concern.

import { setupAnalysis } from "./analysis.js";
import { setupCamera } from "./camera.js";
import { setupCapture } from "./capture.js";
import { setupClock } from "./clock.js";
import { $ } from "./dom.js";
import { setupGallery } from "./gallery.js";
import { pollStreamState, setupLiveView } from "./live.js";
import { setupMount } from "./mount.js";
import { setupNightMode } from "./night.js";
import { setupPolar } from "./polar.js";
import { setupSession } from "./session.js";
import { setupSite } from "./site.js";
import { setupSky } from "./sky.js";
import { setupStack } from "./stack.js";
import { connect, refreshAll, subscribe } from "./socket.js";
import { refreshStorage } from "./storage.js";

setupNightMode();
setupLiveView();
setupCamera();
setupCapture();
setupClock();
setupSession();
setupMount();
setupSite();
setupSky(subscribe); // its Follow toggle asks for the solve topic
setupStack();
setupPolar();
setupGallery();
$("analysis-panel").addEventListener("toggle", subscribe); // the analysis topic follows its panel
setupAnalysis();
connect();
refreshAll();
pollStreamState();
setInterval(pollStreamState, 2000);
setInterval(refreshStorage, 30000);
