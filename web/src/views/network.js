// The network view: China's provinces, the sites (sized by GPUs, coloured by renewable share
// now), the consumer cities, the links and the data flows of active jobs; a card per site. The
// map is an image with a label, a summary in words and the same figures as a table.
import { get } from "../api.js";
import { chart, describe } from "../charts.js";
import { esc, html, int, money, num, pct, qty, raw, shareColour } from "../format.js";
import { cityName, provinceName, siteName, t } from "../i18n.js";

export const title = () => t("network.h1");

const DOWN_COLOUR = "#adb5bd";     // a site that is down: no renewable colour, no free GPUs

export function mount(app) {
  app.innerHTML = html`
    <section class="network">
      <div class="map-wrap">
        <div id="map" class="map"></div>
        <div class="legend">
          <div><span class="swatch" style="background:${shareColour(0)}"></span>0%
               <span class="ramp"></span>
               <span class="swatch" style="background:${shareColour(1)}"></span>100% ${t("network.legend.share")}
               <span class="swatch down" style="background:${DOWN_COLOUR}"></span>${t("network.legend.down")}</div>
          <div><span class="dot consumer"></span>${t("network.legend.consumer")} <span class="line flow"></span>${t("network.legend.flow")}
               <span class="line link"></span>${t("network.legend.link")}</div>
        </div>
      </div>
      <details class="chart-data" id="map-data"><summary>${t("network.table")}</summary><div class="scroll"></div></details>
      <h2 class="sr-only">${t("network.sites")}</h2>
      <div id="cards" class="cards"></div>
    </section>`;
  return { refresh: () => refresh() };
}

async function refresh() {
  const { data, changed } = await get("/v1/dashboard/network");
  const el = document.getElementById("map");
  // A 304 brings nothing new since the last poll of this URL; but a view mounted anew (the user
  // came back to it) has drawn nothing yet, so it draws the data it has.
  if (!el || (!changed && el.dataset.drawn)) return;
  el.dataset.drawn = "1";
  drawMap(data);
  drawCards(data);
}

function drawMap(net) {
  const el = document.getElementById("map");
  const cityPos = Object.fromEntries(net.cities.map((c) => [c.id, [c.lon, c.lat]]));
  // Two sites in one city would sit on top of each other: fan them out a little.
  const perCity = {};
  const sites = net.sites.map((s) => {
    const k = (perCity[s.city] = (perCity[s.city] ?? -1) + 1);
    return { ...s, pos: [s.lon + k * 0.9, s.lat - k * 0.6] };
  });
  const maxGpus = Math.max(1, ...sites.map((s) => s.gpus));
  const narrow = el.clientWidth < 600;
  const c = chart(el);
  c.setOption({
    tooltip: { trigger: "item", confine: true },
    geo: {
      map: "china", roam: true, zoom: narrow ? 1.05 : 1.15, center: [104, 36],
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
          tooltip: { formatter: esc(t("tip.link", { a: cityName(l.a), b: cityName(l.b), gbps: int(l.gbps), ms: num(l.latency_ms, 1),
                                                    price: money(l.cny_per_gb) }) +
                                    (l.jobs ? t("tip.link.jobs", { n: l.jobs, gb: qty(l.data_gb) }) : "")) },
        })),
      },
      {
        name: "flows", type: "lines", coordinateSystem: "geo", polyline: true, zlevel: 2,
        effect: { show: true, period: 3, trailLength: 0.2, symbol: "arrow", symbolSize: 7, color: "#e8590c" },
        lineStyle: { color: "#e8590c", opacity: 0.8, width: 2 },
        data: net.flows.filter((f) => f.path.length > 1).map((f) => ({
          coords: f.path.map((x) => cityPos[x]),
          lineStyle: { width: 1.5 + Math.min(5, f.jobs) },
          tooltip: { formatter: esc(t("tip.flow", { a: cityName(f.origin), b: siteName(f.site), n: f.jobs, gb: qty(f.data_gb) })) },
        })),
      },
      {
        name: "cities", type: "scatter", coordinateSystem: "geo", zlevel: 3, symbol: "diamond",
        data: net.cities.filter((x) => x.consumer).map((x) => ({
          name: cityName(x.id), value: [x.lon, x.lat],
          tooltip: { formatter: esc(t("tip.city", { city: cityName(x.id) + (x.province ? ` (${provinceName(x.province)})` : "") }) +
                                    (x.active_jobs_from ? t("tip.city.jobs", { n: x.active_jobs_from }) : "")) },
        })),
        symbolSize: 9, itemStyle: { color: "#1c7ed6" },
        label: { show: true, position: "left", formatter: "{b}", fontSize: 11, color: "#1c4f80" },
      },
      {
        name: "sites", type: "effectScatter", coordinateSystem: "geo", zlevel: 4,
        rippleEffect: { scale: 2.2, brushType: "stroke" },
        showEffectOn: "render",
        data: sites.map((s) => ({
          name: siteName(s.id), id: s.id, value: [...s.pos, s.gpus],
          symbolSize: 12 + 26 * Math.sqrt(s.gpus / maxGpus),
          // a site that is down is drawn apart: grey with a dark red outline and "down" beside it,
          // never in the green of the renewables it cannot use
          itemStyle: s.up ? { color: shareColour(s.renewable_share_now), borderColor: "#1b5e20", borderWidth: 2, opacity: 0.95 }
            : { color: DOWN_COLOUR, borderColor: "#a61e1e", borderWidth: 2, opacity: 1, borderType: "dashed" },
          label: s.up ? undefined : { show: true, formatter: `${siteName(s.id)} · ${t("site.down")}`, color: "#a61e1e" },
          tooltip: { formatter: siteTip(s) },
        })),
        label: { show: !narrow, position: "right", formatter: "{b}", fontSize: 11, fontWeight: "bold", color: "#222" },
      },
    ],
  });
  c.off("click");
  c.on("click", (e) => {
    if (e.seriesName === "sites") location.hash = `#/sites/${encodeURIComponent(e.data.id)}`;
  });
  const up = net.sites.filter((s) => s.up).length;
  const gpus = net.sites.reduce((a, s) => a + s.gpus, 0);
  const used = net.sites.reduce((a, s) => a + s.gpus_used, 0);
  const free = net.sites.reduce((a, s) => a + s.pools.reduce((b, p) => b + p.free, 0), 0);
  const flows = net.flows.filter((f) => f.path.length > 1).length;
  describe(el, t("network.map"), t("network.summary", { n: net.sites.length, up, gpus: int(gpus), used: int(used), free: int(free), flows }));
  document.querySelector("#map-data .scroll").innerHTML = html`<table class="grid"><thead><tr><th scope="col">${t("col.site")}</th>
    <th scope="col">${t("col.city")}</th><th scope="col">${t("col.state")}</th><th scope="col">${t("col.gpus_used")}</th>
    <th scope="col">${t("col.share")}</th></tr></thead><tbody>${raw(net.sites.map((s) => html`<tr><td>${siteName(s.id)}</td>
    <td>${cityName(s.city)}</td><td>${s.up ? t("site.up") : t("site.down")}</td><td class="n">${int(s.gpus_used)} / ${int(s.gpus)}</td>
    <td class="n">${pct(s.renewable_share_now)}</td></tr>`).join(""))}</tbody></table>`;
}

