// Prints the web client's compressed size (gzip level 9 of every JS and CSS file of dist/, what
// a browser downloads) and fails above the budget of issue 14: 150 KB of JavaScript and CSS.
//
// usage: node scripts/bundle-size.mjs   (from web/, after npm run build)
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const BUDGET = 150 * 1024;
const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (/\.(m?js|css)$/.test(name)) yield path;
  }
}

let total = 0;
let raw = 0;
let count = 0;
try {
  for (const path of files(dist)) {
    const bytes = readFileSync(path);
    const gz = gzipSync(bytes, { level: 9 }).length;
    console.log(`  ${relative(dist, path)}: ${bytes.length} bytes, ${gz} gzip`);
    total += gz;
    raw += bytes.length;
    count++;
  }
} catch (e) {
  console.error(`cannot read ${dist} (${e.message}): run npm run build first`);
  process.exit(1);
}
if (count === 0) {
  console.error(`no JavaScript or CSS in ${dist}: run npm run build first`);
  process.exit(1);
}
const kb = (n) => (n / 1024).toFixed(1);
console.log(`web client: ${kb(total)} KB gzip (${kb(raw)} KB raw) of JavaScript and CSS; budget ${kb(BUDGET)} KB`);
if (total > BUDGET) {
  console.error(`over budget by ${kb(total - BUDGET)} KB`);
  process.exit(1);
}
