// plait dashboard: one page, four views (processes, process, graph, daemon), all drawn from the REST API.
// The token arrives once in the URL fragment (#token=...), is kept in sessionStorage (this tab only) and sent
// as "Authorization: Bearer" on every call; the live feed is /api/events read with fetch (EventSource cannot
// send a header). No library, no CDN: it works offline.
"use strict";

const TOKEN_KEY = "plait.token";
const STATES = ["created", "running", "waiting", "finished", "excepted", "killed"];
const ACTIVE = new Set(["created", "running", "waiting"]);
const PAGE_SIZE = 50;
const SVG_NS = "http://www.w3.org/2000/svg";

// ---------------------------------------------------------------- small helpers
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) if (child) node.append(child);
  return node;
}

// replaceChildren that flattens nested lists and skips null, like el()
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
}

function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("show"), 2500);
}

// one formatter for every time shown (making one per call costs a millisecond or more each)
const TIME_FORMAT = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return isNaN(date) ? String(iso) : TIME_FORMAT.format(date);
}

function stateBadge(state, paused, exitStatus) {
  const failed = state === "finished" && exitStatus !== null && exitStatus !== undefined && exitStatus !== 0;
  return el("span", {},
    el("span", { class: `state ${failed ? "failed" : state}`, "data-state": state },
      failed ? `finished [${exitStatus}]` : state),
    paused ? el("span", { class: "flag", text: "paused" }) : null);
}

function valueText(summary) {
  if (summary && summary.value !== undefined) return String(summary.value);
  return "";
}

// ---------------------------------------------------------------- the token and the API
function takeTokenFromUrl() {
  const hash = location.hash.replace(/^#/, "");
  const params = new URLSearchParams(hash.includes("token=") ? hash.slice(hash.indexOf("token=")) : "");
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search + "#/"); // the token leaves the URL
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

class AuthError extends Error {}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token() || ""}`, ...(options.headers || {}) };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await fetch(path.replace(/^\//, ""), { ...options, headers, cache: "no-store" });
  if (response.status === 401) throw new AuthError("the token was refused");
  const kind = response.headers.get("content-type") || "";
  const body = kind.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) throw new Error((body && body.error) || `HTTP ${response.status}`);
  return body;
}

function showLogin(message) {
  stopTimers();
  const input = el("input", { type: "password", id: "token-input", placeholder: "token", autocomplete: "off" });
  const form = el("form", { class: "login", onsubmit: (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    live.restart();
    route();
  } },
    el("h1", { text: "plait dashboard" }),
    message ? el("p", { class: "error", text: message }) : null,
    el("p", {}, "Open the URL that ", el("code", { text: "plait web" }),
      " printed, or paste the token (in the profile folder, file ", el("code", { text: "web-token" }), ")."),
    input, el("button", { type: "submit", text: "Open" }));
  document.getElementById("view").replaceChildren(form);
  input.focus();
}

function fail(error) {
  if (error instanceof AuthError) showLogin("The token was refused.");
  else toast(error.message || String(error));
}

// ---------------------------------------------------------------- confirmation and control
function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function control(pk, action) {
  const message = action === "kill" ? { json: { message: "killed from the dashboard" } } : {};
  if (!(await confirmAction(`${action[0].toUpperCase() + action.slice(1)} process ${pk}?`))) return null;
  const answer = await api(`/api/processes/${pk}/${action}`, { method: "POST", ...message });
  toast(`${action} ${pk}: ${answer.results[String(pk)] || "done"}`);
  return answer;
}

function controlButtons(pk, state, paused, after) {
  const active = ACTIVE.has(state);
  const button = (action, enabled, cls) => el("button", {
    type: "button", "data-action": action, class: cls, disabled: !enabled,
    onclick: () => control(pk, action).then(after).catch(fail),
  }, action[0].toUpperCase() + action.slice(1));
  return el("div", { class: "controls" },
    button("pause", active && !paused), button("play", active && paused), button("kill", active, "danger"));
}

// ---------------------------------------------------------------- the live feed (/api/events)
const live = {
  listeners: new Set(),
  controller: null,
  connected: false,
  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); },
  emit(kind, data) { for (const fn of [...this.listeners]) fn(kind, data); },
  badge(on) {
    this.connected = on;
    const badge = document.getElementById("live");
    badge.textContent = on ? "live" : "offline";
    badge.className = `live ${on ? "on" : "off"}`;
  },
  restart() { if (this.controller) this.controller.abort(); this.controller = null; this.start(); },
  async start() {
    if (this.controller || !token()) return;
    const controller = (this.controller = new AbortController());
    let delay = 500;
    while (!controller.signal.aborted) {
      try {
        const response = await fetch("api/events", {
          headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" },
          signal: controller.signal, cache: "no-store",
        });
        if (response.status === 401) { this.badge(false); this.controller = null; showLogin("The token was refused."); return; }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        delay = 500;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let event = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) event = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
            }
            if (!data) continue;
            if (event === "ready") { this.badge(true); this.emit("ready", JSON.parse(data)); }
            else this.emit(event, JSON.parse(data));
          }
        }
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      this.badge(false);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  },
};

// ---------------------------------------------------------------- views and routing
let cleanups = [];
function stopTimers() { for (const fn of cleanups) fn(); cleanups = []; }
function every(ms, fn) { const id = setInterval(fn, ms); cleanups.push(() => clearInterval(id)); }
function listen(fn) { cleanups.push(live.on(fn)); }

function route() {
  stopTimers();
  if (!token()) { showLogin(); return; }
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", link.dataset.nav === (parts[0] === "daemon" ? "daemon" : "processes"));
  }
  const view = document.getElementById("view");
  fill(view);
  const pk = Number(parts[1]);
  if (parts[0] === "process" && pk > 0) processView(view, pk);
  else if (parts[0] === "graph" && pk > 0) graphView(view, pk);
  else if (parts[0] === "daemon") daemonView(view);
  else processesView(view, new URLSearchParams(parts[0] && parts[0].startsWith("?") ? parts[0].slice(1) : ""));
}

// ---------------------------------------------------------------- the process table
function likeToRegExp(pattern) {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\" && i + 1 < pattern.length) out += pattern[++i].replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    else if (c === "%") out += ".*";
    else if (c === "_") out += ".";
    else out += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`, "s");
}

