// batsight broadcast overlay: the batter's skeleton and the last shot's label on a transparent page
// (OBS Browser Source, CasparCG HTML template, vMix). Options come from the query string; see README.
"use strict";

const WIDTH = Math.round(qNumber("width", 1920));
const HEIGHT = Math.round(qNumber("height", 1080));
const ELEMENTS = new Set(qString("elements", "skeleton,label,status").split(",").map((s) => s.trim()));
const STYLE = {
  color: qColor("color", "#00e5ff"),
  jointColor: qColor("joint_color", ""),
  outline: QUERY.get("outline") === "none" ? "none" : qColor("outline", "rgba(0,0,0,0.55)"),
  lineWidth: qNumber("line_width", Math.max(2, Math.round(HEIGHT / 180))),
  jointRadius: qNumber("joint_radius", Math.max(3, Math.round(HEIGHT / 135))),
  minConf: qNumber("min_conf", 0.3),
};
if (STYLE.outline === "none") STYLE.outline = "";
const FIT = qString("fit", "contain"); // contain: keep the source's aspect, centred; stretch: fill
const LABEL_S = qNumber("label_s", 4);
const LABEL_POS = qString("label_pos", "bottom-left");
const LABEL_PX = qNumber("label_px", Math.round(HEIGHT / 20));
const PREVIEW = QUERY.get("preview") === "1"; // draw the video under the overlay (checking alignment)
let source = QUERY.get("source");
// Without ?source=, follow the first source seen running (a live pose, not the replayed state of a
// source that has ended), and the next one when it ends.
const FOLLOW_ANY = source == null;
const ended = new Set();
const frames = new Map(); // preview: frame_index -> decoded frame

const canvas = document.getElementById("overlay");
canvas.width = WIDTH;
canvas.height = HEIGHT;
canvas.style.width = WIDTH + "px";
canvas.style.height = HEIGHT + "px";
const ctx = canvas.getContext("2d");

const label = document.getElementById("label");
label.style.fontSize = LABEL_PX + "px";
label.style.color = qColor("label_color", "#ffffff");
label.style.background = qColor("label_bg", "rgba(200,16,46,0.92)");
const margin = Math.round(HEIGHT / 18) + "px";
label.style[LABEL_POS.startsWith("top") ? "top" : "bottom"] = margin;
label.style[LABEL_POS.endsWith("right") ? "right" : "left"] = margin;

const statusEl = document.getElementById("status");
if (!ELEMENTS.has("status")) statusEl.remove();

let pose = null;      // latest pose of the source, not drawn yet
let labelTimer = null;

// Source frame pixels -> canvas pixels: the programme shows the source scaled to fit (or stretched).
function mapping(p) {
  let sx = WIDTH / p.frame_width, sy = HEIGHT / p.frame_height;
  if (FIT !== "stretch") sx = sy = Math.min(sx, sy);
  return { sx, sy, ox: (WIDTH - p.frame_width * sx) / 2, oy: (HEIGHT - p.frame_height * sy) / 2 };
}
window.batsight.mapping = mapping;

function showLabel(shot) {
  if (!ELEMENTS.has("label") || !shot.label) return;
  label.textContent = shotName(shot);
  const small = document.createElement("small");
  small.textContent = shotConfidence(shot);
  label.appendChild(small);
  label.style.display = "block";
  window.batsight.labelShown = (window.batsight.labelShown || 0) + 1;
  clearTimeout(labelTimer);
  labelTimer = setTimeout(() => { label.style.display = "none"; }, LABEL_S * 1000);
}

function onMessage(m) {
  if (m.kind === "health") return;
  if (m.kind === "eos") ended.add(m.source_id);
  if (source == null && m.kind === "pose" && !m.replay && !ended.has(m.source_id)) {
    source = m.source_id;
    window.batsight.followed = source;
  }
  if (m.source_id !== source) return;
  if (m.kind === "frame") decodePreview(m);
  else if (m.kind === "pose") pose = m;
  else if (m.kind === "shot" && !m.replay) showLabel(m);
  else if (m.kind === "eos") {
    pose = { clear: true };
    if (FOLLOW_ANY) source = null;
  }
}

function decodePreview(m) {
  const bytes = Uint8Array.from(atob(m.arrays.jpeg), (c) => c.charCodeAt(0));
  createImageBitmap(new Blob([bytes], { type: "image/jpeg" })).then((bitmap) => {
    frames.set(m.frame_index, bitmap);
    while (frames.size > 8) frames.delete(frames.keys().next().value);
  }).catch(() => {});
}

function onStatus(status) {
  if (statusEl.isConnected) {
    statusEl.dataset.state = status;
    statusEl.textContent = statusText(status);
  }
  if (status === "reconnecting") pose = { clear: true }; // a frozen skeleton must not stay on air
}

function frame() {
  requestAnimationFrame(frame);
  if (pose === null || window.batsight.paused) return;
  const p = pose;
  pose = null;
  ctx.clearRect(0, 0, WIDTH, HEIGHT);
  window.batsight.lastDrawn = null; // what the canvas shows now: nothing, until a skeleton is drawn below
  if (p.clear) return;
  const map = mapping(p);
  if (PREVIEW && frames.size) {
    const image = frames.get(p.frame_index) || [...frames.values()].pop();
    ctx.drawImage(image, map.ox, map.oy, p.frame_width * map.sx, p.frame_height * map.sy);
  }
  const kps = p.arrays.keypoints_xy;
  if (!p.batter_found || !kps || !ELEMENTS.has("skeleton")) return;
  drawSkeleton(ctx, kps, p.arrays.keypoints_conf, map, STYLE);
  window.batsight.lastDrawn = { source_id: p.source_id, frame_index: p.frame_index };
  countDraw("skeleton");
  recordLatency(p);
}

const kinds = "kinds=pose,shot,eos" + (PREVIEW ? ",frame" : "");
new Feed(source ? "source=" + encodeURIComponent(source) + "&" + kinds : kinds, onMessage, onStatus);
requestAnimationFrame(frame);
