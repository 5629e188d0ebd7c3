// The gateway's built-in viewer. Plain DOM, no framework, no outside assets: everything it
// shows comes from the admin port's JSON API (/api/requests, /api/requests/{id},
// /api/overview). Text from requests is only ever set with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
const LIST_LIMIT = 200;

const state = {
  rows: [],          // newest first, as the API returns them
  next: null,        // id of the newest row seen + 1 (poll with since=next-1)
  timer: null,
  seenRoutes: new Set(),
  seenModels: new Set(),
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function fmtTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}
function fmtMs(v) {
  if (v === undefined || v === null) return "";
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(v < 10 ? 2 : 0) + " ms";
}
function statusClass(r) {
  if (r.status === null || r.status === undefined) return r.error ? "serr" : "";
  return "s" + String(r.status)[0];
}
function models(r) {
  if (!r.requestModel && !r.responseModel) {
    if (r.tool) return "tool " + r.tool;
    return r.mcpMethod || (r.method + " " + r.path);
  }
  if (r.responseModel && r.responseModel !== r.requestModel) return (r.requestModel || "?") + " → " + r.responseModel;
  return r.requestModel || r.responseModel;
}
function tokens(r) {
  if (r.inputTokens === undefined && r.outputTokens === undefined) return "";
  return (r.inputTokens ?? "–") + " / " + (r.outputTokens ?? "–");
}

// === requests ===

function filterQuery() {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData($("filters"))) if (v) q.set(k, v);
  return q;
}

// The most telling guard outcome of a request: reject > failopen > mask; allow shows nothing.
function guardCell(r) {
  if (!r.guard) return "";
  const rank = { reject: 3, failopen: 2, mask: 1, allow: 0 };
  let best = null;
  for (const phase of ["request", "response"]) {
    const p = r.guard[phase];
    if (p && (!best || rank[p.action] > rank[best.action])) best = { phase, ...p };
  }
  if (!best || best.action === "allow") return "";
  return best.action + " (" + best.phase + ")";
}

function guardText(p) {
  if (!p) return undefined;
  let t = p.action;
  if (p.rules) t += " · " + p.rules;
  if (p.masked) t += " · " + p.masked + " masked";
  if (p.rejectedBy) t += " · by " + p.rejectedBy;
  return t;
}

function rowEl(r) {
  return el("tr", { "data-id": r.id, onclick: () => { location.hash = "#/request/" + r.id; } },
    el("td", {}, fmtTime(r.time)),
    el("td", { class: "route" }, r.route || ""),
    el("td", {}, r.provider || (r.kind === "mcp" ? "mcp" : "")),
    el("td", { class: "model" }, models(r)),
    el("td", { class: "status " + statusClass(r) }, r.status ?? (r.error ? "error" : "")),
    el("td", { class: "num" }, fmtMs(r.durationMs)),
    el("td", { class: "num" }, fmtMs(r.ttftMs)),
    el("td", { class: "num tokens" }, tokens(r)),
    el("td", { class: "num cost" }, r.costUsd ?? ""),
    el("td", { class: "guard" }, guardCell(r)),
    el("td", {}, r.caller || ""));
}

function remember(rows) {
  let added = false;
  for (const r of rows) {
    if (r.route && !state.seenRoutes.has(r.route)) { state.seenRoutes.add(r.route); added = true; }
    for (const m of [r.requestModel, r.responseModel]) {
      if (m && !state.seenModels.has(m)) { state.seenModels.add(m); added = true; }
    }
  }
  if (added) {
    fillSelect($("f-route"), state.seenRoutes);
    fillSelect($("f-model"), state.seenModels);
  }
}

function fillSelect(sel, values) {
  const cur = sel.value;
  const have = new Set([...sel.options].map((o) => o.value));
  for (const v of [...values].sort()) if (!have.has(v)) sel.append(el("option", { value: v }, v));
  sel.value = cur;
}

function renderRows() {
  const body = $("requests").tBodies[0];
  body.replaceChildren(...state.rows.map(rowEl));
  $("empty").hidden = state.rows.length > 0;
}

async function loadRequests() {
  const q = filterQuery();
  q.set("limit", LIST_LIMIT);
  try {
    const d = await getJSON("/api/requests?" + q);
    state.rows = d.requests;
    state.next = d.next;
    remember(d.requests);
    renderRows();
    setStatus(d.recording
      ? `keeping the last ${d.capacity} requests · ${d.kept} kept`
      : "recording is off (config.ui.recentRequests: 0)");
  } catch (e) {
    setStatus("cannot load requests: " + e.message);
  }
}

async function pollRequests() {
  if (state.next === null) return loadRequests();
  const q = filterQuery();
  q.set("limit", LIST_LIMIT);
  q.set("since", Math.max(0, state.next - 1));
  if (state.next === 0) q.delete("since");
  try {
    const d = await getJSON("/api/requests?" + q);
    state.next = d.next;
    const fresh = d.requests.filter((r) => !state.rows.length || r.id > state.rows[0].id);
    if (fresh.length) {
      remember(fresh);
      state.rows = fresh.concat(state.rows).slice(0, LIST_LIMIT);
      renderRows();
    }
  } catch (e) {
    setStatus("cannot load requests: " + e.message);
  }
}