function processesView(view, params) {
  const filters = {
    state: params.get("state") || "",
    label: params.get("label") || "",
    search: params.get("search") || "",
    offset: Number(params.get("offset")) || 0,
  };
  const stateSelect = el("select", { id: "filter-state", "aria-label": "state" },
    el("option", { value: "", text: "all states" }),
    el("option", { value: "active", text: "active (created, running, waiting)" }),
    STATES.map((s) => el("option", { value: s, text: s })));
  stateSelect.value = filters.state;
  const labelInput = el("input", { type: "text", id: "filter-label", placeholder: "process label (% and _ match)", value: filters.label, size: 26 });
  const searchInput = el("input", { type: "search", id: "filter-search", placeholder: "search label or pk", value: filters.search, size: 22 });
  const total = el("span", { class: "muted", id: "total" });
  const body = el("tbody", { id: "process-rows" });
  const prev = el("button", { type: "button", text: "◀ newer" });
  const next = el("button", { type: "button", text: "older ▶" });
  const pageInfo = el("span", {});
  view.append(
    el("h1", { text: "Processes" }),
    el("div", { class: "filters" },
      el("label", { text: "State" }), stateSelect, el("label", { text: "Label" }), labelInput,
      el("label", { text: "Search" }), searchInput, total),
    el("table", { id: "processes" },
      el("thead", {}, el("tr", {},
        ["PK", "Created", "Process", "State", "Waiting for / status", "Job stage", "Holder", "Exit"].map((h, i) =>
          el("th", { class: i === 0 || i === 7 ? "num" : null, text: h })))),
      body),
    el("div", { class: "pager" }, prev, pageInfo, next));

  const rows = new Map(); // pk -> {item, tr}
  let count = 0;

  function setHash() {
    const query = new URLSearchParams();
    for (const key of ["state", "label", "search"]) if (filters[key]) query.set(key, filters[key]);
    if (filters.offset) query.set("offset", filters.offset);
    const text = query.toString();
    history.replaceState(null, "", `#/${text ? "?" + text : ""}`);
  }

  function apiQuery() {
    const query = new URLSearchParams({ limit: PAGE_SIZE, offset: filters.offset });
    if (filters.state === "active") for (const s of ACTIVE) query.append("state", s);
    else if (filters.state) query.append("state", filters.state);
    if (filters.label) query.set("process_label", filters.label);
    if (filters.search) query.set("search", filters.search);
    return query;
  }

  function matches(item) {
    if (filters.state === "active" && !ACTIVE.has(item.state)) return false;
    if (filters.state && filters.state !== "active" && item.state !== filters.state) return false;
    if (filters.label) {
      const label = item.process_label || "";
      if (/[%_]/.test(filters.label) ? !likeToRegExp(filters.label).test(label) : label !== filters.label) return false;
    }
    if (filters.search) {
      const text = filters.search.trim().toLowerCase();
      const hay = `${item.label || ""}\n${item.process_label || ""}`.toLowerCase();
      if (!hay.includes(text) && String(item.pk) !== text) return false;
    }
    return true;
  }

  function cells(item) {
    return [
      el("td", { class: "num mono" }, el("a", { href: `#/process/${item.pk}`, text: item.pk })),
      el("td", { class: "mono", text: when(item.ctime) }),
      el("td", {}, item.process_label || "", item.label ? el("span", { class: "muted", text: ` (${item.label})` }) : null),
      el("td", { class: "state-cell" }, stateBadge(item.state, item.paused, item.exit_status)),
      el("td", { class: "status", title: item.process_status || "", text: item.process_status || "" }),
      el("td", { class: "mono", text: item.job_stage || "" }),
      el("td", { class: "mono holder", text: item.holder || "" }),
      el("td", { class: "num mono", text: item.exit_status ?? "" }),
    ];
  }

  function rowOf(item) {
    const tr = el("tr", { class: "row", "data-pk": item.pk, "data-state": item.state, "data-paused": item.paused ? "1" : "0",
      onclick: (event) => { if (!(event.target instanceof HTMLAnchorElement)) location.hash = `#/process/${item.pk}`; } },
    cells(item));
    return tr;
  }

  function showCount() {
    total.textContent = `${count} process${count === 1 ? "" : "es"}`;
    pageInfo.textContent = count ? `${filters.offset + 1}–${Math.min(filters.offset + PAGE_SIZE, count)} of ${count}` : "";
    prev.disabled = filters.offset === 0;
    next.disabled = filters.offset + PAGE_SIZE >= count;
  }

  let loading = 0;
  async function load() {
    const mine = ++loading;
    try {
      const page = await api(`/api/processes?${apiQuery()}`);
      if (mine !== loading) return;
      rows.clear();
      count = page.total;
      const trs = page.items.map((item) => { const tr = rowOf(item); rows.set(item.pk, { item, tr }); return tr; });
      fill(body, ...trs);
      if (!trs.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "muted", text: "no process matches" })));
      showCount();
      if (!performance.getEntriesByName("plait:table-filled").length) performance.mark("plait:table-filled");
    } catch (error) { fail(error); }
  }

  function onChange(kind, item) {
    if (kind === "ready" || kind === "reset") { load(); return; }
    if (kind !== "process") return;
    const known = rows.get(item.pk);
    if (known) {
      const merged = { ...known.item, ...item };
      const tr = rowOf(merged);
      tr.classList.add("flash");
      known.tr.replaceWith(tr);
      rows.set(item.pk, { item: merged, tr });
      return;
    }
    if (filters.offset !== 0 || !matches(item)) return;
    const newest = Math.max(0, ...rows.keys());
    if (item.pk <= newest) return; // an older process changed: it belongs to a later page
    if (!rows.size) fill(body);
    const tr = rowOf(item);
    tr.classList.add("flash");
    body.prepend(tr);
    rows.set(item.pk, { item, tr });
    count += 1;
    while (rows.size > PAGE_SIZE) {
      const oldest = Math.min(...rows.keys());
      rows.get(oldest).tr.remove();
      rows.delete(oldest);
    }
    showCount();
  }

  let typing = null;
  const changed = () => {
    filters.state = stateSelect.value;
    filters.label = labelInput.value.trim();
    filters.search = searchInput.value.trim();
    filters.offset = 0;
    setHash();
    load();
  };
  stateSelect.addEventListener("change", changed);
  for (const input of [labelInput, searchInput]) {
    input.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(changed, 250); });
  }
  prev.addEventListener("click", () => { filters.offset = Math.max(0, filters.offset - PAGE_SIZE); setHash(); load(); });
  next.addEventListener("click", () => { filters.offset += PAGE_SIZE; setHash(); load(); });
  listen(onChange);
  load();
}

