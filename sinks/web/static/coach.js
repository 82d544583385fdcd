// batsight coach's live view: video + skeleton, dependency matrix (thesis Fig. 3), wrist path and
// r(t) with their fits (Figs. 4-5), pair similarity over time (Fig. 6), shots, per-source health.
"use strict";

const HISTORY_S = 12;           // seconds of pair-similarity history drawn
const FRAMES_KEPT = 8;          // decoded frames kept per source to match a pose to its own frame
const SHOT_COLORS = { pull: "rgba(255,99,132,0.22)", cover_drive: "rgba(54,162,235,0.25)", other: "rgba(200,200,200,0.16)" };
const PAIR_COLORS = ["#00e5ff", "#ffb000", "#ff4d6d", "#7ee081", "#c792ea"];
const SKELETON_STYLE = { color: "#00e5ff", outline: "rgba(0,0,0,0.6)", lineWidth: 3, jointRadius: 4, minConf: 0.3 };

const sources = new Map();      // source id -> state
let selected = QUERY.get("source");
let health = null;
const dirty = new Set();
let layoutLandscape = false;

const $ = (id) => document.getElementById(id);
const sourceSelect = $("source"), statusEl = $("status"), matrixKind = $("matrix-kind");

function stateOf(id) {
  if (!sources.has(id)) {
    sources.set(id, { frames: new Map(), lastFrame: null, pose: null, sim: null, fit: null, fits: [], pairs: {},
      shots: [], eos: null, engineMs: null });
    const option = document.createElement("option");
    option.value = option.textContent = id;
    sourceSelect.appendChild(option);
    if (selected == null) selected = id;
    sourceSelect.value = selected;
  }
  return sources.get(id);
}

function decodeFrame(s, m) {
  const bytes = Uint8Array.from(atob(m.arrays.jpeg), (c) => c.charCodeAt(0));
  createImageBitmap(new Blob([bytes], { type: "image/jpeg" })).then((bitmap) => {
    s.frames.set(m.frame_index, bitmap);
    s.lastFrame = bitmap;
    while (s.frames.size > FRAMES_KEPT) {
      const oldest = s.frames.keys().next().value;
      s.frames.get(oldest).close?.();
      s.frames.delete(oldest);
    }
    if (m.source_id === selected) dirty.add("video");
  }).catch(() => {});
}

function trimHistory(list, tNow, keepS) {
  while (list.length && list[0][0] < tNow - keepS) list.shift();
}

function onMessage(m) {
  if (m.kind === "health") {
    health = m;
    for (const id of Object.keys(m.sources)) stateOf(id);
    dirty.add("health");
    return;
  }
  const s = stateOf(m.source_id);
  const mine = m.source_id === selected;
  switch (m.kind) {
    case "frame": decodeFrame(s, m); return;
    case "pose":
      s.pose = m;
      s.engineMs = (m.publish_time_ns - m.capture_time_ns) / 1e6;
      if (mine) dirty.add("video").add("health");
      return;
    case "sim":
      s.sim = m;
      for (const [name, v] of Object.entries(m.pairs)) {
        (s.pairs[name] ||= []).push([m.pts_s, v]);
        trimHistory(s.pairs[name], m.pts_s, HISTORY_S);
      }
      if (mine) dirty.add("matrix").add("pairs");
      return;
    case "fit":
      s.fit = m;
      s.fits.push([m.pts_s, m.dx, m.dy]);
      trimHistory(s.fits, m.pts_s, Math.max(m.pts_s - m.t_start_s, 0.5) + 0.5);
      if (mine) dirty.add("traj");
      return;
    case "shot":
      if (!s.shots.some((x) => x.shot_index === m.shot_index)) s.shots.push(m);
      if (mine) dirty.add("shots").add("pairs");
      return;
    case "eos": s.eos = m; dirty.add("health"); return;
  }
}

function onStatus(status) {
  statusEl.dataset.state = status;
  statusEl.textContent = statusText(status);
}

