// The dashboard page: polls /api/snapshot once a second and draws it with uPlot.
"use strict";

const TIERS = ["redis", "nvme", "s3", "glacier", "hdd"];
const CODECS = ["none", "lz4", "zstd"];
const POLL_MS = 1000;
const RESULTS_EVERY_MS = 10000;

const $ = (id) => document.getElementById(id);
const fmt = (v, digits = 0) => (v === null || v === undefined || !isFinite(v)) ? "–" : Number(v).toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
// Decision times are Unix seconds in a deployment and in a replay (the gateways' clock).
const isUnix = (t) => t > 1e8;
const clock = (t) => isUnix(t) ? new Date(t * 1000).toISOString().slice(11, 19) : fmt(t, 1) + " s";
const action = (a) => `${a.executors} × ${a.memory_gb} GB, ${a.tier}, ${a.compression}` + (a.prewarm ? `, ${a.prewarm} warm` : "");

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

const charts = {};

function chartWidth(id) {
  return Math.max(400, $(id).clientWidth || 560);
}

function makeCharts(timeIsUnix) {
  const x = { time: timeIsUnix };
  const xAxis = { label: timeIsUnix ? "" : "trace time (s)" };
  const stepped = uPlot.paths.stepped({ align: 1 });
  const categorical = (names) => ({
    splits: () => names.map((_, i) => i),
    values: (u, splits) => splits.map((i) => names[i] ?? ""),
  });
  charts.load = new uPlot({
    width: chartWidth("chart-load"), height: 260, scales: { x, rate: {}, exec: {}, burst: { range: [0, 1] } },
    series: [
      {},
      { label: "load", scale: "rate", stroke: "#1f77b4", width: 1.5, value: (u, v) => fmt(v) + " ev/s" },
      { label: "predicted", scale: "rate", stroke: "#9467bd", dash: [5, 4], value: (u, v) => fmt(v) + " ev/s" },
      { label: "executors requested", scale: "exec", stroke: "#d62728", width: 2, paths: stepped },
      { label: "running", scale: "exec", stroke: "#2ca02c", width: 1.5, paths: stepped },
      { label: "live (Spark)", scale: "exec", stroke: "#8c564b", dash: [2, 3], paths: stepped, spanGaps: false },
      { label: "burst signal", scale: "burst", stroke: "rgba(217,72,15,0.25)", fill: "rgba(217,72,15,0.12)", paths: stepped, value: (u, v) => v ? "up" : "down" },
    ],
    axes: [xAxis, { scale: "rate", label: "events/s", size: 70 }, { scale: "exec", side: 1, label: "executors", grid: { show: false } }],
  }, null, $("chart-load"));
  charts.settings = new uPlot({
    width: chartWidth("chart-settings"), height: 260,
    scales: { x, mem: {}, tier: { range: [-0.5, TIERS.length - 0.5] }, codec: { range: [-0.5, CODECS.length - 0.5] } },
    series: [
      {},
      { label: "memory / executor", scale: "mem", stroke: "#1f77b4", width: 2, paths: stepped, value: (u, v) => fmt(v) + " GB" },
      { label: "shuffle tier", scale: "tier", stroke: "#ff7f0e", width: 2, paths: stepped, value: (u, v) => TIERS[v] ?? "–" },
      { label: "codec", scale: "codec", stroke: "#17becf", width: 2, dash: [6, 3], paths: stepped, value: (u, v) => CODECS[v] ?? "–" },
    ],
    axes: [xAxis, { scale: "mem", label: "GB" }, { scale: "tier", side: 1, grid: { show: false }, ...categorical(TIERS) }, { scale: "codec", side: 1, grid: { show: false }, ...categorical(CODECS) }],
  }, null, $("chart-settings"));
  charts.latency = new uPlot({
    width: chartWidth("chart-latency"), height: 260, scales: { x, ms: { distr: 3 } },
    series: [
      {},
      { label: "latency", scale: "ms", stroke: "#d62728", width: 1.5, value: (u, v) => fmt(v) + " ms" },
      { label: "SLA", scale: "ms", stroke: "#444", dash: [8, 4], value: (u, v) => fmt(v) + " ms" },
    ],
    axes: [xAxis, { scale: "ms", label: "ms (log)", size: 70 }],
  }, null, $("chart-latency"));
  charts.weights = new uPlot({
    width: chartWidth("chart-weights"), height: 260, scales: { x, w: { range: [0, 1] }, usd: {} },
    series: [
      {},
      { label: "α (cost)", scale: "w", stroke: "#2ca02c", width: 2, paths: stepped, value: (u, v) => fmt(v, 2) },
      { label: "β (latency)", scale: "w", stroke: "#d62728", width: 2, paths: stepped, value: (u, v) => fmt(v, 2) },
      { label: "budget left", scale: "usd", stroke: "#7f7f7f", width: 1.5, value: (u, v) => "$" + fmt(v, 2) },
    ],
    axes: [xAxis, { scale: "w", label: "weight" }, { scale: "usd", side: 1, label: "USD", grid: { show: false } }],
  }, null, $("chart-weights"));
}

