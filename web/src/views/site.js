// A site: its agent's state (up or down, the last heartbeat: GET /v1/sites) and its jobs
// (GET /v1/jobs?site=), then 24 past hours (or 72, or 7 days: `past_h`) and 48 ahead of its
// energy balance (load served by renewables, the battery and the grid; renewables available and
// curtailed; battery charge), its tariff and its grid carbon intensity. The past comes from
// metered runs, the future from placed jobs and the network's forecast series
// (GET /v1/dashboard/sites/{id}/series). Each chart has a label and a summary in words.
// For the operator only (the meters are the operator's: GET /v1/sites/{site}/energy), the
// site's renewable power and grid import by hour, measured (the meters) against forecast (what
// the scheduler plans with, hours ahead only) against the model (the network file's), with the
// figures as a table (GET /v1/dashboard/sites/{id}/meters). A tenant's view has no such card.
import { get } from "../api.js";
import { chart, describe } from "../charts.js";
import { hourLabel, html, jobBadge, money, num, qty, raw, stamp, wall, when } from "../format.js";
import { cityName, reasonText, siteName, t } from "../i18n.js";

export const title = ({ id }) => t("site.h1", { site: siteName(id) });

const RANGES = [24, 72, 168];

export function mount(app, { id, params }, me) {
  const operator = me?.role === "admin";
  const past = RANGES.includes(Number(params.past_h)) ? Number(params.past_h) : 24;
  app.innerHTML = html`
    <section class="site" id="site" data-site="${id}">
      <p><small id="site-city"></small> <a class="back" href="#/network">${t("site.back")}</a></p>
      <div class="card" id="site-agent" aria-live="polite"><h2>${t("site.status")}</h2><p class="muted">…</p></div>
      <form class="filters" id="range-form"><label>${t("site.range")} <select name="past_h" id="site-range">
        ${raw(RANGES.map((h) => html`<option value="${h}" ${raw(h === past ? "selected" : "")}>${t(`site.range.${h}`)}</option>`).join(""))}
      </select></label></form>
      <p class="muted">${t("site.note")}</p>
      <div class="card"><h2>${t("site.energy")}</h2>
        <div id="energy" class="chart"></div></div>
      <div class="card"><h2>${t("site.prices")}</h2><div id="prices" class="chart short"></div></div>
      ${raw(operator ? html`<div class="card" id="meters"><h2>${t("meters.h2")}</h2>
        <p class="muted" id="meters-note">…</p>
        <div id="meters-charts"><h3>${t("meters.renewables")}</h3><div id="meters-renewables" class="chart short"></div>
        <h3>${t("meters.grid")}</h3><div id="meters-grid" class="chart short"></div>
        <details class="chart-data" id="meters-data"><summary>${t("meters.table")}</summary><div class="scroll"></div></details></div>
        </div>` : "")}
      <div class="card"><h2>${t("site.totals")}</h2><dl id="site-totals"></dl></div>
      <div class="card"><h2>${t("site.jobs")}</h2><div class="scroll" id="site-jobs"></div></div>
    </section>`;
  document.getElementById("site-range").onchange = (e) => {
    location.hash = `#/sites/${encodeURIComponent(id)}${e.target.value === "24" ? "" : `?past_h=${e.target.value}`}`;
  };
  return { refresh: () => Promise.all([refresh(id, past), operator ? meters(id, past) : null]) };
}

