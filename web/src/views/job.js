// A job: its lifecycle, placement, cost and carbon so far, and the scheduler's explanation (the
// candidates it scored with the parts of each score, and why other sites were left out).
import { ApiError, get, send } from "../api.js";
import { chart, disposeAll } from "../charts.js";
import { badge, esc, html, num, qty, raw, TERMINAL, when } from "../format.js";

export const title = "Job";

let shown = "";       // the job as last drawn: a poll that brings nothing new redraws nothing

export function mount(app, { id }) {
  shown = "";
  app.innerHTML = html`<section class="job" id="job" data-job="${id}"><p class="muted">Loading job ${id}…</p></section>`;
  return { refresh: () => refresh(id) };
}

async function refresh(id) {
  let j;
  try {
    ({ data: j } = await get(`/v1/jobs/${encodeURIComponent(id)}`));
  } catch (err) {
    // Another tenant's job answers 404, exactly like a job that does not exist.
    if (err instanceof ApiError && err.status === 404) {
      document.getElementById("job").innerHTML = html`<div class="card notfound"><h2>No job ${id}</h2>
        <p>${err.message}. A tenant sees only its own jobs.</p><a href="#/jobs">All jobs</a></div>`;
      return;
    }
    throw err;
  }
  const el = document.getElementById("job");
  const now = JSON.stringify(j);
  if (!el || now === shown) return;
  shown = now;
  disposeAll();
  const u = j.usage;
  const spec = j.spec;
  el.innerHTML = html`
    <h2>Job ${j.id}: ${j.name} ${badge(j.state)} <small>tenant ${j.tenant}</small>
      ${raw(TERMINAL.includes(j.state) ? "" : '<button id="cancel" type="button" class="danger">Cancel</button>')}</h2>
    <p class="reason">${j.reason}</p>
    <div class="panels">
      <div class="card"><h3>Placement</h3><dl>
        <dt>site</dt><dd>${raw(j.site ? html`<a href="#/sites/${j.site}">${j.site}</a>` : "—")}</dd>
        <dt>GPU type</dt><dd>${j.gpu_type ?? "—"} × ${j.gpus}</dd>
        <dt>start</dt><dd>${when(j.start_h)} <small>(${num(j.start_h, 4)} h)</small></dd>
        <dt>end</dt><dd>${when(j.end_h)} <small>(${num(j.end_h, 4)} h)</small></dd>
        <dt>origin</dt><dd>${spec.origin}</dd>
        <dt>work</dt><dd>${qty(spec.work_h)} h on a speed-1 GPU</dd>
        <dt>data</dt><dd>${qty(spec.data_gb ?? 0)} GB</dd>
        <dt>deadline</dt><dd>${spec.deadline_h ? when(spec.deadline_h) : "none"}</dd>
        <dt>command</dt><dd><code>${j.command}</code></dd>
      </dl></div>
      <div class="card"><h3>Cost and carbon so far</h3><dl>
        <dt>total</dt><dd><b>${qty(u.total_cny)} CNY</b></dd>
        <dt>GPU rental</dt><dd>${qty(u.gpu_cny)} CNY</dd>
        <dt>energy</dt><dd>${qty(u.energy_cny)} CNY</dd>
        <dt>transfer</dt><dd>${qty(u.transfer_cny)} CNY</dd>
        <dt>GPU time</dt><dd>${qty(u.gpu_seconds / 3600)} GPU-h</dd>
        <dt>energy</dt><dd>${qty(u.energy_kwh)} kWh (grid ${qty(u.grid_kwh)}, renewable ${qty(u.renewable_kwh)})</dd>
        <dt>carbon</dt><dd><b>${qty(u.carbon_kg)} kg CO₂e</b></dd>
      </dl></div>
    </div>
    <div class="card explanation" id="explanation"><h3>Why here: the scheduler's explanation</h3>
      ${raw(explanation(j))}</div>
    <div class="card"><h3>Lifecycle</h3>
      <table class="grid" id="lifecycle"><thead><tr><th>at</th><th>controller h</th><th>from</th><th>to</th><th>reason</th></tr></thead>
      <tbody>${raw(j.transitions.map((t) => html`<tr><td>${when(t.at_h)}</td><td class="n">${num(t.at_h, 4)}</td>
        <td>${t.from_state ? badge(t.from_state) : ""}</td><td>${badge(t.to_state)}</td><td>${t.reason}</td></tr>`).join(""))}
      </tbody></table></div>`;
  drawParts(j);
  const cancel = document.getElementById("cancel");
  if (cancel) {
    cancel.onclick = async () => {
      cancel.disabled = true;
      await send("DELETE", `/v1/jobs/${j.id}`);
      await refresh(id);
    };
  }
}

