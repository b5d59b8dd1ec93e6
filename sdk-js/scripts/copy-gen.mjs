#!/usr/bin/env node
// Copies the generated codec (src/gen/*.js, *.d.ts) next to the compiled output: tsc does not
// copy JavaScript sources. Usage: node scripts/copy-gen.mjs [outDir] (default dist/gen)
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const from = path.join(pkg, 'src/gen');
const to = path.resolve(pkg, process.argv[2] ?? 'dist/gen');
mkdirSync(to, { recursive: true });
for (const name of readdirSync(from)) {
  if (name.endsWith('.js') || name.endsWith('.d.ts')) copyFileSync(path.join(from, name), path.join(to, name));
}