function basis(b) {
  const k = `basis.${b}`;
  const s = t(k);
  return s === k ? b : s;
}

function siteTip(s) {
  return html`<b>${siteName(s.id)}</b> (${cityName(s.city)}) ${s.up ? t("site.up") : t("site.down")}<br/>
    ${t("tip.gpus", { used: int(s.gpus_used), count: int(s.gpus) })}, ${t("tip.free", { free: int(s.pools.reduce((a, p) => a + p.free, 0)) })}<br/>
    ${t("card.renewables")} ${qty(s.renewables_kw_now)} kW: ${pct(s.renewable_share_now)} ${t("card.of", { basis: basis(s.renewable_share_basis) })}<br/>
    ${t("card.carbon")} ${num(s.carbon_kg_per_kwh_now, 3)} kg CO₂e/kWh, ${money(s.cny_per_kwh_now, 3)}/kWh`;
}

function drawCards(net) {
  const el = document.getElementById("cards");
  if (!el) return;
  el.innerHTML = net.sites.map((s) => html`
    <a class="card site-card ${s.up ? "" : "site-down"}" data-site="${s.id}" data-up="${s.up ? "up" : "down"}" href="#/sites/${encodeURIComponent(s.id)}">
      <h3>${siteName(s.id)} <small>${cityName(s.city)}</small>
        <span class="pill ${s.up ? "up" : "down"}" data-up="${s.up ? (s.drained ? "drained" : "up") : "down"}">${
          s.up ? (s.drained ? t("site.drained") : t("site.up")) : t("site.down")}</span></h3>
      ${raw(s.up ? "" : html`<p class="down-note">${t("card.down")}</p>`)}
      <table class="pools">
        ${raw(s.pools.map((p) => html`<tr><td>${p.gpu_type}</td>
          <td class="bar"><span style="width:${(100 * p.used) / Math.max(1, p.count)}%"></span></td>
          <td class="n">${t("card.free", { free: int(p.free), count: int(p.count) })}</td>
          <td class="n price">${t("card.per_gpu_h", { price: money(p.cny_per_gpu_h, 1) })}</td></tr>`).join(""))}
      </table>
      <dl>
        <dt>${t("card.pue")}</dt><dd>${num(s.pue, 2)}</dd>
        <dt>${t("card.load")}</dt><dd>${qty(s.load_kwh_this_hour)} kWh</dd>
        <dt>${t("card.renewables")}</dt><dd>${qty(s.renewables_kw_now)} kW
          <span class="swatch" style="background:${shareColour(s.renewable_share_now)}"></span><b class="share">${pct(s.renewable_share_now)}</b>
          <small>${t("card.of", { basis: basis(s.renewable_share_basis) })}</small></dd>
        ${raw(s.battery_kwh_now !== null ? html`<dt>${t("card.battery_share")}</dt><dd class="battery-share">${qty(s.battery_kwh_this_hour ?? 0)} kWh
          <b>${pct(s.battery_share_now ?? 0)}</b></dd>` : "")}
        ${raw(s.battery_kwh_now !== null ? html`<dt>${t("card.battery")}</dt><dd>${qty(s.battery_kwh_now)} kWh</dd>` : "")}
        <dt>${t("card.carbon")}</dt><dd>${num(s.carbon_kg_per_kwh_now, 3)} kg CO₂e/kWh</dd>
        <dt>${t("card.price")}</dt><dd>${money(s.cny_per_kwh_now, 3)}/kWh</dd>
      </dl>
    </a>`).join("");
}
