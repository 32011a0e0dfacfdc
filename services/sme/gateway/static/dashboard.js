// SME dashboard: reads the gateway's JSON routes and draws them with Chart.js (served from
// /static/vendor, installed from npm at setup). Data is only ever written as text, never as
// HTML. Every figure shown carries its raw value in a data-value attribute.
"use strict";

const ARM_COLOURS = { adaptive: "#2563eb", baseline: "#f59e0b", holdout: "#6b7280" };
const PALETTE = ["#2563eb", "#16a34a", "#f59e0b", "#9333ea", "#dc2626", "#0891b2", "#6b7280"];
const charts = [];

// ---------- formatting ----------
const fmt = {
  int: (v) => (v == null ? "–" : Math.round(v).toLocaleString("en-US")),
  money: (v) => (v == null ? "–" : v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })),
  pct: (v) => (v == null ? "–" : (v * 100).toFixed(1) + "%"),
  pct2: (v) => (v == null ? "–" : (v * 100).toFixed(2) + "%"),
  signedPct: (v) => (v == null ? "–" : (v >= 0 ? "+" : "") + (v * 100).toFixed(1) + "%"),
  ratio: (v) => (v == null ? "–" : (v >= 0 ? "+" : "") + (v * 100).toFixed(0) + "%"),
};

// ---------- DOM helpers ----------
function kpi(id, label, value, text, note, tone) {
  return el(
    "div",
    { class: "kpi" + (tone ? " " + tone : ""), id: "kpi-" + id, dataset: { value: value == null ? "" : String(value) } },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, text),
    note ? el("div", { class: "note" }, note) : null,
  );
}

// rows: { id, data, cls, cells: [[value, class, ...extra nodes]] }; data values of null are left out.
function table(id, headers, rows, empty = "nothing in this window") {
  const dataset = (data) => Object.fromEntries(Object.entries(data || {}).filter(([, v]) => v != null));
  return el(
    "table",
    { id },
    el("thead", {}, el("tr", {}, headers.map(([h, cls]) => el("th", { class: cls }, h)))),
    el(
      "tbody",
      {},
      rows.length
        ? rows.map((r) => el("tr", { id: r.id, class: r.cls, dataset: dataset(r.data) },
          r.cells.map(([v, cls, ...extra]) => el("td", { class: cls }, v, extra.length ? " " : null, ...extra))))
        : el("tr", {}, el("td", { colspan: String(headers.length), class: "muted", id: id + "-empty" }, empty)),
    ),
  );
}

function panel(title, ...content) {
  return el("section", { class: "panel" }, el("h2", {}, title), ...content);
}

function chartBox(id, points) {
  return el("div", { class: "chart-box" }, el("canvas", { id, dataset: { points: JSON.stringify(points), rendered: "false" } }));
}

function setStatus(text, cls) {
  const status = document.getElementById("status");
  if (status) {
    status.textContent = text;
    status.className = cls || "";
  }
}

// ---------- API access ----------
async function getJSON(url) {
  const key = apiKey();
  const response = await fetch(url, { headers: key ? { Authorization: "Bearer " + key } : {} });
  if (response.status === 401) throw new AuthError("an API key is needed");
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = JSON.stringify((await response.json()).detail);
    } catch (_) { /* not JSON */ }
    throw new Error(`${response.status} ${detail}`);
  }
  return response.json();
}

function windowParams() {
  const days = Number(document.getElementById("window").value);
  const now = new Date();
  const end = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
  const start = new Date(end.getTime() - days * 86400000);
  const iso = (d) => d.toISOString().slice(0, 10);
  return new URLSearchParams({ from: iso(start), to: iso(end) });
}

function showLogin(message) {
  const main = document.getElementById("main");
  main.replaceChildren(document.getElementById("login").content.cloneNode(true));
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_STORE, document.getElementById("api-key").value.trim());
    load();
  });
  document.body.dataset.state = "login";
}

// ---------- charts ----------
function draw(id, config) {
  const canvas = document.getElementById(id);
  if (!canvas || typeof Chart === "undefined") return;
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  charts.push(new Chart(canvas, config));
  canvas.dataset.rendered = "true";
}