function explanation(j) {
  const e = j.explanation;
  if (!e) return html`<p class="muted">Not decided yet: the job waits for the scheduler's next tick.</p>`;
  const cands = e.candidates ?? [];
  const keys = [...new Set(cands.flatMap((c) => Object.keys(c.parts)))];
  const same = (c) => e.chosen && c.site === e.chosen.site && c.gpu_type === e.chosen.gpu_type &&
                      Math.abs(c.start_h - e.chosen.start_h) < 1e-9;
  const rejected = Object.entries(e.rejected ?? {});
  return html`
    <p><b>${e.decision}</b> by <code>${e.policy ?? "?"}</code>${e.at_h !== undefined ? ` at ${when(e.at_h)}` : ""}:
       ${e.reason || ""} ${e.note ? `(${e.note})` : ""}</p>
    ${raw(e.chosen ? html`<p class="chosen">Chosen: <b>${e.chosen.site} / ${e.chosen.gpu_type}</b>, start
       ${when(e.chosen.start_h)}, score ${qty(e.chosen.total)} CNY for the planned run</p>` : "")}
    ${raw(cands.length ? html`
      <table class="grid" id="candidates"><thead><tr><th>candidate site</th><th>GPU</th><th>start</th><th>end</th>
        ${raw(keys.map((k) => html`<th>${k}</th>`).join(""))}<th>score, CNY (planned run)</th></tr></thead>
      <tbody>${raw(cands.map((c) => html`<tr class="${same(c) ? "chosen" : ""}"><td>${c.site}${same(c) ? " ✔" : ""}</td>
        <td>${c.gpu_type}</td><td>${when(c.start_h)}</td><td>${when(c.end_h)}</td>
        ${raw(keys.map((k) => html`<td class="n">${qty(c.parts[k] ?? 0)}</td>`).join(""))}
        <td class="n"><b>${qty(c.total)}</b></td></tr>`).join(""))}</tbody></table>
      <div id="parts" class="chart small"></div>` : "<p class=\"muted\">No candidate was scored.</p>")}
    <h4>Sites left out</h4>
    ${raw(rejected.length ? html`<table class="grid" id="rejected"><thead><tr><th>site</th><th>why</th></tr></thead>
      <tbody>${raw(rejected.map(([s, why]) => html`<tr><td>${s}</td><td>${why}</td></tr>`).join(""))}</tbody></table>`
      : '<p class="muted">None: every site was a candidate.</p>')}`;
}

function drawParts(j) {
  const el = document.getElementById("parts");
  const e = j.explanation;
  if (!el || !e) return;
  const cands = e.candidates ?? [];
  const keys = [...new Set(cands.flatMap((c) => Object.keys(c.parts)))];
  chart(el).setOption({
    animation: false,
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    legend: { top: 0 },
    grid: { left: 150, right: 30, top: 30, bottom: 25 },
    xAxis: { type: "value", name: "CNY" },
    yAxis: { type: "category", inverse: true, data: cands.map((c) => `${c.site} / ${c.gpu_type}`) },
    series: keys.map((k) => ({ name: k, type: "bar", stack: "score", data: cands.map((c) => c.parts[k] ?? 0) })),
  }, true);
  el.setAttribute("aria-label", esc(`score parts of ${cands.length} candidates`));
}
