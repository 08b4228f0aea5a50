import HTTPTypes
import Hummingbird
import NIOCore

/// `GET /ui`: the web console. One static page — HTML, CSS and JavaScript, no build tool, no CDN — shipped in the
/// binary. It holds no data: it reads the v1 API (with the token the user gives it, when the agent has one) and
/// refreshes every two seconds.
extension APIRoutes {
    func registerConsole(on router: Router<AgentRequestContext>) {
        router.get(RouterPath(HTTPPath.console)) { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache",
                                            .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"],
                     body: .init(byteBuffer: ByteBuffer(string: Console.page)))
        }
    }
}

enum Console {
    static let page = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice console</title>
<link rel="icon" href="data:,">
<style>
:root { --bg: #f6f7f9; --fg: #1d2430; --muted: #647084; --line: #dde1e7; --accent: #2563eb; --ok: #15803d; --warn: #b45309; --bad: #b91c1c; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 12px; padding: 8px 16px; background: #111827; color: #fff; }
header h1 { font-size: 16px; margin: 0 12px 0 0; }
nav { display: flex; flex-wrap: wrap; gap: 2px; }
nav a { color: #cbd5e1; text-decoration: none; padding: 6px 10px; border-radius: 6px; }
nav a.active, nav a:hover { background: #374151; color: #fff; }
#status { margin-left: auto; font-size: 12px; color: #9ca3af; }
main { padding: 16px; max-width: 1200px; margin: 0 auto; }
h2 { font-size: 18px; margin: 8px 0 12px; }
h3 { font-size: 15px; margin: 18px 0 8px; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.click { cursor: pointer; } tr.click:hover { background: #eef2ff; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; background: #e5e7eb; }
.ok { background: #dcfce7; color: var(--ok); } .warn { background: #fef3c7; color: var(--warn); } .bad { background: #fee2e2; color: var(--bad); }
.muted { color: var(--muted); } .empty { padding: 16px; color: var(--muted); }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px; margin-bottom: 12px; }
form.inline { display: flex; flex-wrap: wrap; gap: 8px; align-items: end; }
label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 2px; }
input, select, button { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
pre { background: #0f172a; color: #e2e8f0; padding: 10px; border-radius: 6px; overflow-x: auto; font-size: 12px; }
.waterfall .row { display: grid; grid-template-columns: minmax(140px, 30%) 1fr; gap: 8px; align-items: center; padding: 2px 0; font-size: 12px; }
.waterfall .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.waterfall .lane { position: relative; height: 14px; background: #f1f5f9; border-radius: 3px; }
.waterfall .bar { position: absolute; top: 2px; height: 10px; min-width: 3px; border-radius: 2px; background: var(--accent); }
.bar.event { background: #6366f1; } .bar.delivery { background: var(--ok); } .bar.failed { background: var(--bad); }
.bar.dead_letter { background: #7f1d1d; } .bar.replay { background: var(--warn); } .bar.saga { background: #0891b2; }
ul.tree { list-style: none; padding-left: 18px; margin: 4px 0; border-left: 1px dashed var(--line); }
ul.tree > li { margin: 4px 0; }
#flow svg { width: 100%; height: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
#flow text { font: 12px system-ui, sans-serif; }
.token { max-width: 420px; }
@media (max-width: 640px) { main { padding: 8px; } th, td { padding: 5px 6px; } header h1 { width: 100%; } #status { margin-left: 0; } }
</style>
</head>
<body>
<header>
  <h1>Sluice</h1>
  <nav id="nav">
    <a href="#/topics" data-page="topics">Topics</a>
    <a href="#/groups" data-page="groups">Groups</a>
    <a href="#/subscriptions" data-page="subscriptions">Subscriptions</a>
    <a href="#/dlq" data-page="dlq">Dead letters</a>
    <a href="#/sagas" data-page="sagas">Sagas</a>
    <a href="#/traces" data-page="traces">Traces</a>
    <a href="#/flow" data-page="flow">Flow</a>
  </nav>
  <span id="status">…</span>
</header>
<main id="main"></main>
<script>
"use strict";
const main = document.getElementById("main");
const statusLine = document.getElementById("status");
const previous = {};  // topic → {at, total} for rates
let refreshTimer = null;
let replayStatus = "";
let busy = false;

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = Object.assign({"Accept": "application/json"}, options.headers || {});
  const token = sessionStorage.getItem("sluice.token");
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, {headers}));
  if (response.status === 401) throw new Unauthorized();
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) throw new Error((body.detail || body.title || response.statusText) + " (HTTP " + response.status + ")");
  return body;
}

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function badge(text, kind) { return `<span class="badge ${kind || ""}">${esc(text)}</span>`; }
function statusKind(status) {
  const s = String(status).toLowerCase();
  if (["ok", "closed", "complete", "completed", "stable", "delivered"].includes(s)) return "ok";
  if (["warn", "half_open", "in_flight", "running", "compensating", "rebalancing", "pending"].includes(s)) return "warn";
  return "bad";
}
function num(n, digits = 0) { return n == null ? "–" : Number(n).toLocaleString(undefined, {maximumFractionDigits: digits}); }
function ago(time) {
  if (!time) return "–";
  const s = (Date.now() - Date.parse(time)) / 1000;
  return s < 60 ? `${Math.max(0, s).toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : new Date(time).toLocaleString();
}
function table(columns, rows, onClick, id) {
  const wrapper = id ? ` id="${id}"` : "";
  if (!rows.length) return `<div class="scroll"${wrapper}><div class="empty">Nothing yet.</div></div>`;
  const head = columns.map(c => `<th class="${c.num ? "num" : ""}">${esc(c.title)}</th>`).join("");
  const body = rows.map((row, i) => `<tr ${onClick ? `class="click" data-row="${i}"` : ""}>` +
    columns.map(c => `<td class="${c.num ? "num" : ""}">${c.html ? c.html(row) : esc(c.value(row))}</td>`).join("") + "</tr>").join("");
  return `<div class="scroll"${wrapper}><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}
function clickRows(rows, handler, id) {
  main.querySelectorAll(id ? `#${id} tr.click` : "tr.click").forEach(tr => tr.addEventListener("click", () => handler(rows[Number(tr.dataset.row)])));
}

// ---- pages -------------------------------------------------------------------------------------------------

async function topicsPage() {
  const list = (await api("/v1/topics")).topics.filter(t => !t.name.startsWith("__"));
  const details = await Promise.all(list.map(t => api("/v1/topics/" + encodeURIComponent(t.name))));
  const now = Date.now();
  const rows = details.map(d => {
    const total = d.partitions.reduce((sum, p) => sum + p.log_end_offset, 0);
    const held = d.partitions.reduce((sum, p) => sum + p.log_end_offset - p.log_start_offset, 0);
    const bytes = d.partitions.reduce((sum, p) => sum + p.size_bytes, 0);
    const before = previous[d.name];
    const rate = before && now > before.at ? (total - before.total) * 1000 / (now - before.at) : null;
    previous[d.name] = {at: now, total};
    const last = d.partitions.map(p => p.last_append_time).filter(Boolean).sort().pop();
    return {name: d.name, partitions: d.partitions, total, held, bytes, rate, last};
  });
  main.innerHTML = `<h2>Topics</h2>` + table([
    {title: "topic", value: r => r.name},
    {title: "partitions", num: true, value: r => r.partitions.length},
    {title: "events held", num: true, value: r => num(r.held)},
    {title: "events/s", num: true, value: r => r.rate == null ? "…" : num(r.rate, 1)},
    {title: "size", num: true, value: r => num(r.bytes / 1024, 1) + " KiB"},
    {title: "last write", value: r => ago(r.last)},
  ], rows, true) + `<div id="partitions"></div>`;
  clickRows(rows, r => {
    document.getElementById("partitions").innerHTML = `<h3>${esc(r.name)}: partitions</h3>` + table([
      {title: "partition", num: true, value: p => p.partition},
      {title: "start offset", num: true, value: p => num(p.log_start_offset)},
      {title: "end offset", num: true, value: p => num(p.log_end_offset)},
      {title: "segments", num: true, value: p => p.segments},
      {title: "last write", value: p => ago(p.last_append_time)},
    ], r.partitions);
  });
}

async function groupsPage() {
  const rows = (await api("/v1/groups")).groups;
  main.innerHTML = `<h2>Consumer groups</h2>` + table([
    {title: "group", value: r => r.name},
    {title: "state", value: r => r.state},
    {title: "members", num: true, value: r => r.members},
    {title: "lag (events)", num: true, value: r => num(r.lag)},
    {title: "lag (seconds)", num: true, value: r => num(r.lag_seconds, 1)},
    {title: "status", html: r => badge(r.status, statusKind(r.status))},
  ], rows, true) + `<div id="group"></div>`;
  clickRows(rows, async r => {
    const partitions = (await api("/v1/groups/" + encodeURIComponent(r.name))).partitions;
    document.getElementById("group").innerHTML = `<h3>${esc(r.name)}: partitions</h3>` + table([
      {title: "topic", value: p => p.topic}, {title: "partition", num: true, value: p => p.partition},
      {title: "committed", num: true, value: p => num(p.committed_offset)},
      {title: "end", num: true, value: p => num(p.log_end_offset)},
      {title: "lag", num: true, value: p => num(p.lag)}, {title: "lag s", num: true, value: p => num(p.lag_seconds, 1)},
      {title: "status", html: p => p.status ? badge(p.status, statusKind(p.status)) : ""},
    ], partitions);
  });
}

async function subscriptionsPage() {
  const subs = (await api("/v1/subscriptions")).subscriptions;
  main.innerHTML = `<h2>Subscriptions</h2>` + table([
    {title: "subscription", value: s => s.name},
    {title: "topics", value: s => s.topics.join(", ")},
    {title: "endpoint", value: s => s.endpoint},
    {title: "breaker", html: s => badge(s.circuit_breaker_state || "–", statusKind(s.circuit_breaker_state || "closed"))},
    {title: "in flight", num: true, value: s => num(s.in_flight)},
    {title: "DLQ depth", html: s => s.dlq_depth ? `<a href="#/dlq">${num(s.dlq_depth)}</a>` : "0"},
    {title: "ordering", value: s => s.ordering},
  ], subs);
}

async function dlqPage(arg) {
  // #/dlq, #/dlq/TOPIC, #/dlq/TOPIC/PARTITION/OFFSET (one letter's headers and failure history).
  const [topic, partition, offset] = (arg || "").split("/");
  const topics = (await api("/v1/dlq")).dlq_topics;
  let html = `<h2>Dead letters</h2>` + table([
    {title: "DLQ topic", value: t => t.topic}, {title: "depth", num: true, value: t => num(t.depth)},
    {title: "oldest failure", value: t => ago(t.oldest_failure)},
  ], topics, true, "dlq-topics");
  let letters = [];
  if (topic) {
    letters = (await api("/v1/dlq/" + encodeURIComponent(topic) + "?limit=200")).dead_letters;
    html += `<h3>${esc(topic)}</h3>
      <div class="card"><form class="inline" id="replay">
        <label>subscription<input name="subscription" placeholder="any"></label>
        <label>event type<input name="event_type" placeholder="any"></label>
        <label>error type<select name="error_type"><option value="">any</option>
          ${["http_error", "rejected", "timeout", "unavailable", "unsupported_event_version"].map(t => `<option>${t}</option>`).join("")}</select></label>
        <label>events/s<input name="rate_limit" type="number" min="0.001" step="any" placeholder="unlimited"></label>
        <button type="submit" id="replay-button">Replay</button>
        <span id="replay-progress" class="muted">${esc(replayStatus)}</span>
      </form></div>` + table([
      {title: "original", value: l => `${l.original_topic}/${l.original_partition}@${l.original_offset}`},
      {title: "type", value: l => l.event_type},
      {title: "subscription", value: l => l.subscription},
      {title: "error", html: l => badge(l.error_type, "bad")},
      {title: "HTTP", num: true, value: l => l.http_status ?? "–"},
      {title: "attempts", num: true, value: l => l.attempts},
      {title: "replays", num: true, value: l => l.replays},
      {title: "last failure", value: l => ago(l.last_failure)},
    ], letters, true, "dlq-letters");
  }
  if (topic && partition !== undefined && offset !== undefined) {
    const full = await api(`/v1/dlq/${encodeURIComponent(topic)}/partitions/${encodeURIComponent(partition)}/offsets/${encodeURIComponent(offset)}`);
    html += `<div id="letter"><h3>Dead letter ${esc(topic)}/${esc(partition)}@${esc(offset)}</h3>
      <div class="card"><b>Failure history</b>: ${esc(full.attempts)} attempts, first ${esc(full.first_failure)}, last ${esc(full.last_failure)},
      ${esc(full.error_type)} ${full.http_status ? "HTTP " + esc(full.http_status) : ""}, replayed ${esc(full.replays)} times${full.resolved ? ", resolved" : ""}.
      <div class="muted">${esc(full.error_message)}</div></div>
      <h3>Headers</h3>` + table([{title: "header", value: h => h[0]}, {title: "value", value: h => h[1]}], Object.entries(full.headers || {})) +
      `<h3>Event</h3><pre>${esc(JSON.stringify(full.event ?? null, null, 2))}</pre></div>`;
  }
  main.innerHTML = html;
  clickRows(topics, t => { location.hash = "#/dlq/" + encodeURIComponent(t.topic); }, "dlq-topics");
  if (!topic) return;
  clickRows(letters, l => { location.hash = `#/dlq/${encodeURIComponent(topic)}/${l.partition}/${l.offset}`; }, "dlq-letters");
  pauseWhileTyping();
  document.getElementById("replay").addEventListener("submit", async event => {
    event.preventDefault();
    const form = new FormData(event.target);
    const filters = {};
    for (const [key, value] of form.entries()) if (value !== "") filters[key] = key === "rate_limit" ? Number(value) : value;
    // The progress outlives re-renders: it is kept here and shown by each one.
    const show = text => { replayStatus = text; const at = document.getElementById("replay-progress"); if (at) at.textContent = text; };
    try {
      const job = await api("/v1/dlq/" + encodeURIComponent(topic) + "/replay", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(filters)});
      show(`replay ${job.id}: ${job.matched} matched`);
      for (let i = 0; i < 600; i++) {
        const state = await api("/v1/dlq/replays/" + encodeURIComponent(job.id));
        show(`replay ${state.id}: ${state.done}/${state.matched} done, ${state.delivered} delivered, ${state.dead_lettered_again} dead-lettered again, ${state.poisoned} poisoned (${state.state})`);
        if (state.state === "done") break;
        await new Promise(r => setTimeout(r, 300));
      }
    } catch (error) { show("replay refused: " + error.message); }
  });
}

async function sagasPage(id) {
  const data = await api("/v1/sagas?limit=200");
  let html = `<h2>Sagas</h2>` + table([
    {title: "saga", value: s => s.id}, {title: "type", value: s => s.type},
    {title: "status", html: s => badge(s.status, statusKind(s.status))},
    {title: "step", value: s => s.current_step ?? ""}, {title: "started", value: s => ago(s.started_at)},
    {title: "duration s", num: true, value: s => num(s.duration_seconds, 2)},
  ], data.sagas, true);
  if (id) {
    const saga = await api("/v1/sagas/" + encodeURIComponent(id));
    const start = Date.parse(saga.started_at);
    const span = Math.max(1, (saga.finished_at ? Date.parse(saga.finished_at) : Date.now()) - start);
    html += `<h3>Saga ${esc(saga.id)} (${esc(saga.type)}) ${badge(saga.status, statusKind(saga.status))}</h3><div class="card waterfall">` +
      saga.steps.map(s => {
        const from = s.dispatched_at ? Date.parse(s.dispatched_at) : null;
        const to = s.finished_at ? Date.parse(s.finished_at) : (from ? Date.now() : null);
        const left = from ? (from - start) * 100 / span : 0, width = from ? Math.max(0.5, (to - from) * 100 / span) : 0;
        const comp = s.compensation ? ` · compensation ${esc(s.compensation.status)}` : "";
        return `<div class="row"><div class="label">${esc(s.name)} ${badge(s.status, statusKind(s.status === "succeeded" ? "ok" : s.status))}${comp}</div>
          <div class="lane">${from ? `<div class="bar saga" style="left:${left}%;width:${Math.min(width, 100 - left)}%"></div>` : ""}</div></div>`;
      }).join("") + `</div>` + (saga.failure_reason || saga.reason ? `<div class="card bad">${esc(saga.failure_reason || saga.reason)}</div>` : "") +
      `<p><a href="#/traces/${encodeURIComponent(saga.id)}">Its trace</a></p>`;
  }
  main.innerHTML = html;
  clickRows(data.sagas, s => { location.hash = "#/sagas/" + encodeURIComponent(s.id); });
}

function hopLabel(h) {
  switch (h.kind) {
    case "event": return `${h.event_type} → ${h.topic}/${h.partition}@${h.offset}`;
    case "delivery": return `deliver ${h.subscription} #${h.attempt}: ${h.outcome}${h.http_status ? " " + h.http_status : ""}`;
    case "dead_letter": return `dead-lettered for ${h.subscription}: ${h.outcome}`;
    case "replay": return `replay to ${h.subscription}: ${h.outcome}`;
    case "saga": return `saga ${h.saga_type} ${h.saga_id}: ${h.outcome}${h.step ? " (" + h.step + ")" : ""}`;
    default: return h.kind;
  }
}

function treeHTML(nodes) {
  if (!nodes || !nodes.length) return "";
  return `<ul class="tree">` + nodes.map(n => `<li><b>${esc(n.type)}</b> <span class="muted">${esc(n.event_id)} · ${esc(n.topic)}/${esc(n.partition)}@${esc(n.offset)}</span>
    ${(n.deliveries || []).map(d => badge(d.subscription + ": " + d.outcome, statusKind(d.outcome))).join(" ")}
    ${(n.sagas_started || []).map(s => badge("started saga " + s, "")).join(" ")}${treeHTML(n.children)}</li>`).join("") + `</ul>`;
}

async function tracesPage(id) {
  const filter = sessionStorage.getItem("sluice.traceStatus") || "";
  const data = await api("/v1/traces?limit=100" + (filter ? "&status=" + filter : ""));
  let html = `<h2>Traces</h2><div class="card"><form class="inline" id="find">
      <label>status<select id="trace-status">${["", "in_flight", "stale", "complete"].map(s => `<option value="${s}" ${s === filter ? "selected" : ""}>${s || "all"}</option>`).join("")}</select></label>
      <label>correlation or saga id<input id="trace-id" placeholder="id"></label><button type="submit">Show</button>
      <span class="muted">${num(data.counts.in_flight)} in flight · ${num(data.counts.stale)} stale · ${num(data.counts.complete)} complete</span></form></div>` + table([
    {title: "correlation id", value: t => t.correlation_id}, {title: "first event", value: t => t.first_event_type ?? ""},
    {title: "status", html: t => badge(t.status, statusKind(t.status))}, {title: "events", num: true, value: t => t.events},
    {title: "hops", num: true, value: t => t.hops}, {title: "duration ms", num: true, value: t => num(t.duration_ms)},
    {title: "last activity", value: t => ago(t.last_activity_at)},
  ], data.traces, true);
  if (id) {
    const trace = await api("/v1/traces/" + encodeURIComponent(id));
    const start = Date.parse(trace.started_at);
    const span = Math.max(1, trace.duration_ms);
    html += `<h3>Trace ${esc(trace.correlation_id)} ${badge(trace.status, statusKind(trace.status))}</h3>
      <div class="card">${num(trace.totals.events)} events · ${num(trace.totals.delivery_attempts)} attempts · ${num(trace.totals.failures)} failures ·
      ${num(trace.totals.dead_letters)} dead letters · ${num(trace.totals.replays)} replays · ${num(trace.totals.sagas)} sagas · ${num(trace.duration_ms)} ms</div>
      <h3>Waterfall</h3><div class="card waterfall" id="waterfall">` + trace.hops.map(h => {
        // A delivery hop is recorded when the attempt ends: its bar runs back over its latency.
        const length = h.latency_ms || 0, at = Math.max(0, h.time_ms - length - start);
        const left = at * 100 / span, width = Math.max(0.4, length * 100 / span);
        const failed = h.kind === "delivery" && !["delivered", "dropped"].includes(h.outcome);
        return `<div class="row"><div class="label" title="${esc(hopLabel(h))}">${esc(hopLabel(h))}</div><div class="lane">
          <div class="bar ${failed ? "failed" : h.kind}" style="left:${Math.min(left, 99.6)}%;width:${Math.min(width, 100 - Math.min(left, 99.6))}%"></div></div></div>`;
      }).join("") + `</div><h3>Causation tree</h3><div class="card" id="tree">${treeHTML(trace.tree)}</div>`;
  }
  main.innerHTML = html;
  pauseWhileTyping();
  clickRows(data.traces, t => { location.hash = "#/traces/" + encodeURIComponent(t.correlation_id); });
  document.getElementById("trace-status").addEventListener("change", e => { sessionStorage.setItem("sluice.traceStatus", e.target.value); render(); });
  document.getElementById("find").addEventListener("submit", e => {
    e.preventDefault();
    const wanted = document.getElementById("trace-id").value.trim();
    if (wanted) location.hash = "#/traces/" + encodeURIComponent(wanted);
  });
}

async function flowPage() {
  const flow = await api("/v1/flow");
  const columns = [[], [], [], []];  // sources, topics, subscriptions and sagas, endpoints
  const nodes = new Map();
  const edges = [];
  function node(column, key, label, kind) {
    if (!nodes.has(key)) { const n = {column, key, label, kind, index: columns[column].length}; nodes.set(key, n); columns[column].push(n); }
    return nodes.get(key);
  }
  flow.topics.filter(t => !t.dead_letter).forEach(t => node(1, "topic:" + t.name, t.name, "topic"));
  flow.producers.forEach(p => { node(0, "source:" + p.source, p.source, "source"); node(1, "topic:" + p.topic, p.topic, "topic");
    edges.push(["source:" + p.source, "topic:" + p.topic, `${p.events} events`]); });
  flow.subscriptions.forEach(s => {
    node(2, "sub:" + s.name, s.name + (s.dlq_depth ? ` (DLQ ${s.dlq_depth})` : ""), "subscription");
    node(3, "endpoint:" + s.endpoint, s.endpoint, "endpoint");
    s.topics.forEach(t => { node(1, "topic:" + t, t, "topic"); edges.push(["topic:" + t, "sub:" + s.name, ""]); });
    edges.push(["sub:" + s.name, "endpoint:" + s.endpoint, ""]);
  });
  flow.sagas.forEach(g => {
    node(2, "saga:" + g.type, "saga " + g.type, "saga");
    const inputs = g.kind === "observed" ? g.topics : [...(g.trigger ? [g.trigger.topic] : []), ...g.steps.map(s => s.reply_topic).filter(Boolean)];
    [...new Set(inputs)].forEach(t => { node(1, "topic:" + t, t, "topic"); edges.push(["topic:" + t, "saga:" + g.type, ""]); });
    [...new Set((g.steps || []).map(s => s.command_topic).concat(g.outcome_topic ? [g.outcome_topic] : []))].forEach(t => {
      node(1, "topic:" + t, t, "topic"); edges.push(["saga:" + g.type, "topic:" + t, "commands"]); });
  });
  const width = 1000, rowHeight = 44, colX = [20, 270, 520, 770], boxW = 210;
  const rows = Math.max(1, ...columns.map(c => c.length));
  const height = rows * rowHeight + 50;
  const y = n => 40 + n.index * rowHeight;
  const titles = ["producers (sources)", "topics", "subscriptions and sagas", "endpoints"];
  let svg = `<svg viewBox="0 0 ${width} ${height}" role="img" aria-label="event flow map">`;
  titles.forEach((t, i) => { svg += `<text x="${colX[i]}" y="20" fill="#647084">${t}</text>`; });
  edges.forEach(([from, to, label]) => {
    const a = nodes.get(from), b = nodes.get(to);
    if (!a || !b) return;
    const forward = b.column > a.column;
    const x1 = forward ? colX[a.column] + boxW : colX[a.column], x2 = forward ? colX[b.column] : colX[b.column] + boxW;
    const y1 = y(a) + 14, y2 = y(b) + 14, bend = forward ? 60 : -60;
    svg += `<path class="edge" d="M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}" fill="none" stroke="${forward ? "#94a3b8" : "#0891b2"}" stroke-width="1.5"><title>${esc(from)} → ${esc(to)} ${esc(label)}</title></path>`;
  });
  const colors = {source: "#eef2ff", topic: "#ecfdf5", subscription: "#fff7ed", saga: "#ecfeff", endpoint: "#f8fafc"};
  nodes.forEach(n => {
    svg += `<g class="node" data-kind="${n.kind}"><rect x="${colX[n.column]}" y="${y(n)}" width="${boxW}" height="28" rx="6" fill="${colors[n.kind]}" stroke="#cbd5e1"></rect>
      <text x="${colX[n.column] + 8}" y="${y(n) + 18}">${esc(n.label.length > 30 ? n.label.slice(0, 29) + "…" : n.label)}<title>${esc(n.label)}</title></text></g>`;
  });
  svg += `</svg>`;
  main.innerHTML = `<h2>Event flow</h2><p class="muted">From what the agent has seen${flow.producers_seen ? "" : " (producers are shown while trace.enabled is on)"}: producers' sources → topics → push subscriptions → endpoints; sagas read their trigger and reply topics and send commands (blue).</p><div id="flow">${svg}</div>`;
}

function tokenPage(retry) {
  main.innerHTML = `<h2>Token</h2><div class="card token"><p>This agent runs with <code>api.token</code>. Give the token to read its API; it is kept in this tab only.</p>
    <form class="inline" id="token-form"><label>token<input type="password" id="token" autocomplete="off"></label><button type="submit">Use</button></form></div>`;
  stopRefresh();
  document.getElementById("token-form").addEventListener("submit", e => {
    e.preventDefault();
    sessionStorage.setItem("sluice.token", document.getElementById("token").value);
    retry();
  });
}

// ---- routing and refresh -----------------------------------------------------------------------------------

const pages = {topics: topicsPage, groups: groupsPage, subscriptions: subscriptionsPage, dlq: dlqPage, sagas: sagasPage, traces: tracesPage, flow: flowPage};

function route() {
  const parts = (location.hash.replace(/^#\/?/, "") || "topics").split("/");
  const name = pages[parts[0]] ? parts[0] : "topics";
  return {name, arg: parts.length > 1 ? decodeURIComponent(parts.slice(1).join("/")) : undefined};
}

async function render() {
  if (busy) return;
  busy = true;
  const {name, arg} = route();
  document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("active", a.dataset.page === name));
  const scroll = window.scrollY;
  // What the user typed into a form survives the refresh that re-draws it.
  const typed = [...main.querySelectorAll("form [name], form input[id], form select[id]")].map(el => [el.closest("form").id + "/" + (el.name || el.id), el.value]);
  try {
    await pages[name](arg);
    for (const [key, value] of typed) {
      const [form, field] = key.split("/");
      const el = document.querySelector(`form#${form} [name="${field}"], form#${form} #${field}`);
      if (el && el.type !== "password" && el.value === "" && value !== "") el.value = value;
    }
    statusLine.textContent = "updated " + new Date().toLocaleTimeString();
    window.scrollTo(0, scroll);
  } catch (error) {
    if (error instanceof Unauthorized) { busy = false; tokenPage(() => { render(); startRefresh(); }); return; }
    statusLine.textContent = "error: " + error.message;
    document.getElementById("error")?.remove();
    main.insertAdjacentHTML("afterbegin", `<div class="card bad" id="error">${esc(error.message)}</div>`);
  } finally { busy = false; }
}

// Live: every 2 s, unless the user is typing in a form or has opened a detail below a list.
let typing = false;
function pauseWhileTyping() {
  main.querySelectorAll("input, select").forEach(el => {
    el.addEventListener("focus", () => { typing = true; });
    el.addEventListener("blur", () => { typing = false; });
  });
}
function startRefresh() { stopRefresh(); refreshTimer = setInterval(() => { if (!typing && !document.hidden && !detailOpen()) render(); }, 2000); }
function stopRefresh() { if (refreshTimer) clearInterval(refreshTimer); refreshTimer = null; }
function detailOpen() { return ["partitions", "group"].some(id => document.getElementById(id)?.innerHTML); }

window.addEventListener("hashchange", () => { typing = false; render(); });
render();
startRefresh();
</script>
</body>
</html>
"""#
}