async function agent(id) {
  const [{ data: sites }, { data: jobs }] = await Promise.all([get("/v1/sites"), get("/v1/jobs", { site: id, limit: 100 })]);
  const s = sites.find((x) => x.id === id);
  const box = document.getElementById("site-agent");
  if (!box || !s) return;
  const state = s.up ? (s.drained ? "drained" : "up") : "down";
  const text = s.up ? (s.drained ? t("site.is_drained") : t("site.is_up")) : t("site.is_down");
  const out = html`<h2>${t("site.status")} <span class="pill ${s.up ? "up" : "down"}" data-up="${state}">${t(`site.${state}`)}</span></h2>
    <p class="${s.up ? "" : "down-note"}">${text}</p>
    <dl><dt>${t("site.last_seen")}</dt><dd id="last-seen">${s.last_seen_at ? stamp(new Date(s.last_seen_at)) : t("site.never")}</dd></dl>`;
  if (box.dataset.html !== out) {
    box.dataset.html = out;
    box.innerHTML = out;
    box.className = `card ${s.up ? "" : "site-down"}`;
  }
  const list = document.getElementById("site-jobs");
  const rows = jobs.jobs.slice().sort((a, b) => b.id - a.id);
  const table = rows.length ? html`<table class="grid"><thead><tr><th scope="col">${t("col.id")}</th><th scope="col">${t("col.name")}</th>
      <th scope="col">${t("col.tenant")}</th><th scope="col">${t("col.state")}</th><th scope="col">${t("col.submitted")}</th>
      <th scope="col" class="n">${t("col.cost")}</th><th scope="col">${t("col.why")}</th></tr></thead><tbody>
      ${raw(rows.map((j) => html`<tr data-job="${j.id}"><td><a href="#/jobs/${j.id}">${j.id}</a></td><td>${j.name}</td><td>${j.tenant}</td>
        <td>${jobBadge(j)}</td><td>${when(j.submit_h)}</td><td class="n">${money(j.usage.total_cny)}</td>
        <td>${reasonText(j.reason)}</td></tr>`).join(""))}</tbody></table>`
    : html`<p class="muted">${t("jobs.none")}</p>`;
  if (list && list.dataset.html !== table) {
    list.dataset.html = table;
    list.innerHTML = table;
  }
}