// === detail ===

function dlRows(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", {}, k), el("dd", { "data-field": k }, v));
  }
}

function spanClass(s) {
  const isMcp = s.kind === "CLIENT" && s.attributes["mcp.target"] !== undefined;
  return "wf-bar " + s.kind + (isMcp ? " mcp" : "") + (s.status.code === "ERROR" ? " ERROR" : "");
}

function renderWaterfall(spans) {
  const wf = $("waterfall");
  wf.replaceChildren();
  if (!spans.length) { wf.append(el("p", { class: "muted" }, "no spans")); return; }
  const total = Math.max(...spans.map((s) => s.endMs), 0.001);
  const depth = (s) => (s.parentSpanId && spans.some((p) => p.spanId === s.parentSpanId) ? 1 : 0);
  spans.forEach((s, i) => {
    const left = (s.startMs / total) * 100;
    const width = Math.max((s.durationMs / total) * 100, 0.3);
    const bar = el("div", { class: spanClass(s), title: s.name });
    bar.style.left = left + "%";
    bar.style.width = Math.min(width, 100 - left) + "%";
    const name = el("div", { class: "wf-name" },
      el("span", { class: "tag" }, s.kind), s.name);
    name.style.paddingLeft = 8 + depth(s) * 16 + "px";
    const row = el("div", { class: "wf-row", "data-span": s.spanId, "data-kind": s.kind,
      onclick: () => selectSpan(spans, i) },
      name, el("div", { class: "wf-track" }, bar), el("div", { class: "wf-dur" }, fmtMs(s.durationMs)));
    wf.append(row);
  });
  selectSpan(spans, 0);
}

function selectSpan(spans, i) {
  const s = spans[i];
  for (const r of $("waterfall").children) r.classList.toggle("selected", r.dataset.span === s.spanId);
  const rows = Object.entries(s.attributes).map(([k, v]) =>
    el("tr", { "data-attr": k }, el("td", {}, k), el("td", {}, typeof v === "string" ? v : JSON.stringify(v))));
  const status = s.status.code + (s.status.message ? ": " + s.status.message : "");
  $("span-attrs").replaceChildren(
    el("h3", {}, s.kind + " span · " + s.name),
    el("p", { class: "muted" }, "span " + s.spanId + (s.parentSpanId ? " · parent " + s.parentSpanId : "") + " · status " + status),
    el("table", { class: "attrs" }, el("tbody", {}, ...rows)));
}

async function showDetail(id) {
  show("detail");
  $("d-title").textContent = "request " + id;
  $("waterfall").replaceChildren();
  $("span-attrs").replaceChildren();
  $("d-text").replaceChildren();
  let d;
  try {
    d = await getJSON("/api/requests/" + encodeURIComponent(id));
  } catch (e) {
    $("d-title").textContent = "request " + id + ": " + e.message;
    return;
  }
  $("d-title").textContent = (d.method || "") + " " + (d.path || "") + " → " + (d.status ?? d.error ?? "");
  dlRows($("d-summary"), [
    ["time", new Date(d.time).toISOString()],
    ["route", d.route],
    ["kind", d.kind],
    ["provider", d.provider],
    ["request model", d.requestModel],
    ["response model", d.responseModel],
    ["status", d.status],
    ["duration", fmtMs(d.durationMs)],
    ["time to first token", fmtMs(d.ttftMs)],
    ["input tokens", d.inputTokens],
    ["output tokens", d.outputTokens],
    ["cost (USD)", d.costUsd],
    ["rate limit remaining", d.rateLimitRemaining],
    ["budget remaining", d.budget],
    ["budget exceeded", d.budgetExceeded ? d.budgetExceeded.join(", ") : undefined],
    ["streaming", d.streaming === undefined ? undefined : String(d.streaming)],
    ["finish reasons", d.finishReasons && d.finishReasons.length ? d.finishReasons.join(", ") : undefined],
    ["guard (request)", d.guard ? guardText(d.guard.request) : undefined],
    ["guard (response)", d.guard ? guardText(d.guard.response) : undefined],
    ["MCP method", d.mcpMethod],
    ["tool", d.tool],
    ["MCP target", d.mcpTarget],
    ["caller", d.caller],
    ["original destination", d.originalDst],
    ["endpoint", d.endpoint],
    ["error", d.error],
    ["trace id", d.traceId || "not sampled: no trace was exported for this request"],
  ]);
  renderWaterfall(d.spans);
  const text = [];
  if (d.prompt !== undefined && d.prompt !== null) {
    text.push(el("h3", {}, "Prompt"), el("pre", { id: "d-prompt" }, JSON.stringify(d.prompt, null, 2)));
  }
  if (d.completion) {
    text.push(el("h3", {}, "Completion"), el("pre", { id: "d-completion" }, d.completion.join("\n---\n")));
  }
  for (const [title, h] of [["Request headers", d.requestHeaders], ["Response headers", d.responseHeaders]]) {
    if (!h) continue;
    text.push(el("h3", {}, title), el("table", { class: "attrs" }, el("tbody", {},
      ...Object.entries(h).map(([k, v]) => el("tr", { "data-header": k }, el("td", {}, k), el("td", {}, v))))));
  }
  if (d.kind === "llm" && d.prompt == null && d.completion == null) {
    text.push(el("p", { class: "muted" }, "Prompt and completion are not recorded: the config does not ask for them (e.g. a tracing field reading llm.prompt)."));
  }
  $("d-text").replaceChildren(...text);
}