// ---------------------------------------------------------------- one process
function linkTable(links, empty) {
  const names = Object.keys(links || {});
  if (!names.length) return el("p", { class: "muted", text: empty });
  return el("table", {}, el("thead", {}, el("tr", {}, ["Port", "Node", "Type", "Value"].map((h) => el("th", { text: h })))),
    el("tbody", {}, names.map((name) => {
      const node = links[name];
      return el("tr", {},
        el("td", { class: "mono", text: name }),
        el("td", { class: "mono" }, el("a", { href: `#/graph/${node.pk}`, title: "provenance graph", text: node.pk })),
        el("td", { text: node.class }),
        el("td", { class: "mono", text: valueText(node) }));
    })));
}

function callTree(entries) {
  return el("ul", { class: "tree" }, entries.map((entry) => el("li", {},
    el("a", { href: `#/process/${entry.pk}`, class: "mono", text: entry.pk }), " ", entry.process_label, " ",
    stateBadge(entry.state, entry.paused, entry.exit_status),
    entry.called && entry.called.length ? callTree(entry.called) : null)));
}

function treePks(entries, into) {
  for (const entry of entries || []) { into.add(entry.pk); treePks(entry.called, into); }
  return into;
}

async function download(pk, path) {
  try {
    const blob = await api(`/api/nodes/${pk}/files/${path.split("/").map(encodeURIComponent).join("/")}`);
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: path.split("/").pop() });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) { fail(error); }
}

