// SME sequence editor: a sequence as JSON, checked as it is typed (syntax here, everything
// else by the gateway's own write route with dry_run=true, so there is one validator), drawn
// as a flow, previewed for a made-up user, and saved through the API with the version check.
// Data is only ever written as text (textContent, attributes, SVG text), never as HTML.
"use strict";

const SERVER_FIELDS = ["id", "version", "created_at", "updated_at", "status_reason"];
const DEBOUNCE_MS = 400;

const state = {
  saved: null, // the stored configuration being edited (null: a new sequence)
  ticket: 0, // the latest validation; older answers are dropped
  timer: null,
  validated: null, // the text the server last found valid
};

// ---------- DOM helpers ----------
const $ = (id) => document.getElementById(id);

function setStatus(text, cls) {
  $("status").textContent = text;
  $("status").className = "sub " + (cls || "");
}

function setValidity(text, valid) {
  $("validity").textContent = text;
  $("validity").dataset.valid = valid;
}

// ---------- API access ----------
// Every answer, whatever its status, as {status, data}; only a missing key throws.
async function call(method, url, body, headers = {}) {
  const key = apiKey();
  const all = { ...headers };
  if (key) all.Authorization = "Bearer " + key;
  if (body !== undefined) all["Content-Type"] = "application/json";
  const response = await fetch(url, { method, headers: all, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) throw new AuthError("an API key is needed");
  let data = null;
  try {
    data = await response.json();
  } catch (_) { /* not JSON */ }
  return { status: response.status, data };
}

function showLogin(message) {
  $("login-form").hidden = false;
  $("login-error").textContent = message || "";
  document.body.dataset.state = "login";
}

// ---------- the document ----------
function editable(config) {
  const out = { ...config };
  for (const field of SERVER_FIELDS) delete out[field];
  return out;
}

// The RFC 7386 merge patch turning `before` into `after` (null removes a field): an update
// sends only what changed, so PATCH's rules (immutable fields, status changes) apply as usual.
function mergeDiff(before, after) {
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isObject(before) || !isObject(after)) return after;
  const patch = {};
  for (const key of Object.keys(before)) if (!(key in after)) patch[key] = null;
  for (const [key, value] of Object.entries(after)) {
    if (!(key in before)) patch[key] = value;
    else if (JSON.stringify(before[key]) !== JSON.stringify(value)) patch[key] = mergeDiff(before[key], value);
  }
  return patch;
}

// JSON syntax is checked here (the server would only say "invalid JSON"): with line and column.
function parseDefinition(text) {
  try {
    const doc = JSON.parse(text);
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
      return { error: { message: "the definition must be a JSON object", line: 1, column: 1 } };
    }
    return { doc };
  } catch (error) {
    return { error: { message: error.message, ...syntaxPosition(error.message, text) } };
  }
}

function syntaxPosition(message, text) {
  const position = message.match(/position (\d+)/);
  const found = syntaxOffset(text);
  const offset = position ? Number(position[1]) : found !== null ? found : text.length;
  const before = text.slice(0, offset);
  return { offset, line: before.split("\n").length, column: offset - before.lastIndexOf("\n") };
}

// Where JSON syntax first goes wrong (null: nowhere), for the parser messages that do not say
// ("Unexpected token '}', ... is not valid JSON"): the JSON grammar, recognised, nothing more.
const JSON_NUMBER = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

function syntaxOffset(text) {
  return scanJSON(text, () => {});
}

// The value at a field path (["steps", 0, "channels"]), or its deepest ancestor present: where
// in the text a field error points (a missing field: the object that should hold it).
function locate(text, path) {
  let best = { depth: -1, offset: 0 };
  scanJSON(text, (at, offset) => {
    const depth = at.length;
    if (depth > best.depth && depth <= path.length && at.every((part, k) => String(part) === String(path[k]))) {
      best = { depth, offset };
    }
  });
  return best.offset;
}

