// Validate AsyncAPI documents with the official parser (@asyncapi/parser, installed next
// to this file by tests/asyncapi/parser.py). Usage: node validate.mjs FILE [FILE ...]
// Prints one JSON object per file on stdout:
//   {"file": ..., "version": "3.0.0" | null, "diagnostics": [{severity, code, message, path}]}
// severity is the parser's own: 0 error, 1 warning, 2 information, 3 hint.
// Exits 0 when no file has an error diagnostic, 1 otherwise, 2 on bad usage.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE [FILE ...]");
  process.exit(2);
}
const parser = new Parser();
let failed = false;
for (const file of files) {
  const text = await readFile(file, "utf8");
  const { document, diagnostics } = await parser.parse(text, { source: file });
  const shown = diagnostics.map((d) => ({
    severity: d.severity,
    code: String(d.code),
    message: d.message,
    path: d.path.join("/"),
  }));
  if (shown.some((d) => d.severity === 0)) failed = true;
  const version = document === undefined ? null : document.version();
  console.log(JSON.stringify({ file, version, diagnostics: shown }));
}
process.exit(failed ? 1 : 0);
