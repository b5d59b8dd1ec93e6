// Weather lookups for the Researcher: the bundled synthetic dataset
// (data/weather.csv, derived from climate normals — NOT observations), or
// Open-Meteo when LOOM_WEATHER_PROVIDER=open-meteo.

import { readFileSync } from 'node:fs';
import { type CityInfo, CityRegistry, cityRegistry } from './cities.js';
import { dataFile } from './data-dir.js';

export interface WeatherQuery {
  /** City name or alias, any case, with or without diacritics: "Lisbon", "NYC", "sao paulo". */
  city: string;
  /** ISO date, YYYY-MM-DD. */
  date: string;
}

export type WeatherSource = 'synthetic' | 'open-meteo';

export interface WeatherReport {
  /** Canonical city name, e.g. "São Paulo". */
  city: string;
  country: string;
  date: string;
  /** One of: sunny, partly cloudy, cloudy, fog, drizzle, light rain, rain, heavy rain, thunderstorm, sleet, snow, snow flurries. */
  condition: string;
  tempMinC: number;
  tempMaxC: number;
  precipMm: number;
  windKph: number;
  /** Mean relative humidity; null when the provider does not report it. */
  humidityPct: number | null;
  source: WeatherSource;
  /** A one-line human-readable summary, e.g. for the Writer. */
  summary: string;
  /** Caveat to cite with the data (the bundled dataset is synthetic). */
  note: string;
}

export type WeatherErrorCode =
  | 'MISSING_ARGUMENT'
  | 'UNKNOWN_CITY'
  | 'BAD_DATE'
  | 'DATE_OUT_OF_RANGE'
  | 'PROVIDER_CONFIG'
  | 'PROVIDER_ERROR';

/** A lookup failed; `message` says what was wrong and what would work. */
export class WeatherError extends Error {
  constructor(
    readonly code: WeatherErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'WeatherError';
  }
}

export const SYNTHETIC_NOTE =
  'Synthetic weather generated from long-term climate normals for this demo; not an observation or a forecast.';

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Checks `date` is a real calendar date in YYYY-MM-DD form; throws BAD_DATE otherwise. */
export function validateIsoDate(date: unknown): string {
  if (typeof date !== 'string' || date.trim() === '') {
    throw new WeatherError('MISSING_ARGUMENT', 'A date is required, as YYYY-MM-DD (e.g. "2026-12-05").');
  }
  const d = date.trim();
  const m = ISO_DATE.exec(d);
  if (!m) {
    throw new WeatherError(
      'BAD_DATE',
      `Invalid date "${date}": expected an ISO date YYYY-MM-DD, e.g. "2026-12-05".`,
      {
        date,
      },
    );
  }
  const parsed = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  if (parsed.toISOString().slice(0, 10) !== d) {
    throw new WeatherError('BAD_DATE', `Invalid date "${date}": there is no such day in the calendar.`, {
      date,
    });
  }
  return d;
}

function describe(r: Omit<WeatherReport, 'summary' | 'note'>): string {
  const parts = [
    `${r.city}, ${r.date}: ${r.condition}`,
    `${r.tempMinC.toFixed(1)} to ${r.tempMaxC.toFixed(1)} °C`,
    `precipitation ${r.precipMm.toFixed(1)} mm`,
    `wind ${r.windKph} km/h`,
  ];
  if (r.humidityPct !== null) parts.push(`humidity ${r.humidityPct}%`);
  return parts.join(', ');
}

function resolveCityOrThrow(registry: CityRegistry, city: unknown): CityInfo {
  if (typeof city !== 'string' || city.trim() === '') {
    throw new WeatherError('MISSING_ARGUMENT', 'A city is required, e.g. "Lisbon".');
  }
  const found = registry.resolve(city);
  if (found) return found;
  const suggestions = registry.suggest(city);
  const known = registry.names();
  const sample = known.slice(0, 8).join(', ');
  const hint = suggestions.length ? ` Did you mean ${suggestions.map((s) => `"${s}"`).join(' or ')}?` : '';
  throw new WeatherError(
    'UNKNOWN_CITY',
    `Unknown city "${city}".${hint} Known cities include ${sample}, … (${known.length} in all).`,
    { city, suggestions, knownCities: known },
  );
}

