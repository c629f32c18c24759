// The histogram and focus panel, filled when the server publishes the `analysis` topic: levels,
// star count, HFR and FWHM, and the HFR trend while focusing.

import { $ } from "./dom.js";

const TREND_POINTS = 120; // a minute at two analyses a second
const hfrTrend = [];

export function showAnalysis(data) {
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

export function setupAnalysis() {
  $("hfr-reset").addEventListener("click", () => { hfrTrend.length = 0; drawTrend(); });
}
