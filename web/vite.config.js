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
  },
});
