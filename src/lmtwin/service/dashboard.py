"""A one-page dashboard per twin: latest (and fused) state, a live chart of recent
history, the schema and knowledge notes. Self-contained (no CDN): plain JS and a canvas,
fed by the JSON routes and the Server-Sent Events stream."""

from __future__ import annotations

import html
import json

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lmtwin · __TITLE__</title>
<style>
 body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
 h1{font-size:1.4em;margin:0 0 .2em} .muted{color:#777}
 table{border-collapse:collapse;margin:.5em 0}
 td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}
 td.num{text-align:right;font-variant-numeric:tabular-nums}
 #status{display:inline-block;padding:.1em .6em;border-radius:1em;background:#ccc}
 #status.live{background:#3a3;color:#fff}
 .grid{display:grid;grid-template-columns:minmax(300px,1fr) 2fr;gap:1.5em}
 canvas{background:#fff;border:1px solid #ddd;width:100%;height:320px}
 #alerts tr.anomaly td.kind{color:#c0392b;font-weight:600}
 #alerts tr.drift td.kind{color:#d35400;font-weight:600}
 #whatif input[type=number]{width:5em} #whatif-form div{margin:.3em 0}
</style></head>
<body>
<h1>Twin <span id="twin">__TITLE__</span></h1>
<div class="muted">episode <b id="episode"></b> · schema v<span id="version">?</span> ·
 <span id="status">connecting</span> · <span id="count">0</span> live events</div>
<div class="grid">
 <div>
  <h2>State</h2>
  <table id="state"><thead><tr><th>variable</th><th>reading</th><th>fused</th><th>±sd</th>
  <th>next (90%)</th>
  </tr></thead><tbody></tbody></table>
  <h2>Predictors</h2>
  <table id="predictors"><thead><tr><th>predictor</th><th>weight</th><th>MSE</th></tr></thead>
  <tbody></tbody></table><div class="muted" id="coverage"></div>
  <h2>Variables</h2><table id="schema"><tbody></tbody></table>
  <h2>Knowledge</h2><ul id="notes"></ul>
 </div>
 <div><h2>Recent history</h2><canvas id="chart" width="900" height="320"></canvas>
  <div id="legend" class="muted"></div>
  <h2>Open alerts <span id="alert-count" class="muted"></span></h2>
  <table id="alerts"><thead><tr><th title="the time of the reading judged">t</th><th>episode</th>
 <th>variable</th><th>kind</th>
  <th>reading</th><th>predicted</th><th>p-value / CUSUM</th><th></th></tr></thead>
  <tbody></tbody></table><div id="alert-msg" class="muted"></div>
  <div id="whatif"><h2>What-if</h2>
  <div class="muted">two plans, each action held for the horizon, simulated from the
  latest state on the same noise (fan: median and 90% of paths)</div>
  <div id="whatif-form"></div><canvas id="whatif-chart" width="900" height="260"></canvas>
  <div id="whatif-msg" class="muted"></div></div></div>
</div>
<script nonce="__NONCE__">
const TWIN = __NAME__;
const params = new URLSearchParams(location.search);
const KEY = params.get("key");
let EPISODE = params.get("episode") || "default";
// ?follow=1: switch to the episode of the newest observations (a stream of episodes)
const FOLLOW = params.has("follow");
const HEAD = KEY ? {"Authorization": "Bearer " + KEY} : {};
const COLORS = ["#1f77b4","#d62728","#2ca02c","#ff7f0e","#9467bd","#8c564b"];
const base = "/twins/" + encodeURIComponent(TWIN);
let series = {}, events = 0;
document.getElementById("episode").textContent = EPISODE;

async function get(path) {
  const r = await fetch(base + path, {headers: HEAD});
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}
function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;"})[c]);
}
function fmt(x) { return x === undefined || x === null ? "" : Number(x).toPrecision(5); }
function showState(s) {
  const body = document.querySelector("#state tbody");
  body.innerHTML = "";
  const fused = s.fused || {};
  for (const [k, v] of Object.entries(s.values || {})) {
    const f = fused[k];
    const tr = document.createElement("tr");
    tr.dataset.variable = k;
    tr.innerHTML = `<td>${esc(k)}</td><td class="num">${fmt(v)}</td>` +
      `<td class="num" title="${f && f.prior !== null ? "twin's forecast " + fmt(f.prior) +
        ", weight on the reading " + fmt(f.gain) : ""}">${f ? fmt(f.mean) : ""}</td>` +
      `<td class="num">${f ? fmt(f.sd) : ""}</td>` +
      `<td class="num next"></td>`;
    body.appendChild(tr);
  }
}
function addPoint(obs) {
  if (obs.episode !== EPISODE) return;
  for (const [k, v] of Object.entries(obs.values)) {
    (series[k] = series[k] || []).push([obs.t, v]);
    if (series[k].length > 500) series[k].shift();
  }
}
function draw() {
  const c = document.getElementById("chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const names = Object.keys(series);
  // each series is scaled to its own range, shown in the legend
  document.getElementById("legend").innerHTML = names.map((n, i) => {
    const vs = series[n].map(p => p[1]);
    return `<span style="color:${COLORS[i % COLORS.length]}">■ ${esc(n)}</span> ` +
      `${fmt(Math.min(...vs))} to ${fmt(Math.max(...vs))}`;
  }).join(" · ");
  names.forEach((n, i) => {
    const pts = series[n]; if (pts.length < 1) return;
    const ts = pts.map(p => p[0]), vs = pts.map(p => p[1]);
    const t0 = Math.min(...ts), t1 = Math.max(...ts);
    const v0 = Math.min(...vs), v1 = Math.max(...vs);
    const x = t => 40 + (c.width - 50) * (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5);
    const y = v => c.height - 20 - (c.height - 40) * (v1 > v0 ? (v - v0) / (v1 - v0) : 0.5);
    g.strokeStyle = COLORS[i % COLORS.length]; g.lineWidth = 2; g.beginPath();
    pts.forEach((p, j) => j ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1])));
    g.stroke();
  });
  g.fillStyle = "#777"; g.fillText("t →", c.width - 30, c.height - 5);
}
let predicting = false, lastPrediction = 0, shown = null;
function showPrediction(p) {
  for (const v of p.variables) {
    const cell = document.querySelector(`#state tr[data-variable="${v}"] .next`);
    if (!cell) continue;
    const lo = p.lower[v], hi = p.upper[v];
    cell.textContent = fmt(p.mean[v]) + (lo === undefined ? "" : ` [${fmt(lo)}, ${fmt(hi)}]`);
  }
}
async function predictNext() {
  // the twin's next-step prediction from the latest state (at most once a second)
  if (predicting || Date.now() - lastPrediction < 1000) return;
  predicting = true; lastPrediction = Date.now();
  try {
    const r = await fetch(base + "/predict", {method: "POST",
      headers: {...HEAD, "Content-Type": "application/json"},
      body: JSON.stringify({episode: EPISODE, score: false})});
    if (!r.ok) return;
    shown = await r.json();
    showPrediction(shown);
    const perf = await get("/performance");
    document.querySelector("#predictors tbody").innerHTML = Object.keys(perf.mse).map(n =>
      `<tr data-predictor="${esc(n)}"><td>${esc(n)}</td>` +
      `<td class="num">${n in perf.weights ? perf.weights[n].toFixed(2) : ""}</td>` +
      `<td class="num">${fmt(perf.mse[n])}</td></tr>`).join("");
    document.getElementById("coverage").textContent = perf.coverage === null ? "" :
      `${(100 * perf.coverage).toFixed(0)}% of ${perf.n_intervals} intervals held the ` +
      `outcome (nominal ${(100 * perf.level).toFixed(0)}%)`;
  } finally { predicting = false; }
}
// open (unacknowledged) alerts, newest first; a write key can acknowledge them
function showAlert(a) {
  if (a.acknowledged) return;
  const body = document.querySelector("#alerts tbody");
  if (body.querySelector(`tr[data-alert="${a.id}"]`)) return;
  const tr = document.createElement("tr");
  tr.dataset.alert = a.id; tr.className = a.kind;
  const score = a.kind === "anomaly" ? "p " + fmt(a.p_value) : "CUSUM " + fmt(a.martingale);
  tr.innerHTML = `<td class="num">${fmt(a.t)}</td><td>${esc(a.episode)}</td>` +
    `<td>${esc(a.variable)}</td><td class="kind">${esc(a.kind)}</td>` +
    `<td class="num">${fmt(a.actual)}</td><td class="num">${fmt(a.predicted)}</td>` +
    `<td class="num">${score}</td><td><button class="ack" data-id="${a.id}">` +
    `acknowledge</button></td>`;
  body.insertBefore(tr, body.firstChild);
  while (body.children.length > 50) body.removeChild(body.lastChild);
  document.getElementById("alert-count").textContent = `(${body.children.length})`;
}
async function loadAlerts() {
  const open = await get("/alerts?unacknowledged=true&limit=10000");
  document.querySelector("#alerts tbody").innerHTML = "";
  document.getElementById("alert-count").textContent = "(0)";
  open.slice(-50).forEach(showAlert);
}
document.getElementById("alerts").addEventListener("click", async e => {
  const id = e.target.dataset && e.target.dataset.id;
  if (!id) return;
  const r = await fetch(base + "/alerts/" + id + "/ack", {method: "POST",
    headers: {...HEAD, "Content-Type": "application/json"}, body: "{}"});
  const msg = document.getElementById("alert-msg");
  if (r.ok || r.status === 409) {
    const row = document.querySelector(`#alerts tr[data-alert="${id}"]`);
    if (row) row.remove();
    msg.textContent = `alert ${id} acknowledged`;
    document.getElementById("alert-count").textContent =
      `(${document.querySelector("#alerts tbody").children.length})`;
  } else {
    msg.textContent = `alert ${id}: ` + (r.status === 403 ?
      "acknowledging needs a key with the write scope" : "error " + r.status);
  }
});
async function load() {
  const twin = await get("");
  document.getElementById("version").textContent = twin.schema_version;
  const rows = twin.variables.map(v =>
    `<tr><td>${esc(v.name)}</td><td>${esc(v.role)}</td><td>${esc(v.unit)}</td>` +
    `<td class="muted">${esc(v.description)}</td></tr>`);
  document.querySelector("#schema tbody").innerHTML = rows.join("");
  const notes = await get("/knowledge");
  document.getElementById("notes").innerHTML =
    notes.map(n => `<li>${esc(n.text)}</li>`).join("");
  showState(await get("/state?episode=" + encodeURIComponent(EPISODE)));
  const hist = await get("/history?limit=500&episode=" + encodeURIComponent(EPISODE));
  hist.forEach(addPoint); draw();
  await predictNext();
  await loadAlerts();
  document.body.dataset.loaded = "yes";
}
function live() {
  const q = "?episode=" + encodeURIComponent(EPISODE) +
    (KEY ? "&key=" + encodeURIComponent(KEY) : "");
  const es = new EventSource(base + "/events" + q);
  const st = document.getElementById("status");
  es.onopen = () => { st.textContent = "live"; st.className = "live"; };
  es.onerror = () => { st.textContent = "reconnecting"; st.className = ""; };
  es.addEventListener("state", e => {
    const s = JSON.parse(e.data).states[EPISODE];
    if (s) { showState(s); if (shown) showPrediction(shown); predictNext(); }
  });
  es.addEventListener("observations", e => {
    const obs = JSON.parse(e.data).observations;
    const newest = obs.length ? obs[obs.length - 1].episode : EPISODE;
    if (FOLLOW && newest !== EPISODE) {
      EPISODE = newest; series = {}; shown = null; lastPrediction = 0;
      document.getElementById("episode").textContent = EPISODE;
    }
    obs.forEach(addPoint); draw();
    document.getElementById("count").textContent = ++events;
  });
  es.addEventListener("schema", () => load());
  es.addEventListener("knowledge", () => load());
  es.addEventListener("alert", e => showAlert(JSON.parse(e.data)));
}
// what-if: two constant plans compared on the same noise (POST /whatif), as a fan chart
function whatifForm(twin) {
  const acts = twin.variables.filter(v => v.role === "action");
  const states = twin.variables.filter(v => v.role === "state");
  const form = document.getElementById("whatif-form");
  if (!acts.length || !states.length) {
    form.innerHTML = '<span class="muted">needs a state and an action variable</span>';
    return;
  }
  const cell = (p, v) => `<label>${esc(v.name)} <input type="number" step="any" ` +
    `data-plan="${p}" data-action="${esc(v.name)}" value="${p === "A" ?
      (v.lower ?? 0) : (v.upper ?? 1)}"></label>`;
  form.innerHTML = `<div>plan A: ${acts.map(v => cell("A", v)).join(" ")}</div>` +
    `<div>plan B: ${acts.map(v => cell("B", v)).join(" ")}</div>` +
    `<div>lower <select id="whatif-var">${states.map(v =>
      `<option>${esc(v.name)}</option>`).join("")}</select> over ` +
    `<input id="whatif-h" type="number" min="1" max="200" value="20"> steps ` +
    `<button id="whatif-go" type="button">Compare</button></div>`;
}
function drawFan(body, v) {
  const c = document.getElementById("whatif-chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const plans = Object.keys(body.plans);
  const all = plans.flatMap(p => [...body.plans[p].paths.lower[v],
                                  ...body.plans[p].paths.upper[v]]);
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi === lo) { hi += 1; lo -= 1; }
  const X = i => 40 + i * (c.width - 60) / body.horizon;
  const Y = y => c.height - 20 - (y - lo) / (hi - lo) * (c.height - 40);
  plans.forEach((p, k) => {
    const b = body.plans[p].paths, col = COLORS[k % COLORS.length];
    g.globalAlpha = 0.2; g.fillStyle = col; g.beginPath();
    b.lower[v].forEach((y, i) => i ? g.lineTo(X(i), Y(y)) : g.moveTo(X(i), Y(y)));
    for (let i = b.upper[v].length - 1; i >= 0; i--) g.lineTo(X(i), Y(b.upper[v][i]));
    g.fill(); g.globalAlpha = 1; g.strokeStyle = col; g.lineWidth = 2; g.beginPath();
    b.median[v].forEach((y, i) => i ? g.lineTo(X(i), Y(y)) : g.moveTo(X(i), Y(y)));
    g.stroke(); g.fillStyle = col; g.fillText("plan " + p, c.width - 70, 16 + 14 * k);
  });
  g.fillStyle = "#555"; g.fillText(fmt(hi), 2, 14); g.fillText(fmt(lo), 2, c.height - 22);
}
async function runWhatif() {
  const msg = document.getElementById("whatif-msg");
  const h = Math.max(1, Number(document.getElementById("whatif-h").value) || 20);
  const v = document.getElementById("whatif-var").value;
  const plan = p => {
    const step = {};
    document.querySelectorAll(`#whatif-form input[data-plan="${p}"]`).forEach(i => {
      step[i.dataset.action] = Number(i.value); });
    return Array(h).fill(step);
  };
  // within the service's default cost cap (2,000 path-steps a request)
  const n = Math.max(5, Math.min(200, Math.floor(1600 / (2 * h))));
  msg.textContent = "simulating…";
  const r = await fetch(base + "/whatif", {method: "POST",
    headers: {...HEAD, "Content-Type": "application/json"},
    body: JSON.stringify({episode: EPISODE, plans: {A: plan("A"), B: plan("B")},
                          objective: {minimise: {[v]: 1}}, n_paths: n, horizon: h})});
  const body = await r.json();
  if (!r.ok) {
    msg.textContent = `${body.error || r.status}: ` +
      (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    return;
  }
  drawFan(body, v);
  msg.textContent = `P(A gives a lower mean ${v} over the horizon than B, same noise) = ` +
    `${body.beats.A.B.toFixed(2)} · mean ${v}: A ${fmt(body.plans.A.mean)}, ` +
    `B ${fmt(body.plans.B.mean)} (${body.n_paths} paths each)`;
  document.getElementById("whatif").dataset.done = "yes";
}
document.getElementById("whatif").addEventListener("click", e => {
  if (e.target.id === "whatif-go") runWhatif();
});
get("").then(whatifForm).catch(() => {});
load().then(live).catch(err => { document.body.dataset.loaded = "error: " + err; });
</script>
</body></html>
"""


def dashboard_page(name: str, nonce: str) -> str:
    """The HTML of ``name``'s dashboard (a twin name is already restricted to [A-Za-z0-9_]);
    ``nonce`` is the Content-Security-Policy nonce that lets its one script run."""
    return (_PAGE.replace("__TITLE__", html.escape(name)).replace("__NAME__", json.dumps(name))
            .replace("__NONCE__", html.escape(nonce)))
