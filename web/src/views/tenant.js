// A tenant's month: usage and invoice (metering.invoice), and the carbon its jobs avoided by not
// running on their origin's grid. A tenant sees its own; the operator every tenant, or one.
import { download, get } from "../api.js";
import { chart } from "../charts.js";
import { html, qty, raw, wall } from "../format.js";

export const title = "Tenant";

export function mount(app, { params }, me) {
  const d = wall(me.now_h);
  const month = params.month ?? `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
  app.innerHTML = html`
    <section class="tenant">
      <form id="month-form" class="filters">
        <label>month <input type="month" name="month" value="${month}" required /></label>
        ${raw(me.role === "admin" ? html`<label>tenant <input name="tenant" value="${params.tenant ?? ""}" placeholder="all" size="12" /></label>` : "")}
        <button type="submit">Show</button>
      </form>
      <div id="tenants"></div>
    </section>`;
  document.getElementById("month-form").onsubmit = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v) q.set(k, v);
    location.hash = `#/tenant?${q}`;
  };
  return { refresh: () => refresh(month, params.tenant) };
}

async function refresh(month, tenant) {
  const { data, changed } = await get("/v1/dashboard/tenants", { month, tenant });
  const el = document.getElementById("tenants");
  if (!el || (!changed && el.dataset.drawn)) return;
  el.dataset.drawn = "1";
  el.innerHTML = data.tenants.map((t, k) => {
    const inv = t.invoice;
    const c = t.carbon;
    return html`
    <div class="card invoice" data-tenant="${t.tenant}">
      <h2>${t.tenant} <small>${month} (UTC, by the month a run ended)</small>
        <button type="button" class="csv" data-tenant="${t.tenant}">Download CSV</button></h2>
      <div class="figures">
        <div><b>${qty(inv.total_cny)}</b> CNY<small>GPU ${qty(inv.gpu_cny)} · energy ${qty(inv.energy_cny)} ·
          transfer ${qty(inv.transfer_cny)}${t.budget_cny !== null ? ` · budget ${qty(t.budget_cny)}` : ""}</small></div>
        <div><b>${qty(inv.gpu_h)}</b> GPU-h<small>${qty(inv.energy_kwh)} kWh</small></div>
        <div><b>${qty(c.kg)}</b> kg CO₂e<small>where the jobs ran</small></div>
        <div class="avoided"><b>${qty(c.avoided_kg)}</b> kg CO₂e avoided<small>vs ${qty(c.origin_grid_kg)} kg on the
          origins' grids${c.unknown_origin_jobs ? `; ${c.unknown_origin_jobs} job(s) whose origin names no province left out` : ""}</small></div>
      </div>
      <table class="grid lines"><thead><tr><th>job</th><th>name</th><th>site</th><th>GPU</th><th>GPUs</th><th>GPU-h</th>
        <th>kWh</th><th>kg CO₂e</th><th>GPU CNY</th><th>energy CNY</th><th>transfer CNY</th><th>total CNY</th></tr></thead>
        <tbody>${raw(inv.lines.length ? inv.lines.map((l) => html`<tr><td><a href="#/jobs/${l.job_id}">${l.job_id}</a></td>
          <td>${l.name}</td><td>${l.site}</td><td>${l.gpu_type}</td><td class="n">${l.gpus}</td><td class="n">${qty(l.gpu_h)}</td>
          <td class="n">${qty(l.energy_kwh)}</td><td class="n">${qty(l.carbon_kg)}</td><td class="n">${qty(l.gpu_cny)}</td>
          <td class="n">${qty(l.energy_cny)}</td><td class="n">${qty(l.transfer_cny)}</td><td class="n">${qty(l.total_cny)}</td></tr>`).join("")
          : '<tr><td colspan="12" class="muted">No run ended in this month.</td></tr>')}
        </tbody>
        <tfoot><tr><td colspan="5">total</td><td class="n">${qty(inv.gpu_h)}</td><td class="n">${qty(inv.energy_kwh)}</td>
          <td class="n">${qty(inv.carbon_kg)}</td><td class="n">${qty(inv.gpu_cny)}</td><td class="n">${qty(inv.energy_cny)}</td>
          <td class="n">${qty(inv.transfer_cny)}</td><td class="n"><b>${qty(inv.total_cny)}</b></td></tr></tfoot>
      </table>
      ${raw(t.jobs.length ? `<div class="chart short" id="carbon-${k}"></div>` : "")}
    </div>`;
  }).join("") || '<p class="muted">No tenants.</p>';
  data.tenants.forEach((t, k) => {
    const box = document.getElementById(`carbon-${k}`);
    if (!box) return;
    const jobs = t.jobs.filter((j) => j.origin_kg !== null);
    chart(box).setOption({
      animation: false,
      title: { text: "carbon per job: where it ran vs on its origin's grid", textStyle: { fontSize: 13 } },
      tooltip: { trigger: "axis", valueFormatter: (v) => `${qty(v)} kg` },
      legend: { top: 0, right: 0 },
      grid: { left: 60, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: jobs.map((j) => `job ${j.job_id} (${j.origin})`) },
      yAxis: { type: "value", name: "kg CO₂e" },
      series: [
        { name: "where it ran", type: "bar", data: jobs.map((j) => j.carbon_kg), itemStyle: { color: "#2f9e44" } },
        { name: "at origin", type: "bar", data: jobs.map((j) => j.origin_kg), itemStyle: { color: "#a0522d" } },
      ],
    }, true);
  });
  for (const b of el.querySelectorAll("button.csv")) {
    b.onclick = () => download("/v1/invoices", { month, format: "csv", tenant: b.dataset.tenant },
                               `invoice-${b.dataset.tenant}-${month}.csv`);
  }
}