function processView(view, pk) {
  const head = el("div", {});
  const body = el("div", {});
  const report = el("pre", { class: "report", id: "report" });
  view.append(head, body, el("h2", { text: "Report" }), report);
  let tree = new Set([pk]);
  let lastState = null;

  async function loadReport() {
    try {
      const answer = await api(`/api/processes/${pk}/report`);
      const atEnd = report.scrollTop + report.clientHeight >= report.scrollHeight - 4;
      fill(report, ...(answer.lines.length ? answer.lines.map((line) => el("div", { class: `line lvl-${line.level}` },
        el("span", { class: "muted", text: `${when(line.time)} [${line.pk}|${line.level}] ` }), line.message))
        : [el("span", { class: "muted", text: "no report lines yet" })]));
      if (atEnd) report.scrollTop = report.scrollHeight;
    } catch (error) { fail(error); }
  }

  async function load() {
    try {
      const [proc, node] = await Promise.all([api(`/api/processes/${pk}`), api(`/api/nodes/${pk}`)]);
      lastState = proc.state;
      tree = treePks(proc.call_tree, new Set([pk]));
      const attrs = node.attributes || {};
      fill(head,
        el("h1", {}, `${proc.process_label} `, el("span", { class: "mono muted", text: `pk ${pk}` }), " ",
          el("span", { id: "process-state" }, stateBadge(proc.state, proc.paused, proc.exit_status))),
        el("div", { class: "toolbar" },
          controlButtons(pk, proc.state, proc.paused, load),
          el("a", { href: `#/graph/${pk}`, id: "open-graph", text: "provenance graph →" })));
      const facts = [
        ["State", proc.state + (proc.paused ? " (paused)" : "")],
        ["Status", proc.process_status || ""],
        ["Exit", proc.exit_status === null ? "" : `${proc.exit_status}${proc.exit_message ? " — " + proc.exit_message : ""}`],
        ["Holder", proc.holder ? el("span", { class: "mono", text: proc.holder }) : ""],
        ["Created", when(proc.ctime)],
        ["Modified", when(node.mtime)],
        ["Label", proc.label || ""],
        ["Caller", proc.caller ? el("a", { href: `#/process/${proc.caller}`, text: proc.caller }) : ""],
        ["Type", proc.node_type],
        ["UUID", el("span", { class: "mono", text: proc.uuid })],
      ];
      if (proc.node_type === "process.calcjob") {
        facts.push(["Job stage", proc.job_stage || ""],
          ["Scheduler", proc.process_status || ""], ["Job id", attrs.job_id || ""],
          ["Remote folder", attrs.remote_workdir || ""]);
      }
      const files = node.files || [];
      fill(body,
        el("div", { class: "grid" },
          el("section", {}, el("h2", { text: "Process" }),
            el("dl", { class: "facts" }, facts.filter(([, v]) => v !== "").map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]))),
          el("section", {}, el("h2", { text: "Call tree" }),
            proc.call_tree.length ? callTree(proc.call_tree) : el("p", { class: "muted", text: "calls nothing" }))),
        el("div", { class: "grid" },
          el("section", {}, el("h2", { text: "Inputs" }), linkTable(proc.inputs, "no inputs")),
          el("section", {}, el("h2", { text: "Outputs" }), linkTable(proc.outputs, "no outputs yet"))),
        proc.exception ? [el("h2", { text: "Exception" }), el("pre", { class: "exception", text: proc.exception })] : null,
        el("h2", { text: "Files" }),
        files.length ? el("ul", {}, files.map((path) => el("li", {},
          el("a", { href: "#", class: "mono", text: path, onclick: (event) => { event.preventDefault(); download(pk, path); } }))))
          : el("p", { class: "muted", text: "no files" }));
      loadReport();
    } catch (error) { fail(error); }
  }

  let pending = null;
  listen((kind, item) => {
    if (kind === "ready" || kind === "reset" || (kind === "process" && (tree.has(item.pk) || tree.has(item.caller)))) {
      clearTimeout(pending);
      pending = setTimeout(load, 100);
    }
  });
  every(3000, () => { if (ACTIVE.has(lastState)) loadReport(); });
  load();
}