// ----------------------------------------------------------------------------------- panels
function renderVideo(s) {
  const canvas = $("video");
  const [ctx, w, h] = sizedContext(canvas);
  const p = s.pose;
  if (!p) return;
  const fw = p.frame_width, fh = p.frame_height;
  if (document.body.classList.toggle("landscape", fw > fh) !== layoutLandscape) {
    layoutLandscape = fw > fh;
    redrawAll();
    return;
  }
  const scale = Math.min(w / fw, h / fh);
  const ox = (w - fw * scale) / 2, oy = (h - fh * scale) / 2;
  const image = s.frames.get(p.frame_index) || s.lastFrame;
  if (image) ctx.drawImage(image, ox, oy, fw * scale, fh * scale);
  else {
    ctx.fillStyle = "#0b0f13";
    ctx.fillRect(ox, oy, fw * scale, fh * scale);
    ctx.fillStyle = AXIS;
    ctx.textAlign = "center";
    ctx.fillText("no video (frame/ topic off)", w / 2, h / 2);
  }
  const boxes = p.arrays.persons_xyxy || [];
  ctx.strokeStyle = "rgba(255,255,255,0.35)";
  ctx.lineWidth = 1;
  boxes.forEach((b, i) => {
    if (p.arrays.persons_track_id[i] === p.track_id) return;
    ctx.strokeRect(ox + b[0] * scale, oy + b[1] * scale, (b[2] - b[0]) * scale, (b[3] - b[1]) * scale);
  });
  if (p.batter_found && p.arrays.keypoints_xy) {
    drawSkeleton(ctx, p.arrays.keypoints_xy, p.arrays.keypoints_conf, { sx: scale, sy: scale, ox, oy }, SKELETON_STYLE);
    window.batsight.lastDrawn = { source_id: p.source_id, frame_index: p.frame_index };
    recordLatency(p);
  }
  $("frameinfo").textContent = `frame ${p.frame_index}  ${p.pts_s.toFixed(2)} s` +
    (p.batter_found ? `  batter #${p.track_id}` : "  no batter");
  countDraw("video");
}

function renderMatrix(s) {
  if (!s.sim) return;
  const fit = s.fit;
  const pair = fit ? [COCO_NAMES.indexOf(fit.wrist), COCO_NAMES.indexOf(fit.shoulder)] : null;
  drawHeatmap($("matrix"), s.sim.arrays[matrixKind.value], COCO_NAMES, pair && pair[0] >= 0 ? pair : null);
  countDraw("matrix");
}

function fitCurve(coef, a, b, n = 120) {
  const out = [];
  for (let i = 0; i <= n; i++) {
    const t = a + ((b - a) * i) / n;
    out.push([t, legendre(coef, a, b, t)]);
  }
  return out;
}

function renderTrajectory(s) {
  const f = s.fit;
  if (!f) return;
  const pts = s.fits.filter(([t]) => t >= f.t_start_s - 1e-9);
  const a = f.t_start_s, b = f.t_end_s;
  const dxs = fitCurve(f.arrays.dx_coef, a, b), dys = fitCurve(f.arrays.dy_coef, a, b);
  const curve = dxs.map(([, x], i) => [x, dys[i][1]]);
  const xs = pts.map((q) => q[1]).concat(curve.map((q) => q[0]));
  const ys = pts.map((q) => q[2]).concat(curve.map((q) => q[1]));
  $("traj-note").textContent = `${f.wrist} \u2212 ${f.shoulder}, Legendre degree ${f.degree_xy}, last ${(b - a).toFixed(1)} s`;
  drawChart($("traj"), {
    xlim: extent(xs, 0.08, [-0.2, 0.2]), ylim: extent(ys, 0.08, [-0.2, 0.2]), invertY: true,
    xlabel: "\u0394x (frame widths)", ylabel: "\u0394y (heights, down)",
    series: [
      { points: pts.map((q) => [q[1], q[2]]), color: "#8b98a5", style: "dots", width: 2.5, label: "wrist" },
      { points: curve, color: "#ffb000", style: "line", width: 2.5, label: "fit" },
      { points: pts.length ? [[pts[pts.length - 1][1], pts[pts.length - 1][2]]] : [], color: "#ff4d6d", style: "dots", width: 5 },
    ],
  });
  const rPts = pts.map(([t, dx, dy]) => [t, dx == null || dy == null ? null : Math.hypot(dx, dy)]);
  const rCurve = fitCurve(f.arrays.r_coef, a, b);
  drawChart($("rt"), {
    xlim: [a, Math.max(b, a + 0.1)], ylim: extent(rPts.map((q) => q[1]).concat(rCurve.map((q) => q[1])), 0.1, [0, 0.3]),
    xlabel: "t (s)", ylabel: "r (normalised)",
    series: [
      { points: rPts, color: "#8b98a5", style: "dots", width: 2.5, label: "r" },
      { points: rCurve, color: "#7ee081", style: "line", width: 2.5, label: "quadratic" },
    ],
  });
  countDraw("traj");
}