async function refresh(id, past) {
  await agent(id);
  const { data: d, changed } = await get(`/v1/dashboard/sites/${encodeURIComponent(id)}/series`,
                                         past === 24 ? {} : { past_h: past, future_h: 48 });
  const el = document.getElementById("energy");
  if (!el) return;
  // The clock moves even when the figures do not: the "now" line is redrawn on every poll.
  const labels = d.hours.map((h) => hourLabel(wall(h)));
  const narrow = (document.getElementById("energy")?.clientWidth ?? 1000) < 560;
  const every = Math.max(11, Math.round(labels.length / (narrow ? 3 : 6)) - 1);
  const nowIx = Math.min(labels.length - 1, d.slot - d.first_h);
  const nowLine = {
    symbol: "none", silent: true, lineStyle: { color: "#c92a2a", type: "solid", width: 1.5 },
    label: { formatter: t("s.now"), color: "#c92a2a" }, data: [{ xAxis: labels[nowIx] }],
  };
  const future = { silent: true, itemStyle: { color: "rgba(120,140,160,0.08)" },
                   data: [[{ xAxis: labels[nowIx], name: t("s.forecast") }, { xAxis: labels[labels.length - 1] }]] };
  if (!changed && el.dataset.drawn) return;
  el.dataset.drawn = "1";
  document.getElementById("site-city").textContent = t("site.city_line", { city: cityName(d.city), pue: num(d.pue, 2), kw: qty(d.full_load_kw) });
  const energy = [
    { name: t("s.renewables used"), type: "bar", stack: "supply", data: d.renewable_used_kwh, itemStyle: { color: "#2f9e44" } },
    { name: t("s.battery discharge"), type: "bar", stack: "supply", data: d.battery_discharge_kwh, itemStyle: { color: "#7048e8" } },
    { name: t("s.grid"), type: "bar", stack: "supply", data: d.grid_kwh, itemStyle: { color: "#868e96" } },
    { name: t("s.battery charge"), type: "bar", stack: "surplus", data: d.battery_charge_kwh, itemStyle: { color: "#b197fc" } },
    { name: t("s.curtailed"), type: "bar", stack: "surplus", data: d.curtailed_kwh, itemStyle: { color: "#d8f5a2" } },
    { name: t("s.load"), type: "line", step: "middle", symbol: "none", data: d.load_kwh,
      lineStyle: { color: "#e8590c", width: 2 }, itemStyle: { color: "#e8590c" }, markLine: nowLine, markArea: future },
    { name: t("s.renewables available"), type: "line", step: "middle", symbol: "none", data: d.renewable_kw,
      lineStyle: { color: "#37b24d", type: "dashed" }, itemStyle: { color: "#37b24d" } },
  ];
  if (d.battery_capacity_kwh) {
    energy.push({ name: t("s.soc"), type: "line", yAxisIndex: 1, symbol: "none", data: d.battery_soc_kwh,
                  lineStyle: { color: "#5f3dc4", type: "dotted" }, itemStyle: { color: "#5f3dc4" } });
  }
  chart(el).setOption({
    animation: false,
    tooltip: { trigger: "axis", confine: true, valueFormatter: (v) => qty(v) },
    legend: { top: 0, type: narrow ? "scroll" : "plain" },
    grid: { left: 55, right: 55, top: 50, bottom: 30 },
    xAxis: { type: "category", data: labels, axisLabel: { interval: every } },
    yAxis: [{ type: "value", name: "kWh" }, { type: "value", name: "SoC kWh", show: !!d.battery_capacity_kwh,
                                             splitLine: { show: false } }],
    series: energy,
  }, true);
  chart(document.getElementById("prices")).setOption({
    animation: false,
    tooltip: { trigger: "axis", confine: true },
    legend: { top: 0 },
    grid: { left: 55, right: 65, top: narrow ? 55 : 40, bottom: 30 },
    xAxis: { type: "category", data: labels, axisLabel: { interval: every } },
    yAxis: [{ type: "value", name: "¥/kWh" }, { type: "value", name: "kg CO₂e/kWh", splitLine: { show: false } }],
    series: [
      { name: t("s.tariff"), type: "line", step: "middle", symbol: "none", data: d.cny_per_kwh,
        itemStyle: { color: "#1971c2" }, markLine: nowLine, markArea: future },
      { name: t("s.grid carbon"), type: "line", step: "middle", symbol: "none", yAxisIndex: 1, data: d.carbon_kg_per_kwh,
        itemStyle: { color: "#495057" } },
    ],
  }, true);
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  const load = sum(d.load_kwh);
  // renewables: solar and wind serving the load directly; the battery's discharge apart
  const ren = sum(d.renewable_used_kwh);
  const bat = sum(d.battery_discharge_kwh);
  describe(el, t("site.energy"), t("chart.energy.summary", { n: labels.length, load: qty(load), ren: qty(ren), bat: qty(bat),
                                                           grid: qty(sum(d.grid_kwh)), cur: qty(sum(d.curtailed_kwh)) }));
  describe(document.getElementById("prices"), t("site.prices"), t("chart.prices.summary", {
    tmin: money(Math.min(...d.cny_per_kwh), 3), tmax: money(Math.max(...d.cny_per_kwh), 3),
    cmin: num(Math.min(...d.carbon_kg_per_kwh), 3), cmax: num(Math.max(...d.carbon_kg_per_kwh), 3) }));
  document.getElementById("site-totals").innerHTML = html`
    <dt>${t("t.load")}</dt><dd>${qty(load)} kWh</dd>
    <dt>${t("t.renewables")}</dt><dd id="total-renewables">${qty(ren)} kWh ${load > 0 ? `(${Math.round((100 * ren) / load)}%)` : ""}</dd>
    <dt>${t("t.battery")}</dt><dd id="total-battery">${qty(bat)} kWh ${load > 0 ? `(${Math.round((100 * bat) / load)}%)` : ""}</dd>
    <dt>${t("t.grid")}</dt><dd>${qty(sum(d.grid_kwh))} kWh</dd>
    <dt>${t("t.curtailed")}</dt><dd>${qty(sum(d.curtailed_kwh))} kWh</dd>
    <dt>${t("t.carbon")}</dt><dd>${qty(d.grid_kwh.reduce((a, g, i) => a + g * d.carbon_kg_per_kwh[i], 0))} kg CO₂e</dd>`;
}

