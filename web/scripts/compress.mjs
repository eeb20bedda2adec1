// After `vite build`: a gzip copy (level 9) of every built text file over 1 kB beside it
// (index-HASH.js -> index-HASH.js.gz), so the server can send the compressed bytes as they are
// with `Content-Encoding: gzip` to a browser that accepts them, without compressing per request.
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { constants, gzipSync } from "node:zlib";

const out = fileURLToPath(new URL("../../src/suanli/service/static", import.meta.url));
const TEXT = /\.(js|css|html|json|svg|txt)$/;

function walk(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

let before = 0;
let after = 0;
for (const file of walk(out).filter((f) => TEXT.test(f))) {
  const data = readFileSync(file);
  if (data.length < 1024) continue;
  // mtime 0 in the header: the same input gives the same bytes, so a rebuild changes nothing
  const gz = gzipSync(data, { level: constants.Z_BEST_COMPRESSION });
  gz.writeUInt32LE(0, 4);
  writeFileSync(`${file}.gz`, gz);
  before += data.length;
  after += gz.length;
}
console.log(`compress: ${(before / 1024).toFixed(0)} kB -> ${(after / 1024).toFixed(0)} kB gzipped (.gz beside each file)`);
