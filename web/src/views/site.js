// A site: 72 hours (24 past, 48 ahead) of its energy balance (load served by renewables, the
// battery and the grid; renewables available and curtailed; battery charge), its tariff and its
// grid carbon intensity. The past comes from metered runs, the future from placed jobs and the
// network's forecast series (GET /v1/dashboard/sites/{id}/series).
import { get } from "../api.js";
import { chart } from "../charts.js";
import { hourLabel, html, num, qty, wall } from "../format.js";

export const title = "Site";

export function mount(app, { id }) {
  app.innerHTML = html`
    <section class="site" id="site" data-site="${id}">
      <h2>Site ${id} <small id="site-city"></small> <a class="back" href="#/network">← network</a></h2>
      <p class="muted">Hourly slots, ${"local time"}; shaded: the forecast (planned jobs and forecast
        renewables, tariff and carbon). The vertical line is now.</p>
      <div class="card"><h3>Energy: load vs renewables vs battery vs grid (kWh per hour)</h3>
        <div id="energy" class="chart"></div></div>
      <div class="card"><h3>Tariff and grid carbon intensity</h3><div id="prices" class="chart short"></div></div>
      <div class="card"><h3>Totals over the window</h3><dl id="site-totals"></dl></div>
    </section>`;
  return { refresh: () => refresh(id) };
}

async function refresh(id) {
  const { data: d, changed } = await get(`/v1/dashboard/sites/${encodeURIComponent(id)}/series`);
  const el = document.getElementById("energy");
  if (!el) return;
  // The clock moves even when the figures do not: the "now" line is redrawn on every poll.
  const labels = d.hours.map((h) => hourLabel(wall(h)));
  const nowIx = Math.min(labels.length - 1, d.slot - d.first_h);
  const nowLine = {
    symbol: "none", silent: true, lineStyle: { color: "#c92a2a", type: "solid", width: 1.5 },
    label: { formatter: "now", color: "#c92a2a" }, data: [{ xAxis: labels[nowIx] }],
  };
  const future = { silent: true, itemStyle: { color: "rgba(120,140,160,0.08)" },
                   data: [[{ xAxis: labels[nowIx], name: "forecast" }, { xAxis: labels[labels.length - 1] }]] };
  if (!changed && el.dataset.drawn) return;
  el.dataset.drawn = "1";
  document.getElementById("site-city").textContent = `${d.city} · PUE ${num(d.pue, 2)} · full load ${qty(d.full_load_kw)} kW`;
  const energy = [
    { name: "renewables used", type: "bar", stack: "supply", data: d.renewable_used_kwh, itemStyle: { color: "#2f9e44" } },
    { name: "battery discharge", type: "bar", stack: "supply", data: d.battery_discharge_kwh, itemStyle: { color: "#7048e8" } },
    { name: "grid", type: "bar", stack: "supply", data: d.grid_kwh, itemStyle: { color: "#868e96" } },
    { name: "battery charge", type: "bar", stack: "surplus", data: d.battery_charge_kwh, itemStyle: { color: "#b197fc" } },
    { name: "curtailed", type: "bar", stack: "surplus", data: d.curtailed_kwh, itemStyle: { color: "#d8f5a2" } },
    { name: "load", type: "line", step: "middle", symbol: "none", data: d.load_kwh,
      lineStyle: { color: "#e8590c", width: 2 }, itemStyle: { color: "#e8590c" }, markLine: nowLine, markArea: future },
    { name: "renewables available", type: "line", step: "middle", symbol: "none", data: d.renewable_kw,
      lineStyle: { color: "#37b24d", type: "dashed" }, itemStyle: { color: "#37b24d" } },
  ];
  if (d.battery_capacity_kwh) {
    energy.push({ name: "battery state of charge", type: "line", yAxisIndex: 1, symbol: "none", data: d.battery_soc_kwh,
                  lineStyle: { color: "#5f3dc4", type: "dotted" }, itemStyle: { color: "#5f3dc4" } });
  }
  chart(el).setOption({
    animation: false,
    tooltip: { trigger: "axis", valueFormatter: (v) => qty(v) },
    legend: { top: 0 },
    grid: { left: 55, right: 55, top: 50, bottom: 30 },
    xAxis: { type: "category", data: labels, axisLabel: { interval: 11 } },
    yAxis: [{ type: "value", name: "kWh" }, { type: "value", name: "SoC kWh", show: !!d.battery_capacity_kwh,
                                             splitLine: { show: false } }],
    series: energy,
  }, true);
  chart(document.getElementById("prices")).setOption({
    animation: false,
    tooltip: { trigger: "axis" },
    legend: { top: 0 },
    grid: { left: 55, right: 65, top: 40, bottom: 30 },
    xAxis: { type: "category", data: labels, axisLabel: { interval: 11 } },
    yAxis: [{ type: "value", name: "CNY/kWh" }, { type: "value", name: "kg CO₂e/kWh", splitLine: { show: false } }],
    series: [
      { name: "tariff", type: "line", step: "middle", symbol: "none", data: d.cny_per_kwh,
        itemStyle: { color: "#1971c2" }, markLine: nowLine, markArea: future },
      { name: "grid carbon", type: "line", step: "middle", symbol: "none", yAxisIndex: 1, data: d.carbon_kg_per_kwh,
        itemStyle: { color: "#495057" } },
    ],
  }, true);
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  const load = sum(d.load_kwh);
  document.getElementById("site-totals").innerHTML = html`
    <dt>load</dt><dd>${qty(load)} kWh</dd>
    <dt>from renewables</dt><dd>${qty(sum(d.renewable_used_kwh) + sum(d.battery_discharge_kwh))} kWh
      ${load > 0 ? `(${Math.round((100 * (sum(d.renewable_used_kwh) + sum(d.battery_discharge_kwh))) / load)}%)` : ""}</dd>
    <dt>from the grid</dt><dd>${qty(sum(d.grid_kwh))} kWh</dd>
    <dt>curtailed</dt><dd>${qty(sum(d.curtailed_kwh))} kWh</dd>
    <dt>grid carbon</dt><dd>${qty(d.grid_kwh.reduce((a, g, i) => a + g * d.carbon_kg_per_kwh[i], 0))} kg CO₂e</dd>`;
}
