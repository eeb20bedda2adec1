// A tenant's month: usage and invoice (metering.invoice), and the carbon its jobs avoided by not
// running on their origin's grid. A tenant sees its own; the operator every tenant, filtered by
// any part of a name. The invoice's lines are runs; a job that ran three times (retries, a
// preemption) is one row here, with its run count and the sums. Each row says where its energy
// comes from (`energy_basis`: the site's meters or the network file's model; a job whose runs
// differ says how many of each), and a true-up (`kind: "true-up"`: a run of a closed month
// re-priced from the meters, less what that month billed) is a row of its own, marked.
import { download, get } from "../api.js";
import { chart, describe } from "../charts.js";
import { esc, html, int, money, qty, raw, wall } from "../format.js";
import { cityName, siteName, t } from "../i18n.js";

export const title = (_args, me) => (me.role === "admin" ? t("tenant.h1.admin") : t("tenant.h1"));

export function mount(app, { params }, me) {
  const d = wall(me.now_h);
  const month = params.month ?? `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
  app.innerHTML = html`
    <section class="tenant">
      <form id="month-form" class="filters">
        <label>${t("tenant.month")} <input type="month" name="month" value="${month}" required /></label>
        ${raw(me.role === "admin" ? html`<label>${t("tenant.tenant")} <input name="tenant" value="${params.tenant ?? ""}"
          placeholder="${t("tenant.all")}" size="12" autocomplete="off" /></label>` : "")}
        <button type="submit">${t("tenant.show")}</button>
      </form>
      <p class="muted">${t("tenant.range")}</p>
      <div id="tenants"></div>
    </section>`;
  document.getElementById("month-form").onsubmit = (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v.trim()) q.set(k, v.trim());
    location.hash = `#/tenant?${q}`;
  };
  return { refresh: () => refresh(month, (params.tenant ?? "").trim().toLowerCase()) };
}

// The invoice's lines -> one row per job and kind (its runs; its true-ups apart), in the order
// of first appearance, with how many of its lines are metered and how many modelled.
export function byJob(lines) {
  const jobs = new Map();
  const sumKeys = ["gpu_h", "energy_kwh", "carbon_kg", "gpu_cny", "energy_cny", "transfer_cny", "total_cny"];
  for (const l of lines) {
    const kind = l.kind ?? "run";
    const key = `${l.job_id} ${kind}`;
    let g = jobs.get(key);
    if (!g) {
      g = { job_id: l.job_id, name: l.name, kind, sites: [], gpu_types: [], gpus: l.gpus, runs: 0,
            basis: { metered: 0, modelled: 0 } };
      for (const k of sumKeys) g[k] = 0;
      jobs.set(key, g);
    }
    g.runs += 1;
    g.basis[l.energy_basis === "metered" ? "metered" : "modelled"] += 1;
    for (const k of sumKeys) g[k] += l[k] ?? 0;
    if (!g.sites.includes(l.site)) g.sites.push(l.site);
    if (!g.gpu_types.includes(l.gpu_type)) g.gpu_types.push(l.gpu_type);
  }
  return [...jobs.values()];
}

// "metered" / "modelled" (计量 / 模型), or both with their counts where a job's runs differ.
function basisCell(g) {
  const tag = (b, n) => `<span class="basis ${b}" data-basis="${b}">${esc(t(`basis.${b}`))}${n ? ` ×${int(n)}` : ""}</span>`;
  const { metered, modelled } = g.basis;
  const which = metered && modelled ? "mixed" : metered ? "metered" : "modelled";
  const inner = which === "mixed" ? `${tag("metered", metered)} ${tag("modelled", modelled)}` : tag(which, 0);
  return raw(`<td class="basis-cell" data-basis="${which}" title="${esc(t(`basis.${which}.title`))}">${inner}</td>`);
}