// Recognises the JSON grammar, calling onValue(path, offset) where each value starts; the
// offset of the first syntax error, or null.
function scanJSON(text, onValue) {
  let i = 0;
  const fail = () => { throw new RangeError(String(i)); };
  const ws = () => { while (i < text.length && " \t\n\r".includes(text[i])) i++; };
  const expect = (c) => { if (text[i] !== c) fail(); i++; };
  const literal = (word) => { for (const c of word) expect(c); };
  const string = () => {
    expect('"');
    for (;;) {
      if (i >= text.length || text[i] < " ") fail();
      const c = text[i++];
      if (c === '"') return;
      if (c !== "\\") continue;
      if (text[i] === "u") {
        i++;
        for (let k = 0; k < 4; k++, i++) if (!/[0-9a-fA-F]/.test(text[i] || "")) fail();
      } else if (i < text.length && '"\\/bfnrt'.includes(text[i])) i++;
      else fail();
    }
  };
  const value = (path) => {
    ws();
    onValue(path, i);
    const c = text[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++;
      ws();
      if (text[i] === close) { i++; return; }
      for (let index = 0; ; index++) {
        let key = index;
        if (c === "{") {
          ws();
          const start = i;
          string();
          key = JSON.parse(text.slice(start, i));
          ws();
          expect(":");
        }
        value([...path, key]);
        ws();
        if (text[i] === ",") { i++; continue; }
        expect(close);
        return;
      }
    }
    if (c === '"') return string();
    if (c === "t") return literal("true");
    if (c === "f") return literal("false");
    if (c === "n") return literal("null");
    JSON_NUMBER.lastIndex = i;
    const number = JSON_NUMBER.exec(text);
    if (!number) fail();
    i += number[0].length;
  };
  try {
    value([]);
    ws();
    if (i < text.length) fail();
    return null;
  } catch (error) {
    if (error instanceof RangeError && /^\d+$/.test(error.message)) return Number(error.message);
    throw error;
  }
}

// A field path as the API gives it (["body", "steps", 0, "id"]) → steps[0].id
function fieldPath(loc) {
  const parts = (loc || []).slice(loc && loc[0] === "body" ? 1 : 0);
  let out = "";
  for (const part of parts) out += typeof part === "number" ? `[${part}]` : (out ? "." : "") + part;
  return out || "(the whole definition)";
}

function showProblems(list, problems) {
  list.replaceChildren(...problems.map((p) => {
    const item = el("li", { dataset: { path: p.path }, title: p.offset == null ? null : "show it in the definition" },
      p.path ? el("code", {}, p.path) : null, p.path ? " " : null, p.message);
    if (p.offset != null) {
      item.classList.add("locatable");
      item.addEventListener("click", () => showAt(p.offset));
    }
    return item;
  }));
}

// Put the caret on a place in the definition and scroll it into view.
function showAt(offset) {
  const area = $("definition");
  area.focus();
  area.setSelectionRange(offset, offset);
  const line = area.value.slice(0, offset).split("\n").length;
  const height = area.scrollHeight / Math.max(1, area.value.split("\n").length);
  area.scrollTop = Math.max(0, (line - 4) * height);
}

// `text`: the definition the errors are about, to point each one at its place.
function fieldProblems(detail, text = null) {
  if (!Array.isArray(detail)) return [{ path: "", message: typeof detail === "string" ? detail : JSON.stringify(detail) }];
  return detail.map((e) => {
    const loc = (e.loc || []).slice(e.loc && e.loc[0] === "body" ? 1 : 0);
    return { path: fieldPath(e.loc), message: e.msg || "invalid", offset: text === null ? null : locate(text, loc) };
  });
}

