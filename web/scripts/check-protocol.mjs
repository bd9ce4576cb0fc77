// Checks web/src/protocol.ts against docs/protocol.md, so the web client's protocol types cannot
// drift from the document (which crates/wire/tests/protocol_doc.rs checks against the Rust wire
// types): every ```json example of the document is type-checked with tsc, a request (top-level
// `type` a request type) as a ClientFrame, anything else as a ServerFrame; and the requests,
// replies, events and error codes the document names (its `###` sections) must be exactly the
// members of the TypeScript unions, no more, no fewer. Failures name the document's line.
//
// usage: node scripts/check-protocol.mjs   (from web/; exits non-zero on any mismatch)
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const docPath = join(web, "..", "docs", "protocol.md");
const doc = readFileSync(docPath, "utf8").split("\n");

// The `###` headings of each numbered `##` section, and the json blocks with their lines.
const sections = { requests: [], replies: [], events: [], errors: [] };
const sectionOf = { "13": "requests", "14": "replies", "15": "events", "16": "errors" };
const blocks = [];
let current = null;
let block = null;
const failures = [];
doc.forEach((line, i) => {
  if (block) {
    if (line.startsWith("```")) {
      blocks.push(block);
      block = null;
    } else block.text += line + "\n";
    return;
  }
  if (line.startsWith("```json")) {
    block = { line: i + 1, text: "" };
    return;
  }
  const h2 = /^## (\d+)\./.exec(line);
  if (h2) current = sectionOf[h2[1]] ?? null;
  const h3 = /^### ([a-z_]+)(?: \((?:reply|event)\))?\s*$/.exec(line);
  if (h3 && current) sections[current].push(h3[1]);
});

for (const [name, list] of Object.entries(sections)) {
  if (list.length === 0) failures.push(`${docPath}: found no ### sections of ${name}`);
}
const requestTypes = new Set(sections.requests);

// One statement per line, so that a tsc error's line maps back to the document's.
const out = [
  'import type { ClientFrame, ServerFrame, RequestType, ReplyType, EventType, ErrorCode } from "../src/protocol";',
];
const docLine = new Map();
for (const b of blocks) {
  let value;
  try {
    value = JSON.parse(b.text);
  } catch (e) {
    failures.push(`docs/protocol.md:${b.line}: not JSON: ${e.message}`);
    continue;
  }
  const as = requestTypes.has(value?.type) ? "ClientFrame" : "ServerFrame";
  docLine.set(out.length + 1, b.line);
  out.push(`export const example${b.line}: ${as} = ${JSON.stringify(value)};`);
}
// Record<Union, true> with exactly the document's names: a name the union lacks is an excess
// property, a union member the document does not name a missing one.
const record = (type, names) => {
  docLine.set(out.length + 1, `the ### sections of ${type}`);
  const fields = names.map((n) => `${JSON.stringify(n)}: true`).join(", ");
  out.push(`export const all${type}: Record<${type}, true> = { ${fields} };`);
};
record("RequestType", sections.requests);
record("ReplyType", sections.replies);
record("EventType", sections.events);
record("ErrorCode", sections.errors);

const dir = join(web, ".check");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "protocol-examples.ts"), out.join("\n") + "\n");
writeFileSync(
  join(dir, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: "es2022",
      module: "esnext",
      moduleResolution: "bundler",
      skipLibCheck: true,
      types: [],
    },
    files: ["protocol-examples.ts"],
  }),
);

const tsc = join(web, "node_modules", ".bin", "tsc");
try {
  execFileSync(tsc, ["-p", join(dir, "tsconfig.json"), "--pretty", "false"], { encoding: "utf8" });
} catch (e) {
  const output = `${e.stdout ?? ""}${e.stderr ?? ""}`;
  if (!output.trim()) failures.push(`running ${relative(web, tsc)} failed: ${e.message} (run npm ci in web/)`);
  for (const line of output.split("\n").filter(Boolean)) {
    const m = /protocol-examples\.ts\((\d+),\d+\): (.*)/.exec(line);
    const at = m && docLine.get(Number(m[1]));
    failures.push(at ? `docs/protocol.md:${typeof at === "number" ? at : ` ${at}`}: ${m[2]}` : line);
  }
}

if (failures.length) {
  console.error(`protocol.ts does not match docs/protocol.md (${failures.length} problems):`);
  for (const f of failures) console.error("  " + f);
  process.exit(1);
}
console.log(
  `protocol.ts matches docs/protocol.md: ${blocks.length} examples type-check; ` +
    `${sections.requests.length} requests, ${sections.replies.length} replies, ` +
    `${sections.events.length} events, ${sections.errors.length} error codes`,
);