// Draws each bar's 95% interval as a whisker: the arm comparison's "CI bars".
const intervalWhiskers = {
  id: "intervalWhiskers",
  afterDatasetsDraw(chart, _args, options) {
    const intervals = options.intervals || [];
    const { ctx, scales } = chart;
    const meta = chart.getDatasetMeta(0);
    ctx.save();
    ctx.strokeStyle = "#111827";
    ctx.lineWidth = 1.5;
    meta.data.forEach((bar, i) => {
      const ci = intervals[i];
      if (!ci) return;
      const top = scales.y.getPixelForValue(ci[1] * 100);
      const bottom = scales.y.getPixelForValue(ci[0] * 100);
      ctx.beginPath();
      ctx.moveTo(bar.x, top); ctx.lineTo(bar.x, bottom);
      ctx.moveTo(bar.x - 8, top); ctx.lineTo(bar.x + 8, top);
      ctx.moveTo(bar.x - 8, bottom); ctx.lineTo(bar.x + 8, bottom);
      ctx.stroke();
    });
    ctx.restore();
  },
};

function days(from, to) {
  const out = [];
  for (let d = new Date(from + "T00:00:00Z"); d < new Date(to + "T00:00:00Z"); d = new Date(d.getTime() + 86400000)) {
    out.push(d.toISOString().slice(0, 10));
  }
  return out;
}

