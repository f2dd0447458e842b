// SPDX-License-Identifier: MPL-2.0
// status_page.cpp — the broker's status page, served at / by `zmesh broker --http`.
//
// One self-contained HTML document (no CDN, nothing fetched but /api/status). Its script polls
// /api/status every second and redraws in place: the totals, a table of services (queues,
// workers, in flight, request rate, latency), the forwarder and the DLQ, and a chart of the
// request rate and the median latency over the last five minutes. The rate and the median are
// computed here from the differences between two polls, so the broker keeps no history for it.
// Elements carry ids (and rows data-service) so that a test in a real browser can find them.
#include "http_status.hpp"

namespace zmesh::cli {

namespace {

constexpr const char page[] = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>zmesh broker</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
 h1 { font-size: 1.3em; margin: 0 0 .3em; }
 h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
 .muted { color: #777; }
 .cards { display: flex; flex-wrap: wrap; gap: .6em; }
 .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: .5em .8em; min-width: 8em; }
 .card b { display: block; font-size: 1.3em; }
 table { border-collapse: collapse; background: #fff; }
 th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
 th:first-child, td:first-child { text-align: left; }
 #state.down { color: #b00; }
 svg { background: #fff; border: 1px solid #ddd; border-radius: 6px; }
 .rate { stroke: #1f77b4; fill: none; stroke-width: 1.5; }
 .lat { stroke: #d62728; fill: none; stroke-width: 1.5; }
</style>
</head>
<body>
<h1>zmesh broker <span id="state" class="muted">connecting…</span></h1>
<div class="muted" id="endpoints"></div>
<div class="cards">
 <div class="card">requests<b id="total-requests">–</b></div>
 <div class="card">replies<b id="total-replies">–</b></div>
 <div class="card">req/s<b id="rate">–</b></div>
 <div class="card">workers<b id="total-workers">–</b></div>
 <div class="card">clients<b id="total-clients">–</b></div>
 <div class="card">queued<b id="total-queued">–</b></div>
 <div class="card">memory<b id="memory">–</b></div>
 <div class="card">DLQ<b id="dlq">–</b></div>
</div>
<h2>Request rate <span class="muted">(blue, req/s)</span> and median latency <span class="muted">(red, ms)</span>, last 5 minutes</h2>
<svg id="chart" width="720" height="160" viewBox="0 0 720 160" role="img" aria-label="request rate and latency">
 <polyline id="rate-line" class="rate" points=""/>
 <polyline id="lat-line" class="lat" points=""/>
 <text x="4" y="14" font-size="11" fill="#1f77b4" id="rate-max"></text>
 <text x="716" y="14" font-size="11" fill="#d62728" text-anchor="end" id="lat-max"></text>
</svg>
<h2>Services</h2>
<table id="services">
 <thead><tr><th>service</th><th>workers</th><th>queued</th><th>in flight</th><th>requests</th>
 <th>replies</th><th>req/s</th><th>median ms</th><th>requeued</th><th>rejected</th><th>expired</th></tr></thead>
 <tbody></tbody>
</table>
<h2>Pub/sub forwarder and directory</h2>
<table id="forwarder">
 <tbody>
  <tr><td>messages forwarded</td><td id="forwarded">–</td></tr>
  <tr><td>dropped for slow subscribers</td><td id="forward-dropped">–</td></tr>
  <tr><td>subscriptions</td><td id="subscriptions">–</td></tr>
  <tr><td>last-value cache topics</td><td id="lvc-topics">–</td></tr>
  <tr><td>directory entries</td><td id="directory">–</td></tr>
 </tbody>
</table>
<p class="muted">Refreshed <span id="refreshes">0</span> times from <a href="/api/status">/api/status</a>
 without reloading; first seen <span id="first-requests">–</span> requests. Metrics for Prometheus: <a href="/metrics">/metrics</a>.</p>
<script>
"use strict";
const history = [];          // {t, rate, lat} per poll, the last 300
let last = null;             // the previous document and its time
let refreshes = 0;
const $ = id => document.getElementById(id);
const fmt = n => n.toLocaleString("en-US");
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}
// The median of the replies between two polls, from the difference of two histograms: the
// upper bound of the bucket where half of them are reached (ms), or null with no replies.
function median(bounds, now, before) {
  const d = now.map((c, i) => c - (before ? before[i] : 0));
  const total = d.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  let seen = 0;
  for (let i = 0; i < d.length; i++) {
    seen += d[i];
    if (seen * 2 >= total) return i < bounds.length ? bounds[i] * 1000 : bounds[bounds.length - 1] * 1000;
  }
  return null;
}
function sumCounts(services) {
  const out = [];
  for (const s of services) s.latency_counts.forEach((c, i) => out[i] = (out[i] || 0) + c);
  return out;
}
function draw() {
  const w = 720, h = 160, pad = 20;
  const rmax = Math.max(1, ...history.map(p => p.rate));
  const lmax = Math.max(0.1, ...history.map(p => p.lat || 0));
  const x = i => (w - (history.length - 1 - i) * (w / 300)).toFixed(1);
  $("rate-line").setAttribute("points", history.map((p, i) => x(i) + "," + (h - pad - (h - 2 * pad) * p.rate / rmax).toFixed(1)).join(" "));
  $("lat-line").setAttribute("points", history.filter(p => p.lat !== null).map(p => x(history.indexOf(p)) + "," + (h - pad - (h - 2 * pad) * p.lat / lmax).toFixed(1)).join(" "));
  $("rate-max").textContent = "max " + rmax.toFixed(0) + " req/s";
  $("lat-max").textContent = "max " + lmax.toFixed(2) + " ms";
}
function render(doc, t) {
  const T = doc.totals;
  const dt = last ? (t - last.t) / 1000 : 0;
  const rate = last && dt > 0 ? (T.requests - last.doc.totals.requests) / dt : 0;
  const lat = median(doc.latency_bounds, sumCounts(doc.services), last ? sumCounts(last.doc.services) : null);
  $("state").textContent = doc.running ? "running" : "stopped";
  $("state").className = doc.running ? "muted" : "down";
  $("endpoints").textContent = doc.endpoints.join("  ");
  $("total-requests").textContent = fmt(T.requests);
  $("total-replies").textContent = fmt(T.replies);
  $("rate").textContent = last ? rate.toFixed(0) : "–";
  $("total-workers").textContent = fmt(T.workers);
  $("total-clients").textContent = fmt(T.clients);
  $("total-queued").textContent = fmt(T.queued);
  $("memory").textContent = bytes(T.memory) + " of " + bytes(doc.max_memory);
  $("dlq").textContent = fmt(T.dlq);
  $("forwarded").textContent = fmt(T.forwarded);
  $("forward-dropped").textContent = fmt(T.dropped);
  $("subscriptions").textContent = fmt(T.subscriptions);
  $("lvc-topics").textContent = fmt(T.lvc_topics);
  $("directory").textContent = fmt(T.directory_entries);
  const before = {};
  if (last) for (const s of last.doc.services) before[s.name] = s;
  const body = $("services").tBodies[0];
  body.replaceChildren();
  for (const s of doc.services) {
    const b = before[s.name];
    const srate = b && dt > 0 ? (s.requests - b.requests) / dt : 0;
    const smed = median(doc.latency_bounds, s.latency_counts, b ? b.latency_counts : null);
    const tr = document.createElement("tr");
    tr.dataset.service = s.name;
    const cells = [s.name, fmt(s.workers), fmt(s.queued), fmt(s.in_flight), fmt(s.requests), fmt(s.replies),
                   b ? srate.toFixed(0) : "–", smed === null ? "–" : "≤ " + smed, fmt(s.requeued), fmt(s.rejected), fmt(s.expired)];
    const names = ["name", "workers", "queued", "in-flight", "requests", "replies", "rate", "median", "requeued", "rejected", "expired"];
    cells.forEach((c, i) => { const td = document.createElement("td"); td.textContent = c; td.className = names[i]; tr.appendChild(td); });
    body.appendChild(tr);
  }
  if ($("first-requests").textContent === "–") $("first-requests").textContent = String(T.requests);
  history.push({t, rate, lat});
  while (history.length > 300) history.shift();
  draw();
  last = {doc, t};
  $("refreshes").textContent = String(++refreshes);
}
async function poll() {
  try {
    const r = await fetch("/api/status", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json(), Date.now());
  } catch (e) {
    $("state").textContent = "unreachable: " + e.message;
    $("state").className = "down";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
)html";

} // namespace

std::string_view broker_status_page() { return {page, sizeof page - 1}; }

} // namespace zmesh::cli
