// Builds the dashboard into the Python package (src/suanli/service/static/), which `suanli serve`
// serves at `/`; the built files are committed so that users need no Node.js.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: fileURLToPath(new URL("../src/suanli/service/static", import.meta.url)),
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 900,
    // ECharts and the map outlines change far less often than the dashboard's own code: chunks of
    // their own, so a rebuilt dashboard leaves the browser's copies of them valid.
    rollupOptions: {
      output: {
        manualChunks(id) {
          if (id.includes("/src/geo/")) return "china-map";
          if (id.includes("node_modules/echarts") || id.includes("node_modules/zrender")) return "echarts";
          return undefined;
        },
      },
    },
  },
});