// ---------- the sequence page ----------
function renderSequence(data) {
  const m = data.metrics;
  const arms = m.arms;
  const total = (key) => Object.values(arms).reduce((s, a) => s + (a[key] || 0), 0);
  const enrolled = total("enrolled");
  const conversions = total("conversions");
  const messaged = m.incremental.messaged;
  const liftB = m.lift.vs_baseline;
  const liftH = m.lift.vs_holdout;
  const errorRate = m.reliability.error_rate;
  const ciNote = (l) => (l ? `95% CI ${fmt.signedPct(l.ci95_low)} .. ${fmt.signedPct(l.ci95_high)}` : "needs both arms");
  const cfg = data.config;

  const header = el(
    "div",
    {},
    el("h1", { id: "sequence-name" }, cfg.name, " ", el("span", { class: "badge " + cfg.status, id: "sequence-status" }, cfg.status)),
    el("p", { class: "sub" }, `${cfg.id} · v${cfg.version} · workspace ${cfg.workspace_id} · ${m.from} to ${m.to} (UTC, end exclusive) · `,
      el("a", { href: "/dashboard/editor/" + encodeURIComponent(cfg.id), id: "edit-sequence" }, "Edit")),
    cfg.status_reason ? el("p", { class: "notice" }, "Paused by automation: " + JSON.stringify(cfg.status_reason)) : null,
    cfg.status === "DRAINING" ? el("p", { class: "notice", id: "draining" }, "Draining: no new entries; enrolled users finish the sequence.") : null,
  );

  const tiles = el(
    "div",
    { class: "kpis", id: "kpis" },
    kpi("enrolled", "Enrolled", enrolled, fmt.int(enrolled)),
    kpi("sent", "Messages sent", total("sent"), fmt.int(total("sent"))),
    kpi("conversions", "Conversions", conversions, fmt.int(conversions)),
    kpi("conversion_rate", "Conversion rate", enrolled ? conversions / enrolled : null, fmt.pct(enrolled ? conversions / enrolled : null)),
    kpi("revenue", "Revenue", total("revenue"), fmt.money(total("revenue"))),
    kpi("cost", "Messaging cost", total("cost"), fmt.money(total("cost"))),
    kpi("lift_vs_baseline", "Lift vs baseline", liftB ? liftB.estimate : null, fmt.signedPct(liftB && liftB.estimate), ciNote(liftB),
      liftB ? (liftB.ci95_low > 0 ? "good" : liftB.ci95_high < 0 ? "bad" : "") : ""),
    kpi("lift_vs_holdout", "Lift vs holdout", liftH ? liftH.estimate : null, fmt.signedPct(liftH && liftH.estimate), ciNote(liftH),
      liftH ? (liftH.ci95_low > 0 ? "good" : liftH.ci95_high < 0 ? "bad" : "") : ""),
    kpi("incremental_conversions", "Incremental conversions", messaged ? messaged.conversions : null,
      messaged ? fmt.int(messaged.conversions) : "–", "over the holdout"),
    kpi("incremental_revenue", "Incremental revenue", messaged ? messaged.revenue : null,
      messaged ? fmt.money(messaged.revenue) : "–", "over the holdout"),
    kpi("roi", "ROI", messaged ? messaged.roi : null, fmt.ratio(messaged && messaged.roi), "(incr. revenue − cost) / cost"),
    kpi("error_rate", "Event error rate", errorRate, fmt.pct2(errorRate),
      `${fmt.int(m.reliability.rejected)} dead-lettered of ${fmt.int(m.reliability.received + m.reliability.duplicates + m.reliability.rejected)} (workspace)`,
      errorRate == null ? "" : errorRate >= 0.01 ? "bad" : "good"),
  );

  // daily trend: conversions per arm, and sends
  const dayList = days(m.from, m.to);
  const perArm = {};
  for (const row of m.series) (perArm[row.arm] ||= {})[row.period] = row;
  const trendSets = Object.keys(perArm).sort().map((arm) => ({
    label: arm + " conversions",
    data: dayList.map((d) => (perArm[arm][d] ? perArm[arm][d].conversions : 0)),
    borderColor: ARM_COLOURS[arm], backgroundColor: ARM_COLOURS[arm], tension: 0.2,
  }));
  const sendsByDay = dayList.map((d) => Object.values(perArm).reduce((s, a) => s + (a[d] ? a[d].sent : 0), 0));
  trendSets.push({ label: "messages sent", data: sendsByDay, borderColor: "#94a3b8", borderDash: [4, 4], yAxisID: "sent", pointRadius: 0 });

  // arm comparison
  const armNames = Object.keys(arms).sort();
  const armRates = armNames.map((a) => arms[a].conversion_rate);
  const armIntervals = armNames.map((a) => arms[a].conversion_rate_ci95);
  const liftRows = [["vs baseline", liftB], ["vs holdout", liftH]].filter(([, l]) => l);

  // channel mix and suppressions
  const channelNames = Object.keys(m.channels).filter((c) => m.channels[c].sent > 0).sort();
  const channelSent = channelNames.map((c) => m.channels[c].sent);
  const reasons = {};
  for (const byReason of Object.values(m.suppressed_by_reason)) {
    for (const [reason, n] of Object.entries(byReason)) reasons[reason] = (reasons[reason] || 0) + n;
  }
  const reasonNames = Object.keys(reasons).sort((a, b) => reasons[b] - reasons[a]);
  const errorDays = dayList.map((d) => {
    const row = m.reliability.series.find((r) => r.period === d);
    return row && row.error_rate != null ? +(row.error_rate * 100).toFixed(3) : null;
  });

  const armTable = table(
    "arms-table",
    [["arm"], ["enrolled", "num"], ["sent", "num"], ["conversions", "num"], ["conversion rate", "num"], ["95% CI", "num"],
      ["revenue", "num"], ["cost", "num"], ["cost / conversion", "num"], ["click rate", "num"], ["unsubscribe rate", "num"],
      ["net value", "num"], ["net value / enrolled", "num"]],
    armNames.map((a) => {
      const r = arms[a];
      const ci = r.conversion_rate_ci95;
      return {
        data: { arm: a },
        cells: [[a], [fmt.int(r.enrolled), "num"], [fmt.int(r.sent), "num"], [fmt.int(r.conversions), "num"],
          [fmt.pct(r.conversion_rate), "num"], [ci ? `${fmt.pct(ci[0])} .. ${fmt.pct(ci[1])}` : "–", "num"],
          [fmt.money(r.revenue), "num"], [fmt.money(r.cost), "num"], [fmt.money(r.cost_per_conversion), "num"],
          [fmt.pct(r.click_rate), "num"], [fmt.pct(r.unsubscribe_rate), "num"],
          [fmt.money(r.net_value), "num"], [fmt.money(r.net_value_per_enrolled), "num"]],
      };
    }),
  );
  const channelTable = table(
    "channels-table",
    [["channel"], ["sent", "num"], ["delivered", "num"], ["opened", "num"], ["clicked", "num"], ["conversions", "num"], ["cost", "num"]],
    Object.keys(m.channels).sort().map((c) => {
      const r = m.channels[c];
      return {
        data: { channel: c },
        cells: [[c], [fmt.int(r.sent), "num"], [fmt.int(r.delivered), "num"], [fmt.int(r.opened), "num"],
          [fmt.int(r.clicked), "num"], [fmt.int(r.conversions), "num"], [fmt.money(r.cost), "num"]],
      };
    }),
  );
  const decisions = table(
    "decisions-table",
    [["when (UTC)"], ["decision"], ["user"], ["step"], ["arm"], ["channel"], ["reason"]],
    data.recent_decisions.map((a) => ({
      data: { activity: a.activity_id },
      cells: [[a.occurred_at.replace("T", " ").slice(0, 19)], [a.type], [a.user_id], [a.step_id || "–"], [a.arm || "–"],
        [a.channel || "–"], [a.reason_code || "–"]],
    })),
  );
  const variantsTable = variantTable(m.variants || {});
  const stepsTable = stepTable(m.steps || []);
  const base = `${API}/${encodeURIComponent(cfg.id)}/report?${windowParams()}`;
  const exports = el("p", { class: "exports" }, "Export: ",
    ["csv", "json", "parquet"].map((f) => el("a", { href: base + "&format=" + f, "data-format": f }, f.toUpperCase())));

  document.getElementById("main").replaceChildren(
    header,
    tiles,
    el("div", { class: "grid" },
      panel("Daily trend", chartBox("chart-trend", { days: dayList, sets: trendSets.map((s) => ({ label: s.label, data: s.data })) })),
      panel("Conversion rate by arm (95% CI)", chartBox("chart-arms", { arms: armNames, rates: armRates, ci95: armIntervals })),
      panel("Lift with 95% CI", chartBox("chart-lift", { comparisons: liftRows.map(([n, l]) => [n, l.ci95_low, l.estimate, l.ci95_high]) })),
      panel("Channel mix (messages sent)", chartBox("chart-channels", { channels: channelNames, sent: channelSent })),
      panel("Suppressions by reason", chartBox("chart-reasons", { reasons: reasonNames, counts: reasonNames.map((r) => reasons[r]) })),
      panel("Event error rate (workspace, %)", chartBox("chart-errors", { days: dayList, error_pct: errorDays })),
    ),
    panel("Arms", armTable),
    panel("Steps", stepFlow(m.steps || []), stepsTable),
    panel("Variants", variantsTable),
    panel("Channels", channelTable),
    panel("Recent decisions", decisions),
    exports,
    el("p", { class: "muted", id: "took" }, `payload ${data.took_ms} ms`),
  );
  for (const link of exports.querySelectorAll("a")) link.addEventListener("click", download);

  draw("chart-trend", {
    type: "line",
    data: { labels: dayList.map((d) => d.slice(5)), datasets: trendSets },
    options: { scales: { y: { beginAtZero: true, title: { display: true, text: "conversions" } },
      sent: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "sent" } } } },
  });
  draw("chart-arms", {
    type: "bar",
    data: { labels: armNames, datasets: [{ label: "conversion rate %", data: armRates.map((r) => (r == null ? null : r * 100)),
      backgroundColor: armNames.map((a) => ARM_COLOURS[a] || "#999") }] },
    options: { plugins: { legend: { display: false }, intervalWhiskers: { intervals: armIntervals } },
      scales: { y: { beginAtZero: true, suggestedMax: Math.max(0, ...armIntervals.map((c) => (c ? c[1] * 100 : 0))) } } },
    plugins: [intervalWhiskers],
  });
  draw("chart-lift", {
    type: "bar",
    data: { labels: liftRows.map(([n]) => n), datasets: [
      { label: "95% CI (%)", data: liftRows.map(([, l]) => [l.ci95_low * 100, l.ci95_high * 100]), backgroundColor: "rgba(37,99,235,.25)" },
      { type: "scatter", label: "estimate (%)", data: liftRows.map(([n, l]) => ({ x: n, y: l.estimate * 100 })), backgroundColor: "#1e3a8a", pointRadius: 5 },
    ] },
    options: { indexAxis: "x", scales: { y: { title: { display: true, text: "relative lift %" } } } },
  });
  draw("chart-channels", {
    type: "doughnut",
    data: { labels: channelNames, datasets: [{ data: channelSent, backgroundColor: PALETTE }] },
  });
  draw("chart-reasons", {
    type: "bar",
    data: { labels: reasonNames, datasets: [{ label: "suppressed", data: reasonNames.map((r) => reasons[r]), backgroundColor: "#f59e0b" }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } } },
  });
  draw("chart-errors", {
    type: "line",
    data: { labels: dayList.map((d) => d.slice(5)), datasets: [
      { label: "error rate %", data: errorDays, borderColor: "#dc2626", spanGaps: true },
      { label: "1% target", data: dayList.map(() => 1), borderColor: "#9ca3af", borderDash: [6, 4], pointRadius: 0 },
    ] },
    options: { scales: { y: { beginAtZero: true } } },
  });
}