// The write as the API takes it: a create (POST) or a merge patch against the version edited.
function writeRequest(doc, dryRun) {
  const query = dryRun ? "?dry_run=true" : "";
  if (state.saved === null) return { method: "POST", url: API + query, body: doc, headers: {} };
  return {
    method: "PATCH",
    url: `${API}/${encodeURIComponent(state.saved.id)}${query}`,
    body: mergeDiff(editable(state.saved), doc),
    headers: { "If-Match": `"${state.saved.version}"` },
  };
}

// ---------- live validation ----------
function edited() {
  clearTimeout(state.timer);
  state.ticket += 1; // any answer in flight is for an older text
  state.validated = null;
  $("save").disabled = true;
  setValidity("checking…", "pending");
  state.timer = setTimeout(validate, DEBOUNCE_MS);
}

async function validate() {
  const text = $("definition").value;
  const ticket = ++state.ticket;
  const parsed = parseDefinition(text);
  if (parsed.error) {
    const { message, line, column, offset } = parsed.error;
    setValidity(`JSON syntax error at line ${line}, column ${column}`, "false");
    showProblems($("problems"), [{ path: "", message, offset }]);
    $("problems").dataset.line = String(line);
    $("problems").dataset.column = String(column);
    return;
  }
  delete $("problems").dataset.line;
  delete $("problems").dataset.column;
  const request = writeRequest(parsed.doc, true);
  let answer;
  try {
    answer = await call(request.method, request.url, request.body, request.headers);
  } catch (error) {
    if (ticket === state.ticket) failed(error);
    return;
  }
  if (ticket !== state.ticket) return; // the text changed meanwhile
  if (answer.status === 200) {
    setValidity("valid", "true");
    showProblems($("problems"), []);
    state.validated = text;
    $("save").disabled = false;
    drawFlow(answer.data);
  } else if (answer.status === 422) {
    const problems = fieldProblems(answer.data && answer.data.detail, text);
    setValidity(`${problems.length} problem${problems.length === 1 ? "" : "s"}`, "false");
    showProblems($("problems"), problems);
  } else if (answer.status === 409) {
    refused(answer.data && answer.data.detail);
  } else if (answer.status === 404) {
    setValidity(state.saved ? "this sequence is gone, or not visible with this key"
      : `workspace ${parsed.doc.workspace_id} is not one this key may write to`, "false");
    showProblems($("problems"), []);
  } else {
    setValidity(`could not check: ${answer.status} ${detailText(answer.data)}`, "false");
    showProblems($("problems"), []);
  }
}

function detailText(data) {
  const detail = data && data.detail;
  return typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : "";
}

function failed(error) {
  if (error instanceof AuthError) {
    const hadKey = sessionStorage.getItem(KEY_STORE) !== null;
    sessionStorage.removeItem(KEY_STORE);
    showLogin(hadKey ? "That key was not accepted." : "");
    return;
  }
  setStatus("Could not reach the gateway: " + error.message, "error");
}

// ---------- saving ----------
async function save() {
  const text = $("definition").value;
  const parsed = parseDefinition(text);
  if (parsed.error) return validate();
  const request = writeRequest(parsed.doc, false);
  if (state.saved !== null && Object.keys(request.body).length === 0) {
    setStatus(`Nothing to save: this is version ${state.saved.version}.`, "");
    return;
  }
  $("save").disabled = true;
  let answer;
  try {
    answer = await call(request.method, request.url, request.body, request.headers);
  } catch (error) {
    failed(error);
    return;
  }
  if (answer.status === 200 || answer.status === 201) {
    const created = state.saved === null;
    loaded(answer.data);
    setStatus(`Saved version ${answer.data.version}${created ? " (created)" : ""}.`, "saved");
  } else if (answer.status === 409) {
    refused(answer.data && answer.data.detail);
  } else if (answer.status === 422) {
    const problems = fieldProblems(answer.data && answer.data.detail, text);
    setValidity(`${problems.length} problem${problems.length === 1 ? "" : "s"}`, "false");
    showProblems($("problems"), problems);
  } else {
    setStatus(`Not saved: ${answer.status} ${detailText(answer.data)}`, "error");
    $("save").disabled = false;
  }
}