// ---------------------------------------------------------------- the provenance graph
function nodeClass(node) {
  if (node.process) return node.process.process_label || node.node_type;
  const name = node.node_type.split(".").pop();
  return name.charAt(0).toUpperCase() + name.slice(1);
}

function graphView(view, pk) {
  const nodes = new Map(); // pk -> node (+ layer, row)
  const links = new Map(); // "s>t:label" -> link
  const expanded = new Set();
  let selected = pk;
  let highlight = "";
  const area = svg("svg", { id: "graph", role: "img", "aria-label": `provenance graph around ${pk}` });
  const scene = svg("g", { class: "scene" });
  const defs = svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a949e" })));
  area.append(defs, scene);
  const classes = el("select", { id: "highlight", "aria-label": "highlight a class" });
  const info = el("span", { class: "muted", id: "graph-info" });
  const zoomBy = (factor) => { view_.scale = Math.min(4, Math.max(0.15, view_.scale * factor)); transform(); };
  view.append(
    el("h1", {}, "Provenance graph around ", el("a", { href: `#/process/${pk}`, class: "mono", text: pk })),
    el("div", { class: "graph-bar" },
      el("button", { type: "button", text: "+", title: "zoom in", onclick: () => zoomBy(1.25) }),
      el("button", { type: "button", text: "−", title: "zoom out", onclick: () => zoomBy(0.8) }),
      el("button", { type: "button", text: "fit", onclick: () => fit() }),
      el("label", { text: "Highlight" }), classes,
      el("span", { class: "legend", text: "click a node to expand its neighbours; double-click to open it; drag to pan, wheel to zoom" }),
      info),
    area);

  const view_ = { x: 0, y: 0, scale: 1 };
  const transform = () => scene.setAttribute("transform", `translate(${view_.x},${view_.y}) scale(${view_.scale})`);

  async function expand(which, layer) {
    if (expanded.has(which)) return;
    try {
      const graph = await api(`/api/nodes/${which}/graph?ancestors=1&descendants=1`);
      expanded.add(which);
      if (!nodes.has(which)) nodes.set(which, { ...graph.nodes.find((n) => n.pk === which), layer });
      const base = nodes.get(which).layer;
      for (const node of graph.nodes) {
        if (nodes.has(node.pk)) { Object.assign(nodes.get(node.pk), node, { layer: nodes.get(node.pk).layer }); continue; }
        const incoming = graph.links.some((l) => l.source === node.pk && l.target === which);
        nodes.set(node.pk, { ...node, layer: base + (incoming ? -1 : 1) });
      }
      for (const link of graph.links) links.set(`${link.source}>${link.target}:${link.label}`, link);
      draw();
    } catch (error) { fail(error); }
  }

  const WIDTH = 190, HEIGHT = 46, GAP_X = 110, GAP_Y = 24;
  function layout() {
    const byLayer = new Map();
    for (const node of nodes.values()) {
      if (!byLayer.has(node.layer)) byLayer.set(node.layer, []);
      byLayer.get(node.layer).push(node);
    }
    const layers = [...byLayer.keys()].sort((a, b) => a - b);
    const tallest = Math.max(...[...byLayer.values()].map((list) => list.length));
    for (const layer of layers) {
      const list = byLayer.get(layer).sort((a, b) => a.pk - b.pk);
      const offset = ((tallest - list.length) * (HEIGHT + GAP_Y)) / 2;
      list.forEach((node, i) => {
        node.x = (layer - layers[0]) * (WIDTH + GAP_X);
        node.y = offset + i * (HEIGHT + GAP_Y);
      });
    }
  }

  function title(node) {
    if (node.process) return `${node.process.process_label || node.node_type}`;
    return nodeClass(node);
  }

  function subtitle(node) {
    if (node.process) {
      const p = node.process;
      return `${node.pk} · ${p.state}${p.paused ? " (paused)" : ""}${p.exit_status ? ` [${p.exit_status}]` : ""}`;
    }
    return `${node.pk}${node.label ? " · " + node.label : ""}`;
  }

  function draw() {
    layout();
    const known = [...new Set([...nodes.values()].map(nodeClass))].sort();
    const keep = highlight;
    fill(classes, el("option", { value: "", text: "(none)" }), known.map((c) => el("option", { value: c, text: c })));
    classes.value = known.includes(keep) ? keep : "";
    const linkGroup = svg("g", {});
    for (const link of links.values()) {
      const a = nodes.get(link.source), b = nodes.get(link.target);
      if (!a || !b) continue;
      const x1 = a.x + WIDTH, y1 = a.y + HEIGHT / 2, x2 = b.x, y2 = b.y + HEIGHT / 2;
      const back = x2 <= x1;
      const d = back
        ? `M${a.x + WIDTH / 2},${a.y + HEIGHT} C${a.x + WIDTH / 2},${a.y + HEIGHT + 60} ${b.x + WIDTH / 2},${b.y + HEIGHT + 60} ${b.x + WIDTH / 2},${b.y + HEIGHT}`
        : `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}`;
      const dim = highlight && nodeClass(a) !== highlight && nodeClass(b) !== highlight;
      linkGroup.append(svg("g", { class: `link${dim ? " dim" : ""}` },
        svg("path", { d, "marker-end": "url(#arrow)" }),
        svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, "text-anchor": "middle", text: `${link.label}` })));
    }
    const nodeGroup = svg("g", {});
    for (const node of nodes.values()) {
      const cls = nodeClass(node);
      const kinds = ["node", node.process ? "process" : "data"];
      if (node.pk === pk) kinds.push("center");
      if (node.pk === selected) kinds.push("selected");
      if (highlight) kinds.push(cls === highlight ? "hl" : "dim");
      const stateColor = node.process ? getComputedStyle(document.documentElement).getPropertyValue(`--${node.process.state}`).trim() : "";
      const group = svg("g", { class: kinds.join(" "), "data-pk": node.pk, transform: `translate(${node.x},${node.y})`,
        onclick: (event) => { event.stopPropagation(); selected = node.pk; expand(node.pk); draw(); },
        ondblclick: () => { location.hash = node.process ? `#/process/${node.pk}` : `#/graph/${node.pk}`; } },
      svg("rect", { width: WIDTH, height: HEIGHT, rx: node.process ? 4 : 16 }),
      node.process ? svg("circle", { class: "dot", cx: 12, cy: 14, r: 5, fill: stateColor || "#888" }) : null,
      svg("text", { x: node.process ? 22 : 12, y: 18, text: clip(title(node), 24) }),
      svg("text", { class: "sub", x: 12, y: 36, text: clip(subtitle(node), 28) }),
      expanded.has(node.pk) ? null : svg("text", { class: "sub", x: WIDTH - 14, y: 18, text: "+" }));
      group.append(svg("title", { text: `${title(node)} ${node.pk}\n${node.node_type}\n${node.uuid}` }));
      nodeGroup.append(group);
    }
    fill(scene, linkGroup, nodeGroup);
    info.textContent = `${nodes.size} nodes, ${links.size} links`;
    if (!fitted) fit();
  }

  function clip(text, n) { text = String(text); return text.length > n ? text.slice(0, n - 1) + "…" : text; }

  let fitted = false;
  function fit() {
    const box = area.getBoundingClientRect();
    const xs = [...nodes.values()];
    if (!xs.length || !box.width) return;
    const w = Math.max(...xs.map((n) => n.x)) + WIDTH, h = Math.max(...xs.map((n) => n.y)) + HEIGHT + 60;
    view_.scale = Math.min(1.4, (box.width - 40) / w, (box.height - 40) / h);
    view_.x = (box.width - w * view_.scale) / 2;
    view_.y = Math.max(20, (box.height - h * view_.scale) / 2);
    transform();
    fitted = true;
  }

  classes.addEventListener("change", () => { highlight = classes.value; draw(); });
  area.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = area.getBoundingClientRect();
    const factor = event.deltaY < 0 ? 1.12 : 1 / 1.12;
    const mx = event.clientX - box.left, my = event.clientY - box.top;
    const scale = Math.min(4, Math.max(0.15, view_.scale * factor));
    view_.x = mx - ((mx - view_.x) * scale) / view_.scale;
    view_.y = my - ((my - view_.y) * scale) / view_.scale;
    view_.scale = scale;
    transform();
  }, { passive: false });
  let drag = null;
  area.addEventListener("pointerdown", (event) => {
    if (event.target.closest && event.target.closest(".node")) return;
    drag = { x: event.clientX - view_.x, y: event.clientY - view_.y };
    area.classList.add("dragging");
  });
  window.addEventListener("pointermove", (event) => { if (drag) { view_.x = event.clientX - drag.x; view_.y = event.clientY - drag.y; transform(); } });
  window.addEventListener("pointerup", () => { drag = null; area.classList.remove("dragging"); });
  listen((kind, item) => {
    if (kind === "process" && nodes.has(item.pk) && nodes.get(item.pk).process) {
      Object.assign(nodes.get(item.pk).process, { state: item.state, paused: item.paused, exit_status: item.exit_status });
      draw();
    }
  });
  expand(pk, 0);
}