function renderPairs(s) {
  const names = Object.keys(s.pairs);
  const tNow = s.sim ? s.sim.pts_s : 0;
  const spans = s.shots.map((shot) => ({
    x0: shot.start_s, x1: shot.end_s, color: SHOT_COLORS[shot.label] || SHOT_COLORS.other,
    label: `${shotName(shot)} ${shotConfidence(shot)}`,
  }));
  drawChart($("pairs"), {
    xlim: [Math.max(0, tNow - HISTORY_S), Math.max(tNow, 1)], ylim: [0, 1], xlabel: "t (s)", ylabel: "cosine similarity",
    spans,
    series: names.map((name, i) => ({ points: s.pairs[name], color: PAIR_COLORS[i % PAIR_COLORS.length], style: "line", width: 2, label: name })),
    empty: names.length ? "" : "waiting for sim/ messages",
  });
  countDraw("pairs");
}

function renderShots(s) {
  const body = $("shots").tBodies[0];
  body.replaceChildren(...s.shots.slice().reverse().map((shot, i) => {
    const row = document.createElement("tr");
    if (i === 0) row.className = "newest";
    const cells = [shot.shot_index + 1, shotName(shot), shotConfidence(shot),
      `${shot.start_s.toFixed(2)}\u2013${shot.end_s.toFixed(2)}`];
    cells.forEach((text, k) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (k === 1) td.className = "shot-label";
      row.appendChild(td);
    });
    return row;
  }));
  $("shots-note").textContent = s.shots.length ? `${s.shots.length} so far` : "none yet";
}

function median(values) {
  if (!values.length) return null;
  const v = values.slice().sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
}

function renderHealth() {
  const lat = window.batsightLatency;
  const pageMs = median(lat.drawn_ms.slice(-30));
  const rows = [...sources.entries()].map(([id, s]) => {
    const h = health && health.sources[id];
    const state = s.eos ? `ended (${s.eos.reason})` : h ? h.state : "\u2013";
    const engine = s.engineMs == null ? "\u2013" : s.engineMs.toFixed(0);
    const page = id === selected && pageMs != null ? pageMs.toFixed(0) : "\u2013";
    const cells = [id, state, h ? h.fps_out.toFixed(1) : "\u2013", h ? h.dropped : "\u2013", `${engine} / ${page}`];
    const row = document.createElement("tr");
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      row.appendChild(td);
    }
    return row;
  });
  $("health").tBodies[0].replaceChildren(...rows);
}

const RENDER = { video: renderVideo, matrix: renderMatrix, traj: renderTrajectory, pairs: renderPairs, shots: renderShots };

function frame() {
  requestAnimationFrame(frame);
  if (window.batsight.paused || !dirty.size) return;
  const s = sources.get(selected);
  const todo = [...dirty];
  dirty.clear();
  for (const what of todo) {
    if (what === "health") renderHealth();
    else if (s) RENDER[what](s);
  }
}

function redrawAll() {
  for (const what of ["video", "matrix", "traj", "pairs", "shots", "health"]) dirty.add(what);
}

sourceSelect.addEventListener("change", () => { selected = sourceSelect.value; redrawAll(); });
matrixKind.addEventListener("change", () => dirty.add("matrix"));
window.addEventListener("resize", redrawAll);
$("pause").addEventListener("click", (event) => {
  const b = window.batsight;
  if (b.paused) b.resume(); else b.pause();
  event.target.textContent = b.paused ? "Resume" : "Pause";
  redrawAll();
});
fetch("/api/state").then((r) => r.json()).then((state) => {
  if (state.title) { $("title").textContent = state.title; document.title = state.title + " live view"; }
}).catch(() => {});
new Feed(selected ? "source=" + encodeURIComponent(selected) : "", onMessage, onStatus);
requestAnimationFrame(frame);