// Per-step funnel: one row per step in the configuration's order (steps no longer configured
// last, marked); suppressed and exited are totals, their reasons in the cell's title and in a
// small list under it. Everything is text nodes and attributes: no HTML from data.
function reasonCell(total, byReason) {
  const names = Object.keys(byReason || {});
  const title = names.map((r) => `${r}: ${byReason[r]}`).join(", ");
  return [el("span", { class: "reason-total", title: title || null }, fmt.int(total)), "num",
    names.length ? el("ul", { class: "reasons muted" }, names.map((r) => el("li", { dataset: { reason: r } }, `${r} ${fmt.int(byReason[r])}`))) : null];
}

function stepTable(steps) {
  return table(
    "steps-table",
    [["step"], ["entered", "num"], ["sent", "num"], ["suppressed", "num"], ["delivered", "num"], ["opened", "num"],
      ["clicked", "num"], ["converted", "num"], ["exited", "num"]],
    steps.map((r) => ({
      id: `step-${r.step_id}`,
      data: { step: r.step_id, entered: String(r.entered), sent: String(r.sent), suppressed: String(r.suppressed),
        converted: String(r.converted), exited: String(r.exited), removed: r.in_config ? null : "true" },
      cells: [[r.step_id, null, r.in_config ? null : el("span", { class: "badge" }, "removed")],
        [fmt.int(r.entered), "num"], [fmt.int(r.sent), "num"], reasonCell(r.suppressed, r.suppressed_by_reason),
        [fmt.int(r.delivered), "num"], [fmt.int(r.opened), "num"], [fmt.int(r.clicked), "num"],
        [fmt.int(r.converted), "num"], reasonCell(r.exited, r.exited_by_reason)],
    })),
    "no step figures in this window",
  );
}

