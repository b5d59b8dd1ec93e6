// Locates the bundled data directory (examples/trio/data).

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Environment variable that points at a data directory other than the bundled one. */
export const DATA_DIR_ENV = 'LOOM_TRIO_DATA_DIR';

let cached: string | undefined;

/**
 * The directory holding corpus.jsonl, weather.csv and cities.json: $LOOM_TRIO_DATA_DIR
 * if set, else the nearest `data/` folder above this module (works from src/ and dist/src/).
 */
export function dataDir(env: Record<string, string | undefined> = process.env): string {
  const fromEnv = env[DATA_DIR_ENV];
  if (fromEnv) return resolve(fromEnv);
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'data');
    if (existsSync(join(candidate, 'cities.json'))) return (cached = candidate);
    dir = dirname(dir);
  }
  throw new Error(
    `Cannot find the trio data directory (with cities.json, corpus.jsonl, weather.csv) above ${fileURLToPath(import.meta.url)}; set ${DATA_DIR_ENV}.`,
  );
}

/** Path of a file in the data directory. */
export function dataFile(name: string): string {
  return join(dataDir(), name);
}
