// ECharts, tree-shaken: only the charts and components the dashboard draws are bundled
// (echarts/core), and China's province outlines ship inside the bundle (scripts/china-geojson.mjs).
import { BarChart, EffectScatterChart, LineChart, LinesChart, ScatterChart } from "echarts/charts";
import {
  GeoComponent, GridComponent, LegendComponent, MarkAreaComponent, MarkLineComponent,
  TooltipComponent,
} from "echarts/components";
import * as echarts from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";
import china from "./geo/china.json";

echarts.use([
  BarChart, EffectScatterChart, LineChart, LinesChart, ScatterChart, GeoComponent, GridComponent, LegendComponent,
  MarkAreaComponent, MarkLineComponent, TooltipComponent, CanvasRenderer,
]);
echarts.registerMap("china", china);

const live = new Set();

// A chart in `el`, replacing one that was there; resized with the window.
export function chart(el) {
  const old = echarts.getInstanceByDom(el);
  if (old) return old;
  const c = echarts.init(el, null, { renderer: "canvas" });
  live.add(c);
  return c;
}

// A chart's text alternative: the chart box is an image (role=img) with a label, and a summary
// in words follows it (`summary`: text), so a screen reader (and a test) can read what it shows.
export function describe(el, label, summary) {
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", label);
  let p = el.nextElementSibling;
  if (!p || !p.classList.contains("chart-summary")) {
    p = document.createElement("p");
    p.className = "chart-summary";
    el.after(p);
  }
  p.textContent = summary;
}

// Charts of a view that is left: disposed, so their timers and listeners go with them.
export function disposeAll() {
  for (const c of live) c.dispose();
  live.clear();
}

window.addEventListener("resize", () => {
  for (const c of live) c.resize();
});