// The operator's meters: measured, forecast and model on UTC hours (shown in Beijing time).
async function meters(id, past) {
  const { data: d, changed } = await get(`/v1/dashboard/sites/${encodeURIComponent(id)}/meters`,
                                         past === 24 ? {} : { past_h: past, future_h: 48 });
  const box = document.getElementById("meters-charts");
  if (!box || (!changed && box.dataset.drawn)) return;
  box.dataset.drawn = "1";
  const note = document.getElementById("meters-note");
  const card = document.getElementById("meters");
  card.dataset.readings = d.readings ? "yes" : "no";
  if (!d.readings) {
    // nothing measured in the window: say so, rather than draw a chart with no measured line
    box.hidden = true;
    note.className = "no-readings";
    note.textContent = t("meters.none");
    return;
  }
  box.hidden = false;
  note.className = "muted";
  note.textContent = t(d.forecast_from === "readings" ? "meters.note.readings" : "meters.note.model");
  const labels = d.hours.map((h) => hourLabel(new Date(h)));
  const narrow = (document.getElementById("meters-renewables")?.clientWidth ?? 1000) < 560;
  const every = Math.max(11, Math.round(labels.length / (narrow ? 3 : 6)) - 1);
  const nowIx = d.now_index ?? labels.length - 1;
  const nowLine = { symbol: "none", silent: true, lineStyle: { color: "#c92a2a", type: "solid", width: 1.5 },
                    label: { formatter: t("s.now"), color: "#c92a2a" }, data: [{ xAxis: labels[nowIx] }] };
  const line = (name, data, color, type, extra = {}) => ({
    name, type: "line", step: "middle", symbol: "none", connectNulls: false, data,
    lineStyle: { color, type, width: type === "solid" ? 2.5 : 2 }, itemStyle: { color }, ...extra });
  const measured = t("meters.measured");
  const forecast = t("meters.forecast");
  const model = t("meters.model");
  const options = (series) => ({
    animation: false,
    tooltip: { trigger: "axis", confine: true, valueFormatter: (v) => (v === null || v === undefined ? "—" : `${qty(v)} kW`) },
    legend: { top: 0, type: narrow ? "scroll" : "plain" },
    grid: { left: 55, right: 20, top: 40, bottom: 30 },
    xAxis: { type: "category", data: labels, axisLabel: { interval: every } },
    yAxis: { type: "value", name: "kW" },
    series,
  });
  const ren = document.getElementById("meters-renewables");
  chart(ren).setOption(options([
    line(measured, d.measured_renewable_kw, "#1e6b30", "solid", { markLine: nowLine }),
    line(forecast, d.forecast_renewable_kw, "#1971c2", "dashed"),
    line(model, d.model_renewable_kw, "#868e96", "dotted"),
  ]), true);
  const grid = document.getElementById("meters-grid");
  chart(grid).setOption(options([
    line(measured, d.measured_grid_kw, "#5c3d2e", "solid", { markLine: nowLine }),
    line(model, d.model_grid_kw, "#868e96", "dotted"),
  ]), true);
  // the summaries: mean of each series over the hours it has a value, and how many hours that is
  const mean = (a) => {
    const v = a.filter((x) => x !== null && x !== undefined);
    return v.length ? { kw: qty(v.reduce((x, y) => x + y, 0) / v.length), n: v.length } : { kw: "—", n: 0 };
  };
  const [mr, fr, nr, mg, ng] = [d.measured_renewable_kw, d.forecast_renewable_kw, d.model_renewable_kw,
                                d.measured_grid_kw, d.model_grid_kw].map(mean);
  describe(ren, t("meters.renewables"), t("meters.renewables.summary", {
    mkw: mr.kw, mn: mr.n, fkw: fr.kw, fn: fr.n, nkw: nr.kw, nn: nr.n }));
  describe(grid, t("meters.grid"), t("meters.grid.summary", { mkw: mg.kw, mn: mg.n, nkw: ng.kw, nn: ng.n }));
  // the chart as a table: one row per hour, every figure of both charts (data-* for scripts and tests)
  const cell = (k, v) => html`<td class="n" data-k="${k}" data-v="${v ?? ""}">${v === null || v === undefined ? "—" : qty(v)}</td>`;
  const table = html`<table class="grid" id="meters-table"><thead><tr><th scope="col">${t("col.hour")}</th>
      <th scope="col" class="n">${t("meters.col.measured")}</th><th scope="col" class="n">${t("meters.col.forecast")}</th>
      <th scope="col" class="n">${t("meters.col.model")}</th><th scope="col" class="n">${t("meters.col.grid_measured")}</th>
      <th scope="col" class="n">${t("meters.col.grid_model")}</th></tr></thead><tbody>
    ${raw(d.hours.map((h, i) => html`<tr data-at="${h}" class="${i === nowIx ? "now" : ""}"><th scope="row">${labels[i]}</th>
      ${raw(cell("measured", d.measured_renewable_kw[i]))}${raw(cell("forecast", d.forecast_renewable_kw[i]))}
      ${raw(cell("model", d.model_renewable_kw[i]))}${raw(cell("grid_measured", d.measured_grid_kw[i]))}
      ${raw(cell("grid_model", d.model_grid_kw[i]))}</tr>`).join(""))}</tbody></table>`;
  document.querySelector("#meters-data .scroll").innerHTML = table;
}