// 409: a stale version is a conflict with another writer; anything else (a STOPPED sequence,
// the kill switch) is a refusal the text cannot fix by reloading.
function refused(detail) {
  const text = typeof detail === "string" ? detail : "refused";
  if (/stale/.test(text)) {
    setValidity("another writer saved a newer version", "false");
    showProblems($("problems"), []);
    showConflict(text);
  } else {
    setValidity("cannot be saved", "false");
    showProblems($("problems"), [{ path: "", message: text }]);
  }
}

// Another writer saved first: say so, keep the text, never write over theirs.
function showConflict(detail) {
  $("conflict-text").textContent = `${detail || "the sequence changed"} (you edited version ${state.saved ? state.saved.version : "?"}). ` +
    "Another writer saved after you loaded it; reload to see their version, then make your change again.";
  $("conflict").hidden = false;
  $("save").disabled = true;
  setStatus("Not saved: another writer saved first.", "error");
  document.body.dataset.conflict = "true";
}

// A stored configuration becomes the one edited: its text, its version, its address.
function loaded(config) {
  state.saved = config;
  $("definition").value = JSON.stringify(editable(config), null, 2);
  $("title").textContent = config.name;
  $("doc-version").textContent = `${config.id} · v${config.version} · ${config.status}`;
  $("doc-version").dataset.version = String(config.version);
  $("dashboard-link").setAttribute("href", "/dashboard/" + encodeURIComponent(config.id));
  $("conflict").hidden = true;
  delete document.body.dataset.conflict;
  const path = "/dashboard/editor/" + encodeURIComponent(config.id);
  if (location.pathname !== path) history.replaceState(null, "", path);
  edited();
}

async function reload() {
  try {
    const answer = await call("GET", `${API}/${encodeURIComponent(state.saved.id)}`);
    if (answer.status !== 200) {
      setStatus(`Could not reload: ${answer.status} ${detailText(answer.data)}`, "error");
      return;
    }
    loaded(answer.data);
    setStatus(`Reloaded version ${answer.data.version}.`, "");
  } catch (error) {
    failed(error);
  }
}

// ---------- the flow drawing ----------
// A box per step in order, the fall-through arrow down the middle; every jump (branch rule,
// split path, awaited event) an arrow in its own lane on the right, labelled.
function stepSummary(step) {
  const lines = [];
  const waits = [];
  if (step.wait && step.wait !== "PT0S") waits.push(`wait ${step.wait}${step.wait_from === "entry" ? " from entry" : ""}`);
  if (step.wait_for) waits.push(`wait for ${step.wait_for.event_type} ≤ ${step.wait_for.timeout}`);
  if (step.wait_until) waits.push(`until ${step.wait_until.time}${step.wait_until.weekdays ? " " + step.wait_until.weekdays.join(",") : ""}`);
  lines.push(waits.length ? waits.join(" · ") : "no wait");
  if (step.kind === "message") {
    const content = step.template || Object.keys(step.content || {}).join(", ");
    lines.push(`${(step.channels || []).join(", ")} · ${content}${step.variants.length > 1 ? ` · ${step.variants.length} variants` : ""}`);
  } else if (step.kind === "branch") {
    lines.push(`${step.branches.length} rule${step.branches.length === 1 ? "" : "s"}, else next`);
  } else {
    lines.push(`${step.paths.length} weighted paths`);
  }
  return lines;
}

function ruleLabel(rule) {
  if (rule.event_type) return "if " + rule.event_type;
  if (rule.attribute) {
    const a = rule.attribute;
    const test = a.equals != null ? `= ${a.equals}` : a.one_of ? `in ${a.one_of.length} values` : `in ${a.min ?? ""}..${a.max ?? ""}`;
    return `if ${a.key} ${test}`;
  }
  return "if expression";
}