// The budget reading in force at each decision time (readings are sampled apart from decisions).
function budgetAt(times, spend) {
  const out = [];
  let j = -1;
  for (const t of times) {
    while (j + 1 < spend.length && spend[j + 1].time_s <= t) j++;
    out.push(j >= 0 ? spend[j].budget_remaining : null);
  }
  return out;
}

function drawCharts(s) {
  const t = s.series.time_s;
  if (t.length === 0) return;
  if (!charts.load) makeCharts(isUnix(t[0]));
  charts.load.setData([t, s.series.input_rate, s.series.predicted_load, s.series.requested, s.series.running, s.series.live, s.series.burst]);
  charts.settings.setData([t, s.series.memory_gb, s.series.tier.map((n) => TIERS.indexOf(n)), s.series.codec.map((n) => CODECS.indexOf(n))]);
  charts.latency.setData([t, s.series.latency_ms.map((v) => v > 0 ? v : null), s.series.sla_ms]);
  charts.weights.setData([t, s.series.alpha, s.series.beta, budgetAt(t, s.spend)]);
}

function drawCards(s) {
  const d = s.decisions[0];
  if (d) {
    const ex = d.executors;
    $("now-executors").textContent = `${d.applied.executors} requested, ${d.inputs.running_executors} running` + (ex && ex.live != null ? `, ${ex.live} live in Spark` : "");
    $("now-settings").textContent = action(d.applied);
  }
  $("now-sla").textContent = `${s.sla.over_sla} of ${s.sla.decisions} decisions (${fmt(s.sla.share * 100, 1)} %)`;
  $("now-weights").textContent = s.weights ? `α ${fmt(s.weights.alpha, 2)}, β ${fmt(s.weights.beta, 2)} (${s.weights.scenario})` : "–";
  const last = s.spend[s.spend.length - 1];
  $("now-budget").textContent = last ? `$${fmt(last.budget_remaining, 2)} left of $${fmt(last.budget_usd, 2)}` : "–";
  $("now-waiting").textContent = s.waiting.length ? s.waiting.map((w) => `${w.setting} ${w.value} (${w.applies.replace(/_/g, " ")})`).join("; ") : "nothing";
}

