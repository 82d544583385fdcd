// batsight web pages: shared code (plain JS, no build step, no CDN).
// The feed (/ws) with reconnect and backoff, COCO keypoint names and skeleton edges, the skeleton
// painter, Legendre series evaluation, and the counters the tests and the latency benchmark read.
"use strict";

const COCO_NAMES = [
  "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
  "right_knee", "left_ankle", "right_ankle",
];
// COCO person skeleton (pycocotools / Ultralytics), 0-based keypoint indices.
const SKELETON = [
  [15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7], [6, 8],
  [7, 9], [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6],
];

// Counters and hooks for tests and benchmarks (read with page.evaluate / wait_for_function).
const LATENCY_KEEP = 20000;
window.batsight = {
  status: "connecting", connects: 0, messages: 0, counts: {}, draws: {}, lastDrawn: null, paused: false,
  pause() { this.paused = true; }, resume() { this.paused = false; },
};
// One entry per pose drawn (skeleton on screen): capture -> drawn, capture -> engine publish,
// capture -> received by the page, all in ms (Date.now() against the capture_time_ns Unix clock).
window.batsightLatency = { frame_index: [], drawn_ms: [], publish_ms: [], received_ms: [] };

function countDraw(what) {
  window.batsight.draws[what] = (window.batsight.draws[what] || 0) + 1;
}

function recordLatency(pose) {
  if (pose.capture_time_ns == null) return;
  const captureMs = pose.capture_time_ns / 1e6;
  const lat = window.batsightLatency;
  if (lat.drawn_ms.length >= LATENCY_KEEP) {
    for (const key of Object.keys(lat)) lat[key].shift();
  }
  lat.frame_index.push(pose.frame_index);
  lat.drawn_ms.push(Date.now() - captureMs);
  lat.publish_ms.push(pose.publish_time_ns / 1e6 - captureMs);
  lat.received_ms.push(pose._received_ms - captureMs);
}

// numpy.polynomial.Legendre(coef, domain=[a, b])(t): map t to [-1, 1], then Bonnet's recurrence
// (n+1) P_{n+1}(x) = (2n+1) x P_n(x) - n P_{n-1}(x).
function legendre(coef, a, b, t) {
  const x = b > a ? (2 * t - (a + b)) / (b - a) : 0;
  let p0 = 1, p1 = x, sum = coef.length ? coef[0] : 0;
  for (let n = 1; n < coef.length; n++) {
    sum += coef[n] * p1;
    const p2 = ((2 * n + 1) * x * p1 - n * p0) / (n + 1);
    p0 = p1; p1 = p2;
  }
  return sum;
}

// Draw a skeleton: keypoints [[x, y], ...] in source pixels, mapped by (x * sx + ox, y * sy + oy).
// Joints with confidence < minConf (or null) are left out with their edges.
function drawSkeleton(ctx, kps, conf, map, style) {
  const ok = (k) => kps[k] && kps[k][0] != null && kps[k][1] != null && (conf == null || (conf[k] ?? 0) >= style.minConf);
  const at = (k) => [kps[k][0] * map.sx + map.ox, kps[k][1] * map.sy + map.oy];
  ctx.save();
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (style.outline) {
    ctx.strokeStyle = style.outline;
    ctx.lineWidth = style.lineWidth + 2 * Math.max(1, style.lineWidth / 4);
    strokeEdges(ctx, ok, at);
  }
  ctx.strokeStyle = style.color;
  ctx.lineWidth = style.lineWidth;
  strokeEdges(ctx, ok, at);
  ctx.fillStyle = style.jointColor || style.color;
  for (let k = 0; k < kps.length; k++) {
    if (!ok(k)) continue;
    const [x, y] = at(k);
    ctx.beginPath();
    ctx.arc(x, y, style.jointRadius, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.restore();
}

function strokeEdges(ctx, ok, at) {
  ctx.beginPath();
  for (const [a, b] of SKELETON) {
    if (!ok(a) || !ok(b)) continue;
    const [xa, ya] = at(a), [xb, yb] = at(b);
    ctx.moveTo(xa, ya);
    ctx.lineTo(xb, yb);
  }
  ctx.stroke();
}

// The WebSocket feed: reconnects by itself with exponential backoff (0.25 s doubling to 5 s) and
// reports its status: "connecting", "live", "quiet" (open, nothing for quietS), "reconnecting".
class Feed {
  constructor(query, onMessage, onStatus, quietS = 3) {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${proto}//${location.host}/ws${query ? "?" + query : ""}`;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.quietMs = quietS * 1000;
    this.backoffMs = 250;
    this.lastMessageMs = 0;
    this.connect();
    setInterval(() => this.checkQuiet(), 500);
  }

  setStatus(status) {
    if (window.batsight.status === status) return;
    window.batsight.status = status;
    this.onStatus(status);
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      window.batsight.connects += 1;
      this.backoffMs = 250;
      this.lastMessageMs = Date.now();
      this.setStatus("live");
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      message._received_ms = Date.now();
      this.lastMessageMs = message._received_ms;
      const b = window.batsight;
      b.messages += 1;
      b.counts[message.kind] = (b.counts[message.kind] || 0) + 1;
      if (b.status !== "live") this.setStatus("live");
      this.onMessage(message);
    };
    ws.onclose = () => {
      this.setStatus("reconnecting");
      const delay = this.backoffMs * (0.8 + 0.4 * Math.random());
      this.backoffMs = Math.min(this.backoffMs * 2, 5000);
      setTimeout(() => this.connect(), delay);
    };
    ws.onerror = () => ws.close();
  }

  checkQuiet() {
    if (this.ws.readyState === WebSocket.OPEN && Date.now() - this.lastMessageMs > this.quietMs) {
      this.setStatus("quiet");
    }
  }
}

// "cover drive", "87%" for a shot/ message (label or confidence may be null: no prediction).
function shotName(shot) {
  return shot.label ? shot.label.replace(/_/g, " ") : "unclassified";
}
function shotConfidence(shot) {
  return shot.confidence == null ? "\u2013" : Math.round(100 * shot.confidence) + "%";
}

function statusText(status, sinceMs) {
  switch (status) {
    case "live": return "live";
    case "quiet": return "connected, no data";
    case "reconnecting": return "reconnecting \u2014 stale";
    default: return "connecting";
  }
}

// Query-string option helpers.
const QUERY = new URLSearchParams(location.search);
function qNumber(name, fallback) {
  const v = parseFloat(QUERY.get(name));
  return Number.isFinite(v) ? v : fallback;
}
function qString(name, fallback) {
  const v = QUERY.get(name);
  return v == null || v === "" ? fallback : v;
}
// A CSS colour from the query: "#ff0000", "ff0000" (the "#" is easily lost in a URL), "red",
// "rgba(...)"; anything else falls back, with a console warning naming the option.
function qColor(name, fallback) {
  let v = qString(name, fallback);
  if (/^[0-9a-f]{3,8}$/i.test(v)) v = "#" + v;
  if (v !== "" && !CSS.supports("color", v)) {
    console.warn("batsight: option " + name + "=" + QUERY.get(name) + " is not a CSS colour; using " + fallback);
    return fallback;
  }
  return v;
}