// The sequence as a flow: a box per step (entered, sent, converted), arrows in step order.
function stepFlow(steps) {
  if (!steps.length) return null;
  const w = 150, h = 64, gap = 36;
  const root = svg("svg", { id: "steps-flow", class: "flow", role: "img", "aria-label": "steps as a flow",
    viewBox: `0 0 ${steps.length * (w + gap) - gap + 2} ${h + 2}`, width: String(steps.length * (w + gap) - gap + 2), height: String(h + 2) });
  steps.forEach((r, i) => {
    const x = 1 + i * (w + gap);
    const box = svg("g", { class: "flow-step", "data-step": r.step_id });
    box.append(
      svg("rect", { x, y: 1, width: w, height: h, rx: 6, fill: r.in_config ? "#eff6ff" : "#f3f4f6", stroke: "#2563eb" }),
      svg("text", { x: x + 8, y: 18, "font-weight": "bold", "font-size": 12 }, r.step_id),
      svg("text", { x: x + 8, y: 36, "font-size": 11 }, `entered ${fmt.int(r.entered)} · sent ${fmt.int(r.sent)}`),
      svg("text", { x: x + 8, y: 54, "font-size": 11 }, `converted ${fmt.int(r.converted)}`),
    );
    root.append(box);
    if (i < steps.length - 1) {
      root.append(svg("line", { x1: x + w, y1: 1 + h / 2, x2: x + w + gap - 6, y2: 1 + h / 2, stroke: "#6b7280", "stroke-width": 2 }),
        svg("polygon", { points: `${x + w + gap},${1 + h / 2} ${x + w + gap - 8},${h / 2 - 4} ${x + w + gap - 8},${h / 2 + 6}`, fill: "#6b7280" }));
    }
  });
  return el("div", { class: "flow-box" }, root);
}