// Every jump a step can make besides falling through: branch rules, split paths, an awaited event.
function jumps(step) {
  const out = [];
  for (const rule of step.branches || []) out.push({ to: rule.goto, label: ruleLabel(rule) });
  if (step.kind === "split") {
    const total = step.paths.reduce((s, p) => s + p.weight, 0);
    for (const path of step.paths) out.push({ to: path.goto, label: `${Math.round((100 * path.weight) / total)}% split` });
  }
  if (step.wait_for) out.push({ to: step.wait_for.on_event, label: "on " + step.wait_for.event_type });
  return out;
}

function arrowMarker() {
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7280" }));
  const defs = svg("defs");
  defs.append(marker);
  return defs;
}

function drawFlow(config) {
  const w = 300, h = 64, gap = 30, top = 44, lane = 26, x = 10;
  const steps = config.steps;
  const index = Object.fromEntries(steps.map((s, i) => [s.id, i]));
  const edges = [];
  steps.forEach((step, i) => {
    for (const jump of jumps(step)) {
      const to = jump.to === "next" ? i + 1 : jump.to === "exit" ? steps.length : index[jump.to];
      edges.push({ from: i, to, label: jump.label, name: jump.to });
    }
  });
  const yOf = (i) => top + i * (h + gap);
  const endY = yOf(steps.length);
  const width = x + w + 24 + edges.length * lane + 150;
  const root = svg("svg", { id: "editor-flow", class: "editor-flow", role: "img", "aria-label": "the sequence's steps as a flow",
    viewBox: `0 0 ${width} ${endY + 40}`, width, height: endY + 40 });
  root.append(arrowMarker());
  root.append(svg("rect", { x, y: 4, width: w, height: 26, rx: 13, fill: "#ecfdf5", stroke: "#16a34a" }),
    svg("text", { x: x + 12, y: 21, "font-size": 12, id: "flow-entry" }, "entry on " + config.entry.event_types.join(", ")));
  const down = (y1, y2, label, attrs = {}) => {
    root.append(svg("line", { x1: x + w / 2, y1, x2: x + w / 2, y2: y2 - 1, stroke: "#6b7280", "stroke-width": 1.5, "marker-end": "url(#arrow)", ...attrs }));
    if (label) root.append(svg("text", { x: x + w / 2 + 6, y: (y1 + y2) / 2 + 4, "font-size": 11, fill: "#374151" }, label));
  };
  down(30, yOf(0));
  const colours = { message: ["#eff6ff", "#2563eb"], branch: ["#fefce8", "#ca8a04"], split: ["#f5f3ff", "#7c3aed"] };
  steps.forEach((step, i) => {
    const [fill, stroke] = colours[step.kind] || colours.message;
    const [waitLine, detailLine] = stepSummary(step);
    const box = svg("g", { class: "flow-step", "data-step": step.id, "data-kind": step.kind });
    box.append(
      svg("rect", { x, y: yOf(i), width: w, height: h, rx: 6, fill, stroke }),
      svg("text", { x: x + 10, y: yOf(i) + 18, "font-size": 13, "font-weight": "bold" }, step.id),
      svg("text", { x: x + w - 10, y: yOf(i) + 18, "font-size": 11, "text-anchor": "end", fill: stroke }, step.kind),
      svg("text", { x: x + 10, y: yOf(i) + 36, "font-size": 11, class: "flow-wait" }, waitLine),
      svg("text", { x: x + 10, y: yOf(i) + 53, "font-size": 11, fill: "#374151" }, detailLine),
    );
    root.append(box);
    // falling through: a message step (sent or skipped; or its wait_for timed out), a branch
    // none of whose rules held; a split always takes one of its paths
    if (step.kind !== "split") {
      const label = step.kind === "branch" ? "else" : step.wait_for ? "timeout" : null;
      down(yOf(i) + h, yOf(i + 1), label);
    }
  });
  const leaving = {}, arriving = {}; // spread the ends of several arrows on one box
  edges.forEach((edge, k) => {
    const laneX = x + w + 24 + k * lane;
    const out = (leaving[edge.from] = (leaving[edge.from] || 0) + 1) - 1;
    const into = (arriving[edge.to] = (arriving[edge.to] || 0) + 1) - 1;
    const y1 = yOf(edge.from) + 12 + (out % 4) * 14;
    const y2 = edge.to >= steps.length ? endY + 13 : yOf(edge.to) + 8 + (into % 6) * 9;
    const group = svg("g", { class: "flow-jump", "data-from": steps[edge.from].id, "data-to": edge.name });
    group.append(
      svg("path", { d: `M${x + w},${y1} H${laneX} V${y2} H${x + w + 1}`, fill: "none", stroke: "#9333ea", "stroke-width": 1.5, "marker-end": "url(#arrow)" }),
      svg("text", { x: laneX + 5, y: y1 + 4, "font-size": 11, fill: "#6b21a8", stroke: "#fff", "stroke-width": 3, "paint-order": "stroke" },
        `${edge.label} → ${edge.name}`),
    );
    root.append(group);
  });
  root.append(svg("rect", { x, y: endY, width: w, height: 26, rx: 13, fill: "#f3f4f6", stroke: "#6b7280" }),
    svg("text", { x: x + 12, y: endY + 17, "font-size": 12 }, "end (sequence completed or exited)"));
  $("flow").replaceChildren(root);
}