// ---------------------------------------------------------------- the daemon panel
function daemonView(view) {
  const body = el("div", { id: "daemon" });
  const count = el("input", { type: "text", value: "1", size: 3, id: "worker-count", "aria-label": "workers" });
  const change = (command) => async () => {
    const n = Number(count.value) || 1;
    if (command === "decr" && !(await confirmAction(`Stop ${n} worker${n === 1 ? "" : "s"}?`))) return;
    try { await api(`/api/daemon/${command}?n=${n}`, { method: "POST" }); toast(`${command} ${n}`); load(); }
    catch (error) { fail(error); }
  };
  view.append(el("h1", { text: "Daemon" }),
    el("div", { class: "controls" }, el("button", { type: "button", id: "incr", text: "Add workers", onclick: change("incr") }),
      count, el("button", { type: "button", id: "decr", text: "Stop workers", onclick: change("decr") })),
    body);
  async function load() {
    try {
      const status = await api("/api/daemon");
      if (!status.running) {
        fill(body, el("p", {}, "The daemon is not running. Start it with ", el("code", { text: "plait daemon start" }), "."));
        return;
      }
      const held = (w) => Array.isArray(w.held) ? `${w.held.length}` : (w.held ?? "");
      fill(body,
        el("dl", { class: "facts" }, el("dt", { text: "Supervisor pid" }), el("dd", { class: "mono", text: status.pid ?? "" }),
          el("dt", { text: "Profile" }), el("dd", { text: status.profile ?? "" }),
          el("dt", { text: "Workers" }), el("dd", { text: (status.workers || []).length })),
        el("h2", { text: "Workers" }),
        el("table", { id: "workers" }, el("thead", {}, el("tr", {}, ["#", "PID", "Alive", "Memory (MiB)", "Processes held", "Restarts", "Heartbeat"].map((h) => el("th", { text: h })))),
          el("tbody", {}, (status.workers || []).map((w) => el("tr", {},
            el("td", { text: w.index ?? "" }), el("td", { class: "mono", text: w.pid ?? "" }),
            el("td", { text: w.alive ? "yes" : "no" }),
            el("td", { class: "num", text: w.rss_kib ? (w.rss_kib / 1024).toFixed(1) : "" }),
            el("td", { class: "num", text: held(w) }), el("td", { class: "num", text: w.restarts ?? "" }),
            el("td", { class: "mono", text: typeof w.heartbeat === "number" ? new Date(w.heartbeat * 1000).toLocaleTimeString() : when(w.heartbeat) }))))));
    } catch (error) { fail(error); }
  }
  every(2000, load);
  load();
}

// ---------------------------------------------------------------- start
document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  if (live.controller) live.controller.abort();
  live.controller = null;
  live.badge(false);
  showLogin("The token was forgotten in this tab.");
});
window.addEventListener("hashchange", () => { takeTokenFromUrl(); route(); });
takeTokenFromUrl();
route();
live.start();