// ---- the bundled dataset ---------------------------------------------------

interface Row {
  condition: string;
  tempMinC: number;
  tempMaxC: number;
  precipMm: number;
  windKph: number;
  humidityPct: number;
}

const COLUMNS = [
  'city',
  'country',
  'date',
  'condition',
  'temp_min_c',
  'temp_max_c',
  'precip_mm',
  'wind_kph',
  'humidity_pct',
];

function parseCsvLine(line: string): string[] {
  if (!line.includes('"')) return line.split(',');
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** The synthetic daily weather table (data/weather.csv), indexed by city and date. */
export class WeatherTable {
  readonly registry: CityRegistry;
  /** First and last date present in the table. */
  readonly firstDate: string;
  readonly lastDate: string;
  private readonly rows = new Map<string, Map<string, Row>>(); // city id -> date -> row

  constructor(csv: string, registry: CityRegistry, source = 'weather.csv') {
    this.registry = registry;
    const lines = csv.split(/\r?\n/);
    const header = lines[0]?.trim();
    if (header !== COLUMNS.join(',')) {
      throw new Error(`${source}: unexpected header "${header}", expected "${COLUMNS.join(',')}"`);
    }
    let first = '';
    let last = '';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      const f = parseCsvLine(line);
      if (f.length !== COLUMNS.length)
        throw new Error(`${source}:${i + 1}: expected ${COLUMNS.length} fields, got ${f.length}`);
      const [cityName, , date, condition, tmin, tmax, precip, wind, humidity] = f as [
        string,
        string,
        string,
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      const city = registry.resolve(cityName);
      if (!city) throw new Error(`${source}:${i + 1}: city "${cityName}" is not in cities.json`);
      let byDate = this.rows.get(city.id);
      if (!byDate) this.rows.set(city.id, (byDate = new Map()));
      byDate.set(date, {
        condition,
        tempMinC: Number(tmin),
        tempMaxC: Number(tmax),
        precipMm: Number(precip),
        windKph: Number(wind),
        humidityPct: Number(humidity),
      });
      if (first === '' || date < first) first = date;
      if (last === '' || date > last) last = date;
    }
    this.firstDate = first;
    this.lastDate = last;
  }

  static fromFile(
    path: string = dataFile('weather.csv'),
    registry: CityRegistry = cityRegistry(),
  ): WeatherTable {
    return new WeatherTable(readFileSync(path, 'utf8'), registry, path);
  }

  /** Canonical names of the cities that have data, alphabetically. */
  cities(): string[] {
    return this.registry.cities
      .filter((c) => this.rows.has(c.id))
      .map((c) => c.name)
      .sort((a, b) => a.localeCompare(b));
  }

  /** Looks up one day; throws {@link WeatherError} with a helpful message. */
  lookup(query: WeatherQuery): WeatherReport {
    const date = validateIsoDate(query?.date);
    const city = resolveCityOrThrow(this.registry, query?.city);
    const byDate = this.rows.get(city.id);
    if (!byDate) {
      throw new WeatherError('UNKNOWN_CITY', `No weather data for ${city.name} in the bundled dataset.`, {
        city: city.name,
      });
    }
    const row = byDate.get(date);
    if (!row) {
      throw new WeatherError(
        'DATE_OUT_OF_RANGE',
        `No weather data for ${date}: the bundled dataset covers ${this.firstDate} to ${this.lastDate}.`,
        { date, firstDate: this.firstDate, lastDate: this.lastDate },
      );
    }
    const base = { city: city.name, country: city.country, date, ...row, source: 'synthetic' as const };
    return { ...base, summary: describe(base), note: SYNTHETIC_NOTE };
  }
}

let defaultTable: WeatherTable | undefined;

/** The bundled table, loaded on first use. */
export function weatherTable(): WeatherTable {
  return (defaultTable ??= WeatherTable.fromFile());
}

/** Synchronous lookup in the bundled synthetic dataset. */
export function lookupWeather(query: WeatherQuery): WeatherReport {
  return weatherTable().lookup(query);
}

// ---- Open-Meteo ---------------------------------------------------------------

export const WEATHER_PROVIDER_ENV = 'LOOM_WEATHER_PROVIDER';

type Env = Record<string, string | undefined>;
type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface WeatherOptions {
  /** Where LOOM_WEATHER_PROVIDER is read (default process.env). */
  env?: Env;
  /** fetch implementation for Open-Meteo (default globalThis.fetch). */
  fetch?: FetchLike;
  /** Table for the bundled provider (default: data/weather.csv). */
  table?: WeatherTable;
  /** "Today" for Open-Meteo range checks, YYYY-MM-DD (default: the current UTC date). */
  today?: string;
  timeoutMs?: number;
}

/** WMO weather interpretation codes (used by Open-Meteo) mapped to this module's conditions. */
export function conditionFromWmoCode(code: number): string {
  if (code === 0) return 'sunny';
  if (code === 1 || code === 2) return 'partly cloudy';
  if (code === 3) return 'cloudy';
  if (code === 45 || code === 48) return 'fog';
  if (code >= 51 && code <= 57) return 'drizzle';
  if (code === 61 || code === 80) return 'light rain';
  if (code === 63 || code === 81) return 'rain';
  if (code === 65 || code === 82) return 'heavy rain';
  if (code === 66 || code === 67) return 'sleet';
  if ((code >= 71 && code <= 77) || code === 85 || code === 86) return 'snow';
  if (code >= 95 && code <= 99) return 'thunderstorm';
  return 'unknown';
}

const DAY_MS = 86_400_000;
const addDays = (iso: string, n: number): string =>
  new Date(Date.parse(`${iso}T00:00:00Z`) + n * DAY_MS).toISOString().slice(0, 10);

async function openMeteoJson(
  doFetch: FetchLike,
  url: string,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  let response: Response;
  try {
    response = await doFetch(url, {
      headers: { Accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new WeatherError('PROVIDER_ERROR', `Open-Meteo request failed: ${(err as Error).message}`);
  }
  let body: Record<string, unknown> = {};
  try {
    body = (await response.json()) as Record<string, unknown>;
  } catch {
    /* fall through to the status check */
  }
  if (!response.ok) {
    const reason = typeof body.reason === 'string' ? `: ${body.reason}` : '';
    throw new WeatherError('PROVIDER_ERROR', `Open-Meteo failed: HTTP ${response.status}${reason}`, {
      status: response.status,
    });
  }
  return body;
}

async function geocode(name: string, doFetch: FetchLike, timeoutMs: number): Promise<CityInfo | undefined> {
  const body = await openMeteoJson(
    doFetch,
    `https://geocoding-api.open-meteo.com/v1/search?name=${encodeURIComponent(name)}&count=1&language=en&format=json`,
    timeoutMs,
  );
  const r = (
    body.results as Array<{ name: string; country?: string; latitude: number; longitude: number }> | undefined
  )?.[0];
  if (!r) return undefined;
  return {
    id: r.name.toLowerCase(),
    name: r.name,
    country: r.country ?? '',
    aliases: [],
    lat: r.latitude,
    lon: r.longitude,
  };
}

async function openMeteoWeather(query: WeatherQuery, options: WeatherOptions): Promise<WeatherReport> {
  const doFetch: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
  const timeoutMs = options.timeoutMs ?? 10_000;
  const date = validateIsoDate(query?.date);
  if (typeof query?.city !== 'string' || query.city.trim() === '') {
    throw new WeatherError('MISSING_ARGUMENT', 'A city is required, e.g. "Lisbon".');
  }
  const registry = options.table?.registry ?? cityRegistry();
  const city = registry.resolve(query.city) ?? (await geocode(query.city, doFetch, timeoutMs));
  if (!city) {
    throw new WeatherError(
      'UNKNOWN_CITY',
      `Unknown city "${query.city}": Open-Meteo's geocoder found no such place.`,
      {
        city: query.city,
      },
    );
  }
  const today = options.today ?? new Date().toISOString().slice(0, 10);
  const lastForecast = addDays(today, 15);
  if (date > lastForecast) {
    throw new WeatherError(
      'DATE_OUT_OF_RANGE',
      `No forecast for ${date}: Open-Meteo forecasts reach 16 days ahead (up to ${lastForecast}).`,
      { date, lastDate: lastForecast },
    );
  }
  // Recent past and the next 16 days come from the forecast API; older dates from the archive.
  const archive = date < addDays(today, -60);
  const host = archive
    ? 'https://archive-api.open-meteo.com/v1/archive'
    : 'https://api.open-meteo.com/v1/forecast';
  const daily =
    'weather_code,temperature_2m_max,temperature_2m_min,precipitation_sum,wind_speed_10m_max,relative_humidity_2m_mean';
  const url = `${host}?latitude=${city.lat}&longitude=${city.lon}&daily=${daily}&timezone=auto&start_date=${date}&end_date=${date}`;
  const body = await openMeteoJson(doFetch, url, timeoutMs);
  const d = body.daily as Record<string, Array<number | null> | undefined> | undefined;
  const first = (k: string): number | null => {
    const v = d?.[k]?.[0];
    return typeof v === 'number' ? v : null;
  };
  const tmax = first('temperature_2m_max');
  const tmin = first('temperature_2m_min');
  if (tmax === null || tmin === null) {
    throw new WeatherError('PROVIDER_ERROR', `Open-Meteo returned no data for ${city.name} on ${date}.`, {
      date,
    });
  }
  const code = first('weather_code');
  const humidity = first('relative_humidity_2m_mean');
  const base = {
    city: city.name,
    country: city.country,
    date,
    condition: code === null ? 'unknown' : conditionFromWmoCode(code),
    tempMinC: Math.round(tmin * 10) / 10,
    tempMaxC: Math.round(tmax * 10) / 10,
    precipMm: Math.round((first('precipitation_sum') ?? 0) * 10) / 10,
    windKph: Math.round(first('wind_speed_10m_max') ?? 0),
    humidityPct: humidity === null ? null : Math.round(humidity),
    source: 'open-meteo' as const,
  };
  return {
    ...base,
    summary: describe(base),
    note: archive
      ? "Observed (reanalysis) weather from Open-Meteo's archive."
      : 'Forecast or recent weather from Open-Meteo; wind is the daily maximum.',
  };
}

/**
 * Weather for one city on one day. Uses the bundled synthetic dataset unless
 * LOOM_WEATHER_PROVIDER=open-meteo. Rejects with {@link WeatherError}.
 */
export async function getWeather(query: WeatherQuery, options: WeatherOptions = {}): Promise<WeatherReport> {
  const env = options.env ?? process.env;
  const provider = (env[WEATHER_PROVIDER_ENV] ?? 'local').trim().toLowerCase() || 'local';
  switch (provider) {
    case 'local':
    case 'synthetic':
      return (options.table ?? weatherTable()).lookup(query);
    case 'open-meteo':
    case 'openmeteo':
      return openMeteoWeather(query, options);
    default:
      throw new WeatherError(
        'PROVIDER_CONFIG',
        `Unknown ${WEATHER_PROVIDER_ENV} "${provider}": use "local" (default, bundled synthetic data) or "open-meteo".`,
      );
  }
}

/** Canonical names of the cities in the bundled dataset. */
export function knownCities(): string[] {
  return weatherTable().cities();
}
