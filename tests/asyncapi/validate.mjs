// Parses an AsyncAPI document with the official parser and prints its diagnostics as JSON
// lines; exits 1 when any has severity error (0) or no document came out, 2 on a bad call.
import { readFile } from 'node:fs/promises';
import { Parser } from '@asyncapi/parser';

const path = process.argv[2];
if (!path) {
  console.error('usage: node validate.mjs <asyncapi.yaml>');
  process.exit(2);
}
const SEVERITY = ['error', 'warning', 'info', 'hint'];
const { document, diagnostics } = await new Parser().parse(await readFile(path, 'utf8'), {
  source: path,
});
for (const d of diagnostics) {
  console.log(
    JSON.stringify({
      severity: SEVERITY[d.severity] ?? String(d.severity),
      code: d.code,
      message: d.message,
      path: d.path.join('.'),
    }),
  );
}
const failed = !document || diagnostics.some((d) => d.severity === 0);
process.exit(failed ? 1 : 0);