// ---------- preview ----------
function parsePanel(id, what) {
  const text = $(id).value.trim();
  if (!text) return { value: undefined };
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    const { line, column } = syntaxPosition(error.message, text);
    return { error: `${what}: JSON syntax error at line ${line}, column ${column}` };
  }
}

async function runPreview() {
  const definition = parseDefinition($("definition").value);
  const user = parsePanel("sample-user", "sample user");
  const timeline = parsePanel("sample-timeline", "timeline");
  const local = [definition.error ? "the definition is not valid JSON" : null, user.error, timeline.error].filter(Boolean);
  if (local.length) {
    $("preview-status").textContent = "Not run:";
    showProblems($("preview-problems"), local.map((message) => ({ path: "", message })));
    return;
  }
  const body = { ...(user.value || {}), config: editable(definition.doc) };
  if (timeline.value !== undefined) body.timeline = timeline.value;
  const url = state.saved ? `${API}/${encodeURIComponent(state.saved.id)}/preview` : `${API}/preview`;
  $("preview-status").textContent = "Running…";
  let answer;
  try {
    answer = await call("POST", url, body);
  } catch (error) {
    failed(error);
    return;
  }
  if (answer.status === 200) {
    $("preview-status").textContent = `${answer.data.trace.length} decisions for ${answer.data.user_id}`;
    showProblems($("preview-problems"), []);
    renderTrace(answer.data);
  } else if (answer.status === 422) {
    $("preview-status").textContent = "Not run: the request is invalid";
    showProblems($("preview-problems"), fieldProblems(answer.data && answer.data.detail));
  } else {
    $("preview-status").textContent = `Not run: ${answer.status} ${detailText(answer.data)}`;
    showProblems($("preview-problems"), []);
  }
}

function since(start, at) {
  const minutes = Math.round((new Date(at) - new Date(start)) / 60000);
  const d = Math.floor(minutes / 1440), hh = Math.floor((minutes % 1440) / 60), mm = minutes % 60;
  return `+${d ? d + "d " : ""}${String(hh).padStart(2, "0")}:${String(mm).padStart(2, "0")}`;
}