function drawFleet(f) {
  const body = $("fleet").tBodies[0];
  body.replaceChildren();
  if (!f) {
    $("fleet-summary").textContent = "(no burst state stored yet)";
    return;
  }
  $("fleet-summary").textContent = `— ${f.edges_bursting} of ${f.edges.length} gateways bursting; cluster burst ${f.burst ? "up" : "down"} since ${clock(f.since_s)}; load ${fmt(f.total_rate)} events/s, predicted ${fmt(f.predicted_load)}, peak ${fmt(f.predicted_peak)}`;
  for (const e of f.edges) {
    const row = body.insertRow();
    if (e.burst) row.className = "burst";
    cell(row, e.edge_id);
    cell(row, fmt(e.rate, 1), "num");
    cell(row, fmt(e.predicted_load, 1), "num");
    cell(row, e.burst ? "yes" : "no");
    cell(row, clock(e.last_ts));
  }
}

function drawLog(decisions) {
  const body = $("decisions").tBodies[0];
  body.replaceChildren();
  for (const d of decisions) {
    const row = body.insertRow();
    if (d.inputs.burst_signal) row.className = "burst";
    cell(row, clock(d.time_s));
    cell(row, d.trigger);
    cell(row, fmt(d.inputs.input_rate), "num");
    cell(row, fmt(d.inputs.backlog_events), "num");
    cell(row, fmt(d.inputs.latency_ms), "num");
    cell(row, action(d.proposed));
    cell(row, action(d.applied));
    cell(row, d.guardrail_changes.map((g) => `${g.rule.replace(/_/g, " ")}: ${g.field} ${g.proposed}→${g.applied}`).join("; ") || "–");
    cell(row, d.reason + (d.fallback ? ` (reference rule: ${d.fallback})` : ""));
    cell(row, d.model_version.slice(0, 16)).title = d.model_version;
    cell(row, d.dry_run ? "yes" : "no");
    cell(row, (d.actuation || []).map((p) => `${p.setting.replace(/_/g, " ")} ${p.value}: ${p.applies.replace(/_/g, " ")}`).join("; ") || d.emr);
  }
}

function drawProblems(problems) {
  const list = $("problems");
  list.replaceChildren();
  for (const p of problems) list.appendChild(document.createElement("li")).textContent = p;
}

async function poll() {
  try {
    const r = await fetch("/api/snapshot", { cache: "no-store" });
    if (!r.ok) throw new Error(`/api/snapshot answered ${r.status}`);
    const s = await r.json();
    $("title").textContent = s.title;
    drawProblems(s.problems);
    drawCards(s);
    drawCharts(s);
    drawFleet(s.fleet);
    drawLog(s.decisions);
    document.body.dataset.decisions = String(s.sla.decisions);
    $("status").textContent = `${s.sla.decisions} decisions stored; read at ${new Date(s.read_at_s * 1000).toISOString().slice(11, 19)} UTC`;
  } catch (e) {
    $("status").textContent = `cannot read the dashboard's server: ${e.message}`;
  }
  setTimeout(poll, POLL_MS);
}

async function pollResults() {
  try {
    const r = await fetch("/api/results", { cache: "no-store" });
    if (r.status === 404) return;
    const t = await r.json();
    $("results-section").hidden = false;
    if (t.error) {
      $("results-dir").textContent = t.error;
    } else {
      $("results-dir").textContent = `(${t.dir})`;
      const head = $("results").tHead;
      head.replaceChildren();
      const hr = head.insertRow();
      for (const c of t.columns) hr.appendChild(document.createElement("th")).textContent = c;
      const body = $("results").tBodies[0];
      body.replaceChildren();
      for (const row of t.rows) {
        const tr = body.insertRow();
        row.forEach((v, i) => cell(tr, v, i > 0 ? "num" : ""));
      }
      if (t.timeline) {
        $("timeline").src = "/results/timeline.svg?" + Date.now();
        $("timeline").hidden = false;
      }
    }
  } catch (e) {
    $("results-dir").textContent = `cannot read the results: ${e.message}`;
  }
  setTimeout(pollResults, RESULTS_EVERY_MS);
}

window.addEventListener("resize", () => {
  for (const [name, chart] of Object.entries(charts)) chart.setSize({ width: chartWidth("chart-" + name), height: 260 });
});
poll();
pollResults();