// === overview ===

function card(label, value, off) {
  return el("div", { class: "card" + (off ? " off" : "") }, el("span", { class: "muted" }, label), el("b", {}, value));
}

async function showOverview() {
  show("overview");
  let o;
  try {
    o = await getJSON("/api/overview?minutes=15");
  } catch (e) {
    setStatus("cannot load the overview: " + e.message);
    return;
  }
  const t = o.traffic ? o.traffic.totals : null;
  $("o-cards").replaceChildren(
    card("requests (15 min)", t ? t.requests : "–"),
    card("errors", t ? t.errors : "–"),
    card("tokens in / out", t ? t.inputTokens + " / " + t.outputTokens : "–"),
    card("cost (USD)", t && t.costUsd !== null ? t.costUsd : "–"),
    card("eBPF", o.ebpf.enabled ? "on" : "off: " + o.ebpf.reason, !o.ebpf.enabled),
    card("tracing (OTLP)", o.tracing ? "on" : "off", !o.tracing),
    card("kept requests", o.ring.recording ? o.ring.kept + " / " + o.ring.capacity + " (~" + Math.round(o.ring.approxBytes / 1024) + " KiB)" : "recording off"),
  );
  $("o-window").textContent = o.traffic ? "(last " + o.traffic.minutes + " minutes)" : "";
  const tbody = (id) => $(id).tBodies[0];
  tbody("o-traffic").replaceChildren(...(o.traffic ? o.traffic.byRouteModel : []).map((r) =>
    el("tr", {}, el("td", {}, r.route), el("td", {}, r.model), el("td", { class: "num" }, r.requests),
      el("td", { class: "num" }, r.errors), el("td", { class: "num" }, r.clientErrors),
      el("td", { class: "num" }, r.inputTokens), el("td", { class: "num" }, r.outputTokens),
      el("td", { class: "num" }, r.costUsd ?? "–"), el("td", { class: "num" }, fmtMs(r.avgDurationMs)))));
  const per = o.traffic ? o.traffic.perMinute : [];
  const max = Math.max(1, ...per.map((m) => m.totals.requests));
  $("o-minutes").replaceChildren(...per.map((m) => {
    const b = el("div", { title: fmtTime(m.minute) + ": " + m.totals.requests + " requests" });
    b.style.height = (m.totals.requests / max) * 100 + "%";
    return b;
  }));
  tbody("o-mcp").replaceChildren(...o.mcp.map((m) =>
    el("tr", {}, el("td", {}, m.route), el("td", { class: "num" }, m.sessions), el("td", {}, m.targets.join(", ")))));
  tbody("o-tools").replaceChildren(...(o.traffic ? o.traffic.tools : []).map((x) =>
    el("tr", {}, el("td", {}, x.route), el("td", {}, x.tool), el("td", { class: "num" }, x.calls), el("td", { class: "num" }, x.errors))));
  tbody("o-routes").replaceChildren(...o.routes.map((r) =>
    el("tr", {}, el("td", {}, r.bind), el("td", {}, r.route), el("td", {}, r.matches.join(", ")),
      el("td", {}, r.backends.map(backendText).join("; ")))));
}

function backendText(b) {
  if (b.kind === "ai") return b.provider + (b.model ? " " + b.model : "") + " @ " + b.target;
  if (b.kind === "llm") return b.models.map((m) => m.model + " → " + m.provider).join(", ");
  if (b.kind === "mcp") return "mcp: " + b.targets.join(", ");
  return b.kind + " " + (b.target || "");
}

// === navigation ===

function setStatus(s) { $("status").textContent = s; }

function show(name) {
  for (const v of ["requests", "detail", "overview"]) $("view-" + v).hidden = v !== name;
  $("nav-requests").classList.toggle("active", name !== "overview");
  $("nav-overview").classList.toggle("active", name === "overview");
}

function schedule(fn) {
  clearInterval(state.timer);
  state.timer = fn ? setInterval(fn, POLL_MS * (fn === showOverview ? 2 : 1)) : null;
}

function route() {
  const h = location.hash || "#/requests";
  const m = h.match(/^#\/request\/(\d+)$/);
  if (m) { schedule(null); showDetail(m[1]); return; }
  if (h === "#/overview") { showOverview(); schedule(showOverview); return; }
  show("requests");
  loadRequests();
  schedule($("live").checked ? pollRequests : null);
}

$("filters").addEventListener("input", (e) => {
  if (e.target.id === "live") { schedule(e.target.checked ? pollRequests : null); return; }
  state.next = null;
  loadRequests();
});
$("filters").addEventListener("submit", (e) => e.preventDefault());
window.addEventListener("hashchange", route);
route();