function traceDetails(entry) {
  const d = entry.details || {};
  const parts = [];
  if (entry.command) parts.push(`command ${entry.command.command_id.slice(0, 8)}…`);
  for (const key of ["variant", "template", "goto", "until", "path", "weight"]) {
    if (d[key] != null && d[key] !== "") parts.push(`${key} ${typeof d[key] === "object" ? JSON.stringify(d[key]) : d[key]}`);
  }
  if (entry.event_type) parts.push(`event ${entry.event_type}`);
  if (entry.value) parts.push(`value ${entry.value}`);
  return parts.join(" · ");
}

function renderTrace(data) {
  const o = data.outcome;
  const where = o.active ? `still enrolled at ${o.step_id}${o.due_at ? " (due " + since(data.start, o.due_at) + ")" : ""}` : "finished";
  $("preview-outcome").replaceChildren(el("p", { id: "outcome", dataset: { enrolled: String(o.enrolled), converted: String(o.converted), messages: String(o.messages) } },
    o.enrolled ? `Enrolled in the ${o.arm} arm · ${o.messages} message${o.messages === 1 ? "" : "s"} · ${o.converted ? "converted" : "not converted"} · ${where}` : "Not enrolled",
    o.truncated ? " · stopped at the decision bound" : o.horizon_reached ? " · stopped at the horizon" : ""));
  const rows = data.trace.map((entry, i) => el("tr", { dataset: { type: entry.type, step: entry.step_id || "" }, id: "trace-" + i },
    el("td", { class: "when", title: entry.at }, since(data.start, entry.at)),
    el("td", {}, entry.type), el("td", {}, entry.step_id || "–"), el("td", {}, entry.channel || "–"),
    el("td", {}, entry.arm || "–"), el("td", {}, entry.reason_code || "–"), el("td", {}, traceDetails(entry))));
  $("trace").replaceChildren(el("table", { id: "trace-table" },
    el("thead", {}, el("tr", {}, ["after start", "decision", "step", "channel", "arm", "reason", "details"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows)));
}

// ---------- start ----------
const SAMPLE_USER = { user_id: "preview-user-1", profile: { timezone: "Europe/Berlin", attributes: { plan: "free" }, consent: { email: true, push: true } } };

function newSequence() {
  const workspace = new URLSearchParams(location.search).get("workspace") || "default";
  return {
    workspace_id: workspace,
    name: "Welcome series",
    entry: { event_types: ["signed_up"] },
    steps: [
      { id: "welcome", template: "welcome", channels: ["email"] },
      { id: "nudge", template: "nudge", channels: ["email", "push"], wait: "P2D" },
    ],
    exit: { goal: { event_type: "purchased" } },
  };
}

async function start() {
  const match = location.pathname.match(/^\/dashboard\/editor\/([^/]+)\/?$/);
  $("sample-user").value = JSON.stringify(SAMPLE_USER, null, 2);
  if (!match) {
    $("title").textContent = "New sequence";
    $("definition").value = JSON.stringify(newSequence(), null, 2);
    setStatus("A new sequence: it is created when you save.", "");
    document.body.dataset.state = "ready";
    edited();
    return;
  }
  try {
    const answer = await call("GET", `${API}/${encodeURIComponent(decodeURIComponent(match[1]))}`);
    if (answer.status !== 200) {
      setStatus(`Could not load: ${answer.status} ${detailText(answer.data)}`, "error");
      document.body.dataset.state = "error";
      return;
    }
    loaded(answer.data);
    setStatus(`Editing version ${answer.data.version}; saving checks that nobody saved since.`, "");
    document.body.dataset.state = "ready";
  } catch (error) {
    failed(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("definition").addEventListener("input", edited);
  $("save").addEventListener("click", save);
  $("reload").addEventListener("click", reload);
  $("run-preview").addEventListener("click", runPreview);
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("api-key").value.trim());
    $("login-form").hidden = true;
    if (state.saved === null && !location.pathname.match(/^\/dashboard\/editor\/[^/]+/)) {
      document.body.dataset.state = "ready";
      edited();
    } else {
      start();
    }
  });
  start();
});
