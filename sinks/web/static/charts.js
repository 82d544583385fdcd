// batsight coach view: canvas charts (heatmap with keypoint names, x-y plots), no library.
"use strict";

const CHART_FONT = "12px system-ui, sans-serif";
const AXIS = "#8b98a5", GRID = "#2a3542", TEXT = "#e6edf3";

// Fit a canvas' backing store to its CSS box (sharp on HiDPI); returns [ctx, width, height] in CSS px.
function sizedContext(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(10, Math.floor(canvas.clientWidth)), h = Math.max(10, Math.floor(canvas.clientHeight));
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return [ctx, w, h];
}

// Viridis (matplotlib), 9 stops, linearly interpolated; v in [0, 1].
const VIRIDIS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];
function viridis(v) {
  const x = Math.min(1, Math.max(0, v)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x)), f = x - i;
  const c = VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// 17x17 matrix (nested lists, null = NaN) as a heatmap, rows and columns named, colour bar 0..1.
function drawHeatmap(canvas, matrix, names, highlight) {
  const [ctx, w, h] = sizedContext(canvas);
  const n = names.length;
  const barW = 46;
  // Font and cells sized together: the names take ~7 characters' width at the chosen font size.
  let fontPx = 13, labelW = 0, cell = 0;
  for (; fontPx >= 8; fontPx--) {
    ctx.font = `${fontPx}px system-ui, sans-serif`;
    labelW = Math.max(...names.map((name) => ctx.measureText(name).width)) + 8;
    cell = Math.floor(Math.min((w - labelW - barW) / n, (h - labelW - 6) / n));
    if (cell >= fontPx + 3) break;
  }
  cell = Math.max(4, cell);
  const x0 = labelW, y0 = 4;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const v = matrix[i] ? matrix[i][j] : null;
      ctx.fillStyle = v == null ? "#333" : viridis(v);
      ctx.fillRect(x0 + j * cell, y0 + i * cell, cell - 1, cell - 1);
    }
  }
  if (highlight) {
    ctx.strokeStyle = "#ff4d6d";
    ctx.lineWidth = 2;
    for (const [i, j] of [highlight, [highlight[1], highlight[0]]]) {
      ctx.strokeRect(x0 + j * cell - 1, y0 + i * cell - 1, cell + 1, cell + 1);
    }
  }
  ctx.fillStyle = TEXT;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  names.forEach((name, i) => ctx.fillText(name, x0 - 4, y0 + i * cell + cell / 2));
  ctx.save();
  ctx.textAlign = "right";
  names.forEach((name, j) => {
    ctx.save();
    ctx.translate(x0 + j * cell + cell / 2, y0 + n * cell + 4);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(name, 0, 0);
    ctx.restore();
  });
  ctx.restore();
  // colour bar
  const bx = x0 + n * cell + 12, bh = n * cell;
  for (let k = 0; k < bh; k++) {
    ctx.fillStyle = viridis(1 - k / bh);
    ctx.fillRect(bx, y0 + k, 12, 1);
  }
  ctx.fillStyle = AXIS;
  ctx.textAlign = "left";
  ctx.font = CHART_FONT;
  for (const v of [0, 0.5, 1]) ctx.fillText(v.toFixed(1), bx + 16, y0 + (1 - v) * bh);
}

