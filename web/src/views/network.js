// The network view: China's provinces, the sites (sized by GPUs, coloured by renewable share
// now), the consumer cities, the links and the data flows of active jobs; a card per site.
import { get } from "../api.js";
import { chart } from "../charts.js";
import { esc, html, num, pct, qty, raw, shareColour } from "../format.js";

export const title = "Network";

export function mount(app) {
  app.innerHTML = html`
    <section class="network">
      <div class="map-wrap">
        <div id="map" class="map"></div>
        <div class="legend">
          <div><span class="swatch" style="background:${shareColour(0)}"></span>0%
               <span class="ramp"></span>
               <span class="swatch" style="background:${shareColour(1)}"></span>100% renewable now</div>
          <div><span class="dot consumer"></span>consumer city <span class="line flow"></span>job data flow
               <span class="line link"></span>link</div>
        </div>
      </div>
      <div id="cards" class="cards"></div>
    </section>`;
  return { refresh: (view) => refresh(view) };
}

async function refresh() {
  const { data, changed } = await get("/v1/dashboard/network");
  if (!changed) return;
  drawMap(data);
  drawCards(data);
}

function drawMap(net) {
  const el = document.getElementById("map");
  if (!el) return;
  const cityPos = Object.fromEntries(net.cities.map((c) => [c.id, [c.lon, c.lat]]));
  // Two sites in one city would sit on top of each other: fan them out a little.
  const perCity = {};
  const sites = net.sites.map((s) => {
    const k = (perCity[s.city] = (perCity[s.city] ?? -1) + 1);
    return { ...s, pos: [s.lon + k * 0.9, s.lat - k * 0.6] };
  });
  const maxGpus = Math.max(1, ...sites.map((s) => s.gpus));
  const c = chart(el);
  c.setOption({
    tooltip: { trigger: "item", confine: true },
    geo: {
      map: "china", roam: true, zoom: 1.15, center: [104, 36],
      itemStyle: { areaColor: "#eef2f5", borderColor: "#9aa9b5", borderWidth: 0.6 },
      emphasis: { itemStyle: { areaColor: "#dde6ec" }, label: { show: false } },
      label: { show: false },
    },
    series: [
      {
        name: "links", type: "lines", coordinateSystem: "geo", silent: false, zlevel: 1,
        lineStyle: { color: "#8796a3", opacity: 0.55, curveness: 0.12 },
        data: net.links.map((l) => ({
          coords: [cityPos[l.a], cityPos[l.b]],
          lineStyle: { width: 0.6 + Math.sqrt(l.gbps) / 4 },
          tooltip: { formatter: esc(`${l.a} ↔ ${l.b}: ${l.gbps} Gbit/s, ${l.latency_ms} ms, ${l.cny_per_gb} CNY/GB` +
                                    (l.jobs ? `; ${l.jobs} active job(s), ${qty(l.data_gb)} GB` : "")) },
        })),
      },
      {
        name: "flows", type: "lines", coordinateSystem: "geo", polyline: true, zlevel: 2,
        effect: { show: true, period: 3, trailLength: 0.2, symbol: "arrow", symbolSize: 7, color: "#e8590c" },
        lineStyle: { color: "#e8590c", opacity: 0.8, width: 2 },
        data: net.flows.filter((f) => f.path.length > 1).map((f) => ({
          coords: f.path.map((x) => cityPos[x]),
          lineStyle: { width: 1.5 + Math.min(5, f.jobs) },
          tooltip: { formatter: esc(`${f.origin} → ${f.site}: ${f.jobs} active job(s), ${qty(f.data_gb)} GB of data`) },
        })),
      },
      {
        name: "cities", type: "scatter", coordinateSystem: "geo", zlevel: 3, symbol: "diamond",
        data: net.cities.filter((x) => x.consumer).map((x) => ({
          name: x.id, value: [x.lon, x.lat],
          tooltip: { formatter: esc(`${x.id}${x.province ? ` (${x.province})` : ""}: consumer city` +
                                    (x.active_jobs_from ? `, ${x.active_jobs_from} active job(s) from here` : "")) },
        })),
        symbolSize: 9, itemStyle: { color: "#1c7ed6" },
        label: { show: true, position: "left", formatter: "{b}", fontSize: 11, color: "#1c4f80" },
      },
      {
        name: "sites", type: "effectScatter", coordinateSystem: "geo", zlevel: 4,
        rippleEffect: { scale: 2.2, brushType: "stroke" },
        showEffectOn: "render",
        data: sites.map((s) => ({
          name: s.id, value: [...s.pos, s.gpus],
          symbolSize: 12 + 26 * Math.sqrt(s.gpus / maxGpus),
          itemStyle: { color: shareColour(s.renewable_share_now), borderColor: s.up ? "#1b5e20" : "#868e96",
                       borderWidth: s.up ? 2 : 1, opacity: s.up ? 0.95 : 0.6 },
          tooltip: { formatter: siteTip(s) },
        })),
        label: { show: true, position: "right", formatter: "{b}", fontSize: 11, fontWeight: "bold", color: "#222" },
      },
    ],
  });
  c.off("click");
  c.on("click", (e) => {
    if (e.seriesName === "sites") location.hash = `#/sites/${encodeURIComponent(e.name)}`;
  });
}

function siteTip(s) {
  return html`<b>${s.id}</b> (${s.city}) ${s.up ? "up" : "down"}<br/>
    GPUs ${s.gpus_used} used / ${s.gpus}<br/>
    renewables ${qty(s.renewables_kw_now)} kW: ${pct(s.renewable_share_now)} of ${s.renewable_share_basis}<br/>
    grid ${num(s.carbon_kg_per_kwh_now, 3)} kg CO₂e/kWh, ${num(s.cny_per_kwh_now, 3)} CNY/kWh`;
}

function drawCards(net) {
  const el = document.getElementById("cards");
  if (!el) return;
  el.innerHTML = net.sites.map((s) => html`
    <a class="card site-card" data-site="${s.id}" href="#/sites/${encodeURIComponent(s.id)}">
      <h3>${s.id} <small>${s.city}</small>
        <span class="pill ${s.up ? "up" : "down"}">${s.up ? (s.drained ? "drained" : "up") : "down"}</span></h3>
      <table class="pools">
        ${raw(s.pools.map((p) => html`<tr><td>${p.gpu_type}</td>
          <td class="bar"><span style="width:${(100 * p.used) / Math.max(1, p.count)}%"></span></td>
          <td class="n">${p.free} free / ${p.count}</td><td class="n price">¥${num(p.cny_per_gpu_h, 1)}/GPU-h</td></tr>`).join(""))}
      </table>
      <dl>
        <dt>PUE</dt><dd>${num(s.pue, 2)}</dd>
        <dt>load this hour</dt><dd>${qty(s.load_kwh_this_hour)} kWh <small>(run and planned)</small></dd>
        <dt>renewables now</dt><dd>${qty(s.renewables_kw_now)} kW
          <span class="share" style="color:${shareColour(s.renewable_share_now)}">${pct(s.renewable_share_now)}</span>
          <small>of ${s.renewable_share_basis}</small></dd>
        ${raw(s.battery_kwh_now !== null ? html`<dt>battery</dt><dd>${qty(s.battery_kwh_now)} kWh</dd>` : "")}
        <dt>grid carbon now</dt><dd>${num(s.carbon_kg_per_kwh_now, 3)} kg CO₂e/kWh</dd>
        <dt>price now</dt><dd>${num(s.cny_per_kwh_now, 3)} CNY/kWh</dd>
      </dl>
    </a>`).join("");
}