async function refresh(month, filter) {
  const { data, changed } = await get("/v1/dashboard/tenants", { month });
  const el = document.getElementById("tenants");
  if (!el || (!changed && el.dataset.drawn)) return;
  el.dataset.drawn = "1";
  const tenants = data.tenants.filter((x) => !filter || x.tenant.toLowerCase().includes(filter));
  el.innerHTML = tenants.map((x, k) => {
    const inv = x.invoice;
    const c = x.carbon;
    const rows = byJob(inv.lines);
    return html`
    <div class="card invoice" data-tenant="${x.tenant}">
      <h2>${x.tenant} <small>${t("tenant.sub", { month })}</small>
        <button type="button" class="csv" data-tenant="${x.tenant}" aria-label="${t("tenant.csv.label", { tenant: x.tenant })}">${t("tenant.csv")}</button></h2>
      <div class="figures">
        <div><b>${money(inv.total_cny)}</b><small>${t("tenant.parts", { gpu: money(inv.gpu_cny), energy: money(inv.energy_cny),
          transfer: money(inv.transfer_cny) })}${x.budget_cny !== null ? t("tenant.budget", { b: money(x.budget_cny) }) : ""}</small></div>
        <div><b>${qty(inv.gpu_h)}</b> ${t("tenant.gpuh")}<small>${qty(inv.energy_kwh)} kWh</small></div>
        <div><b>${qty(c.kg)}</b> ${t("tenant.where")}</div>
        <div class="avoided"><b>${qty(c.avoided_kg)}</b> ${t("tenant.avoided")}<small>${t("tenant.vs", { kg: qty(c.origin_grid_kg) })}${
          c.unknown_origin_jobs ? t("tenant.unknown", { n: c.unknown_origin_jobs }) : ""}</small></div>
      </div>
      <div class="scroll">
      <table class="grid lines"><thead><tr><th scope="col">${t("col.job")}</th><th scope="col">${t("col.name")}</th>
        <th scope="col" class="n">${t("col.attempts")}</th><th scope="col">${t("col.site")}</th><th scope="col">${t("col.gpu")}</th>
        <th scope="col" class="n">${t("col.gpus")}</th><th scope="col" class="n">${t("col.gpuh")}</th><th scope="col" class="n">${t("col.kwh")}</th>
        <th scope="col">${t("col.basis")}</th><th scope="col" class="n">${t("col.kg")}</th><th scope="col" class="n">${t("col.gpu_cny")}</th><th scope="col" class="n">${t("col.energy_cny")}</th>
        <th scope="col" class="n">${t("col.transfer_cny")}</th><th scope="col" class="n">${t("col.total_cny")}</th></tr></thead>
        <tbody>${raw(rows.length ? rows.map((l) => html`<tr data-job="${l.job_id}" data-runs="${l.runs}" data-kind="${l.kind}"
          class="${l.kind === "true-up" ? "true-up" : ""}"><td><a href="#/jobs/${l.job_id}">${l.job_id}</a></td>
          <td>${l.name}${raw(l.kind === "true-up" ? html` <span class="kind-true-up" title="${t("tenant.trueup.title")}">${t("tenant.trueup")}</span>` : "")}</td>
          <td class="n" title="${t("tenant.runs", { n: l.runs })}">${int(l.runs)}</td>
          <td>${l.sites.map(siteName).join(", ")}</td><td>${l.gpu_types.join(", ")}</td><td class="n">${int(l.gpus)}</td>
          <td class="n">${qty(l.gpu_h)}</td><td class="n">${qty(l.energy_kwh)}</td>${basisCell(l)}<td class="n">${qty(l.carbon_kg)}</td>
          <td class="n">${money(l.gpu_cny)}</td><td class="n">${money(l.energy_cny)}</td><td class="n">${money(l.transfer_cny)}</td>
          <td class="n">${money(l.total_cny)}</td></tr>`).join("")
          : html`<tr><td colspan="14" class="muted">${t("tenant.none")}</td></tr>`)}
        </tbody>
        <tfoot><tr><td colspan="6">${t("tenant.total")}</td><td class="n">${qty(inv.gpu_h)}</td><td class="n">${qty(inv.energy_kwh)}</td><td></td>
          <td class="n">${qty(inv.carbon_kg)}</td><td class="n">${money(inv.gpu_cny)}</td><td class="n">${money(inv.energy_cny)}</td>
          <td class="n">${money(inv.transfer_cny)}</td><td class="n"><b>${money(inv.total_cny)}</b></td></tr></tfoot>
      </table>
      </div>
      ${raw(x.jobs.length ? html`<h3>${t("tenant.chart")}</h3><div class="chart short" id="carbon-${k}"></div>` : "")}
    </div>`;
  }).join("") || html`<p class="muted">${t("tenant.notenants")}</p>`;
  tenants.forEach((x, k) => {
    const box = document.getElementById(`carbon-${k}`);
    if (!box) return;
    const jobs = x.jobs.filter((j) => j.origin_kg !== null);
    chart(box).setOption({
      animation: false,
      tooltip: { trigger: "axis", confine: true, valueFormatter: (v) => `${qty(v)} kg` },
      legend: { top: 0, right: 0 },
      grid: { left: 60, right: 20, top: 30, bottom: 30 },
      xAxis: { type: "category", data: jobs.map((j) => t("tenant.job", { id: j.job_id, origin: cityName(j.origin) })) },
      yAxis: { type: "value", name: "kg CO₂e" },
      series: [
        { name: t("tenant.ran"), type: "bar", data: jobs.map((j) => j.carbon_kg), itemStyle: { color: "#2f9e44" } },
        { name: t("tenant.origin"), type: "bar", data: jobs.map((j) => j.origin_kg), itemStyle: { color: "#a0522d" } },
      ],
    }, true);
    describe(box, t("tenant.chart"), t("tenant.chart.summary", {
      list: jobs.map((j) => `${t("tenant.job", { id: j.job_id, origin: cityName(j.origin) })} ${qty(j.carbon_kg)} / ${qty(j.origin_kg)} kg`).join("; "),
    }));
  });
  for (const b of el.querySelectorAll("button.csv")) {
    b.onclick = () => download("/v1/invoices", { month, format: "csv", tenant: b.dataset.tenant },
                               `invoice-${b.dataset.tenant}-${month}.csv`);
  }
}
