// The city registry (data/cities.json): canonical names, countries, aliases,
// coordinates. Lookups are case- and diacritic-insensitive.

import { readFileSync } from 'node:fs';
import { dataFile } from './data-dir.js';
import { editDistance, nameKey } from './text.js';

export interface CityInfo {
  /** Stable slug, e.g. "sao-paulo". */
  id: string;
  /** Canonical display name, e.g. "São Paulo". */
  name: string;
  country: string;
  /** Other names people use: "NYC", "Lisboa", "Bombay". */
  aliases: string[];
  lat: number;
  lon: number;
}

interface RawCity extends CityInfo {
  climate?: unknown;
}

export class CityRegistry {
  readonly cities: readonly CityInfo[];
  private readonly byKey = new Map<string, CityInfo>();

  constructor(cities: readonly CityInfo[]) {
    this.cities = cities;
    for (const city of cities) {
      for (const name of [city.name, city.id, ...city.aliases]) {
        const key = nameKey(name);
        const existing = this.byKey.get(key);
        if (existing && existing.id !== city.id) {
          throw new Error(`City name "${name}" is ambiguous: ${existing.name} and ${city.name}`);
        }
        this.byKey.set(key, city);
      }
    }
  }

  static fromFile(path: string): CityRegistry {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as { cities: RawCity[] };
    return new CityRegistry(
      parsed.cities.map(({ id, name, country, aliases, lat, lon }) => ({
        id,
        name,
        country,
        aliases,
        lat,
        lon,
      })),
    );
  }

  /**
   * Finds a city by name or alias, ignoring case, diacritics and punctuation.
   * "Lisbon, Portugal" and "Lisbon (PT)" also resolve: the part before a comma
   * or parenthesis is tried when the whole string is not a known name.
   */
  resolve(name: string): CityInfo | undefined {
    const direct = this.byKey.get(nameKey(name));
    if (direct) return direct;
    const head = name.split(/[,(]/)[0];
    if (head !== undefined && head !== name) return this.byKey.get(nameKey(head));
    return undefined;
  }

  /** Known city names closest to `name` (edit distance on the folded key), best first. */
  suggest(name: string, max = 3): string[] {
    const key = nameKey(name);
    if (!key) return [];
    const scored: Array<{ city: CityInfo; d: number }> = [];
    for (const [k, city] of this.byKey) {
      const d = editDistance(key, k);
      const limit = Math.max(1, Math.floor(Math.min(key.length, k.length) / 3));
      if (d <= limit || (key.length >= 4 && k.startsWith(key))) scored.push({ city, d });
    }
    scored.sort((a, b) => a.d - b.d || a.city.name.localeCompare(b.city.name));
    const names: string[] = [];
    for (const { city } of scored) if (!names.includes(city.name)) names.push(city.name);
    return names.slice(0, max);
  }

  /** Canonical names, alphabetically. */
  names(): string[] {
    return this.cities.map((c) => c.name).sort((a, b) => a.localeCompare(b));
  }
}

let defaultRegistry: CityRegistry | undefined;

/** The registry loaded from the bundled data/cities.json (loaded once). */
export function cityRegistry(): CityRegistry {
  return (defaultRegistry ??= CityRegistry.fromFile(dataFile('cities.json')));
}
