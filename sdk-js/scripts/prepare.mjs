#!/usr/bin/env node
// npm's "prepare" script: makes dist/ (the compiled package) however the package is installed.
//  - `npm pack` / `npm publish`: a clean build, so the tarball ships dist/ and installs without a build.
//  - `npm install <path to sdk-js>` from another project: npm links the folder and runs prepare in it;
//    this folder then needs its own node_modules (the build tools, and the runtime dependencies that
//    dist/ imports), which this script installs from package-lock.json when they are missing.
//  - `npm install` / `npm ci` in this folder, and git dependencies: builds when dist/ is stale.
// Builds only when dist/ is missing or older than a source (except for pack/publish). Idempotent.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// A packed copy (the tarball npm pack made, installed somewhere) ships dist/ and no build inputs.
if (!existsSync(path.join(pkg, 'tsconfig.json'))) process.exit(0);
const tsc = path.join(pkg, 'node_modules', 'typescript', 'bin', 'tsc');
const packing = ['pack', 'publish'].includes(process.env.npm_command ?? '');

function run(command, args) {
  const result = spawnSync(command, args, { cwd: pkg, stdio: ['ignore', 'inherit', 'inherit'], env: cleanEnv() });
  if (result.status !== 0) {
    console.error(`@loom-agents/sdk prepare: ${path.basename(command)} ${args.join(' ')} failed (${result.error?.message ?? `exit ${result.status}`})`);
    process.exit(result.status || 1);
  }
}

// The npm that runs this script passes its own settings as npm_config_* (among them the prefix of
// the project being installed, and --omit=dev): the nested install must not inherit them, or it
// would install into that project, or without the build tools. Registry, proxy and TLS settings stay.
function cleanEnv() {
  const keep = /^npm_config_(.*registry.*|.*_auth.*|.*authtoken.*|cache|cafile|ca|cert|key|strict_ssl|proxy|https_proxy|noproxy|userconfig|globalconfig|fetch_.*|prefer_offline|offline)$/i;
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || keep.test(k)));
}

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

if (!existsSync(tsc)) {
  console.error('@loom-agents/sdk prepare: installing the build tools (npm ci)');
  const npm = process.env.npm_execpath;
  const [command, prefix] = npm && npm.endsWith('.js') ? [process.execPath, [npm]] : [npm || 'npm', []];
  run(command, [...prefix, 'ci', '--include=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error']);
}

const built = path.join(pkg, 'dist', 'mod.js');
const inputs = ['src', 'package.json', 'tsconfig.json', 'tsconfig.base.json', 'scripts/copy-gen.mjs'].map((p) => path.join(pkg, p));
const stale = packing || !existsSync(built)
  || inputs.some((p) => (statSync(p).isDirectory() ? newestMtime(p) : statSync(p).mtimeMs) > statSync(built).mtimeMs);
if (stale) {
  if (packing) rmSync(path.join(pkg, 'dist'), { recursive: true, force: true });
  console.error('@loom-agents/sdk prepare: building dist/');
  run(process.execPath, [tsc, '-p', 'tsconfig.json']);
  run(process.execPath, [path.join(pkg, 'scripts', 'copy-gen.mjs')]);
}