function niceTicks(lo, hi, count) {
  const span = hi - lo || 1;
  const step0 = span / count, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function extent(values, pad, fallback) {
  const finite = values.filter((v) => v != null && Number.isFinite(v));
  if (!finite.length) return fallback;
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (hi - lo < 1e-9) { lo -= 0.05; hi += 0.05; }
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

// An x-y chart. spec: {xlim, ylim, invertY, xlabel, ylabel, series: [{points: [[x, y]], color,
// style: "dots" | "line", width, label}], spans: [{x0, x1, color, label}], empty: text}.
function drawChart(canvas, spec) {
  const [ctx, w, h] = sizedContext(canvas);
  ctx.font = CHART_FONT;
  const m = { l: 52, r: 12, t: 8, b: 34 };
  const pw = w - m.l - m.r, ph = h - m.t - m.b;
  const [xa, xb] = spec.xlim, [ya, yb] = spec.ylim;
  const X = (x) => m.l + ((x - xa) / (xb - xa || 1)) * pw;
  const Y = (y) => spec.invertY ? m.t + ((y - ya) / (yb - ya || 1)) * ph : m.t + ph - ((y - ya) / (yb - ya || 1)) * ph;
  for (const span of spec.spans || []) {
    const s0 = Math.max(X(span.x0), m.l), s1 = Math.min(X(span.x1), m.l + pw);
    if (s1 <= s0) continue;
    ctx.fillStyle = span.color;
    ctx.fillRect(s0, m.t, s1 - s0, ph);
    if (span.label) {  // at the bottom, away from the legend
      ctx.fillStyle = TEXT;
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      ctx.fillText(span.label, Math.min(s0 + 3, m.l + pw - ctx.measureText(span.label).width - 3), m.t + ph - 3);
    }
  }
  ctx.strokeStyle = GRID;
  ctx.lineWidth = 1;
  ctx.fillStyle = AXIS;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of niceTicks(xa, xb, Math.max(2, Math.floor(pw / 70)))) {
    ctx.beginPath(); ctx.moveTo(X(t), m.t); ctx.lineTo(X(t), m.t + ph); ctx.stroke();
    ctx.fillText(+t.toFixed(3), X(t), m.t + ph + 4);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of niceTicks(ya, yb, Math.max(2, Math.floor(ph / 40)))) {
    ctx.beginPath(); ctx.moveTo(m.l, Y(t)); ctx.lineTo(m.l + pw, Y(t)); ctx.stroke();
    ctx.fillText(+t.toFixed(3), m.l - 5, Y(t));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText(spec.xlabel || "", m.l + pw / 2, h - 1);
  ctx.save();
  ctx.translate(11, m.t + ph / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(spec.ylabel || "", 0, 0);
  ctx.restore();
  ctx.save();
  ctx.beginPath();
  ctx.rect(m.l, m.t, pw, ph);
  ctx.clip();
  for (const s of spec.series) {
    ctx.strokeStyle = ctx.fillStyle = s.color;
    if (s.style === "line") {
      ctx.lineWidth = s.width || 2;
      ctx.beginPath();
      let pen = false;
      for (const [x, y] of s.points) {
        if (x == null || y == null) { pen = false; continue; }
        if (pen) ctx.lineTo(X(x), Y(y)); else ctx.moveTo(X(x), Y(y));
        pen = true;
      }
      ctx.stroke();
    } else {
      const r = s.width || 2.5;
      for (const [x, y] of s.points) {
        if (x == null || y == null) continue;
        ctx.beginPath(); ctx.arc(X(x), Y(y), r, 0, 2 * Math.PI); ctx.fill();
      }
    }
  }
  ctx.restore();
  const labelled = spec.series.filter((s) => s.label);
  ctx.textAlign = "right";
  ctx.textBaseline = "top";
  if (labelled.length) {  // legend on a backing box, top right
    const boxW = Math.max(...labelled.map((s) => ctx.measureText(s.label).width)) + 10;
    ctx.fillStyle = "rgba(23,30,38,0.85)";
    ctx.fillRect(m.l + pw - boxW - 2, m.t + 2, boxW, 15 * labelled.length + 4);
  }
  labelled.forEach((s, i) => {
    ctx.fillStyle = s.color;
    ctx.fillText(s.label, m.l + pw - 6, m.t + 5 + 15 * i);
  });
  if (spec.empty) {
    ctx.fillStyle = AXIS;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(spec.empty, m.l + pw / 2, m.t + ph / 2);
  }
}