// One row per (step, variant) over all arms; the step's leader (highest P(best)) is bold,
// and badged "leader" once P(best) reaches 95%.
const LEADER_AT = 0.95;

function variantTable(steps) {
  const rows = [];
  for (const step of Object.keys(steps).sort()) {
    const figures = (steps[step] && steps[step].variants) || {};
    const names = Object.keys(figures).sort();
    const best = names.reduce((top, v) => {
      const p = figures[v].prob_best;
      return p != null && (top == null || p > figures[top].prob_best) ? v : top;
    }, null);
    for (const v of names) {
      const r = figures[v];
      const ci = r.conversion_rate_ci95;
      const leads = v === best && names.length > 1;
      const confident = leads && r.prob_best >= LEADER_AT;
      rows.push({
        id: `variant-${step}-${v}`,
        data: { step, variant: v, sent: String(r.sent), conversions: String(r.conversions),
          probBest: r.prob_best == null ? "" : String(r.prob_best), leader: leads ? "true" : null },
        cls: leads ? "leading" : null,
        cells: [[step], [v, null, confident ? el("span", { class: "badge leader" }, "leader") : null],
          [fmt.int(r.sent), "num"], [fmt.int(r.conversions), "num"],
          [fmt.pct(r.conversion_rate), "num"], [ci ? `${fmt.pct(ci[0])} .. ${fmt.pct(ci[1])}` : "–", "num"],
          [fmt.pct(r.prob_best), "num"]],
      });
    }
  }
  return table(
    "variants-table",
    [["step"], ["variant"], ["sent", "num"], ["conversions", "num"], ["conversion rate", "num"], ["95% CI", "num"],
      ["P(best)", "num"]],
    rows,
    "no variant figures in this window",
  );
}

async function download(event) {
  event.preventDefault();
  const link = event.currentTarget;
  const key = apiKey();
  const response = await fetch(link.href, { headers: key ? { Authorization: "Bearer " + key } : {} });
  if (!response.ok) {
    setStatus(`export failed: ${response.status}`, "error");
    return;
  }
  const disposition = response.headers.get("content-disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || "report." + link.dataset.format;
  const url = URL.createObjectURL(await response.blob());
  const anchor = el("a", { href: url, download: name });
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  URL.revokeObjectURL(url);
}

// ---------- the overview page ----------
// The program against each workspace's global control group; figures only when both groups
// are large enough (the API's `status`), else it says why.
const PROGRAM_STATUS = {
  off: "global control off",
  too_small: "control group too small",
};
function programTable(program) {
  const count = (v) => v.toFixed(1);
  const interval = (i, f) => (i ? `${f(i.estimate)} (95% CI ${f(i.ci95_low)} .. ${f(i.ci95_high)})` : null);
  const rows = (program || []).map((p) => {
    const ok = p.status === "ok";
    const note = PROGRAM_STATUS[p.status] || "";
    const conv = p.incremental_conversions;
    const rev = p.incremental_revenue;
    return {
      id: "program-" + p.workspace_id,
      data: {
        workspace: p.workspace_id, status: p.status,
        incrementalConversions: conv ? String(conv.estimate) : null,
        incrementalRevenue: rev ? String(rev.estimate) : null,
      },
      cells: [
        [p.workspace_id], [fmt.pct(p.pct / 100), "num"],
        [fmt.int(p.treated.users), "num"], [fmt.int(p.control.users), "num"],
        [fmt.pct(p.treated.conversion_rate), "num"], [fmt.pct(p.control.conversion_rate), "num"],
        [fmt.money(p.treated.revenue_per_user), "num"], [fmt.money(p.control.revenue_per_user), "num"],
        [ok ? interval(conv, count) : note, ok ? "num" : "muted"],
        [ok ? interval(rev, fmt.money) : note, ok ? "num" : "muted"],
      ],
    };
  });
  return table("program-table",
    [["workspace"], ["control share", "num"], ["treated users", "num"], ["control users", "num"],
      ["treated conv. rate", "num"], ["control conv. rate", "num"], ["treated revenue / user", "num"],
      ["control revenue / user", "num"], ["incremental conversions", "num"], ["incremental revenue", "num"]],
    rows, "no workspace in view");
}

function renderOverview(data) {
  const items = data.items;
  const sum = (key) => items.reduce((s, i) => s + (i.figures ? i.figures[key] : 0), 0);
  const rows = items.map((i) => {
    const f = i.figures || {};
    const lift = f.lift_vs_baseline;
    return {
      data: { config: i.id },
      cells: [
        [el("a", { href: "/dashboard/" + encodeURIComponent(i.id) }, i.name)],
        [i.workspace_id], [el("span", { class: "badge " + i.status }, i.status)],
        [fmt.int(f.enrolled || 0), "num"], [fmt.int(f.sent || 0), "num"], [fmt.int(f.conversions || 0), "num"],
        [fmt.pct(f.conversion_rate), "num"], [fmt.money(f.revenue || 0), "num"], [fmt.money(f.cost || 0), "num"],
        [lift ? fmt.signedPct(lift.estimate) : "–", "num"],
      ],
    };
  });
  document.getElementById("main").replaceChildren(
    el("h1", {}, "Sequences"),
    el("p", { class: "sub" }, `${items.length} sequences · ${data.from} to ${data.to} (UTC, end exclusive) · `,
      el("a", { href: "/dashboard/editor", id: "new-sequence" }, "New sequence")),
    el("div", { class: "kpis", id: "kpis" },
      kpi("sequences", "Sequences", items.length, fmt.int(items.length)),
      kpi("active", "Active", items.filter((i) => i.status === "ACTIVE").length, fmt.int(items.filter((i) => i.status === "ACTIVE").length)),
      kpi("enrolled", "Enrolled", sum("enrolled"), fmt.int(sum("enrolled"))),
      kpi("sent", "Messages sent", sum("sent"), fmt.int(sum("sent"))),
      kpi("conversions", "Conversions", sum("conversions"), fmt.int(sum("conversions"))),
      kpi("revenue", "Revenue", sum("revenue"), fmt.money(sum("revenue"))),
      kpi("cost", "Messaging cost", sum("cost"), fmt.money(sum("cost"))),
    ),
    panel("Program vs global control", programTable(data.program)),
    panel("Sequences", table("sequences-table",
      [["name"], ["workspace"], ["status"], ["enrolled", "num"], ["sent", "num"], ["conversions", "num"],
        ["conversion rate", "num"], ["revenue", "num"], ["cost", "num"], ["lift vs baseline", "num"]], rows)),
    panel("Conversions by sequence", chartBox("chart-sequences", { names: items.map((i) => i.name), conversions: items.map((i) => (i.figures ? i.figures.conversions : 0)) })),
    el("p", { class: "muted", id: "took" }, `payload ${data.took_ms} ms`),
  );
  draw("chart-sequences", {
    type: "bar",
    data: { labels: items.map((i) => i.name), datasets: [{ label: "conversions", data: items.map((i) => (i.figures ? i.figures.conversions : 0)), backgroundColor: "#2563eb" }] },
    options: { plugins: { legend: { display: false } } },
  });
}

// ---------- routing ----------
async function load() {
  document.body.dataset.state = "loading";
  while (charts.length) charts.pop().destroy();
  const match = location.pathname.match(/^\/dashboard\/([^/]+)\/?$/);
  try {
    if (match) {
      const id = decodeURIComponent(match[1]);
      renderSequence(await getJSON(`${API}/${encodeURIComponent(id)}/dashboard?${windowParams()}`));
    } else {
      renderOverview(await getJSON(`/api/v1/dashboard/overview?${windowParams()}`));
    }
    if (typeof Chart === "undefined") {
      document.getElementById("main").prepend(el("p", { class: "notice", id: "no-charts" },
        "Charts are off: the charting library is not installed on this gateway (run `make install`). Figures are complete below."));
    }
    document.body.dataset.state = "ready";
  } catch (error) {
    if (error instanceof AuthError) {
      const hadKey = sessionStorage.getItem(KEY_STORE) !== null;
      sessionStorage.removeItem(KEY_STORE);
      showLogin(hadKey ? "That key was not accepted." : "");
      return;
    }
    document.getElementById("main").replaceChildren(el("p", { id: "status", class: "error" }, "Could not load: " + error.message));
    document.body.dataset.state = "error";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("window").addEventListener("change", load);
  document.getElementById("refresh").addEventListener("click", load);
  load();
});
