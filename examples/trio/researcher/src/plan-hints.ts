// Heuristics the Planner and the Researcher share to decide when a
// sub-question needs a weather lookup: which known cities it mentions, which
// day it is about, and whether it asks about the weather at all.

import { type CityInfo, cityRegistry } from './cities.js';
import { foldWithOffsets, normalizeText, tokenize } from './text.js';

export interface CityMention {
  id: string;
  /** Canonical name, e.g. "New York City". */
  name: string;
  country: string;
  /** The text as written, e.g. "NYC". */
  matched: string;
  /** Offset of the mention in the input. */
  index: number;
}

export interface ExtractCitiesOptions {
  /** Cities to look for (default: the bundled registry). */
  cities?: readonly CityInfo[];
}

interface CityPattern {
  city: CityInfo;
  regex: RegExp;
  length: number;
}

const patternCache = new WeakMap<readonly CityInfo[], CityPattern[]>();

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function cityPatterns(cities: readonly CityInfo[]): CityPattern[] {
  const cached = patternCache.get(cities);
  if (cached) return cached;
  const patterns: CityPattern[] = [];
  for (const city of cities) {
    for (const name of new Set([city.name, ...city.aliases])) {
      const folded = normalizeText(name);
      // Short all-capital aliases (LA, SF, HK, NYC) only match as capitals, so
      // "la" in "la plaza" or "sf" in prose does not count.
      const caseSensitive = name.length <= 4 && /^[\p{Lu}.]+$/u.test(name);
      const source = escapeRegex(caseSensitive ? name : folded).replace(/\\\.|\s+|-/g, (m) =>
        m === '\\.' ? '\\.?' : '[\\s-]+',
      );
      patterns.push({
        city,
        regex: new RegExp(`(?<![\\p{L}\\p{N}])${source}(?![\\p{L}\\p{N}])`, caseSensitive ? 'gu' : 'giu'),
        length: name.length,
      });
    }
  }
  patterns.sort((a, b) => b.length - a.length); // longest first: "New York City" before "New York"
  patternCache.set(cities, patterns);
  return patterns;
}

/**
 * Known cities mentioned in `text`, in order of first mention, each once.
 * Matching ignores case and diacritics and knows aliases ("NYC", "Lisboa",
 * "Bombay"); the longest name wins ("Rio de Janeiro", not "Rio").
 */
export function extractCities(text: string, options: ExtractCitiesOptions = {}): CityMention[] {
  const cities = options.cities ?? cityRegistry().cities;
  const { folded, offsets } = foldWithOffsets(text);
  const taken: Array<[number, number]> = [];
  const found: CityMention[] = [];
  for (const { city, regex } of cityPatterns(cities)) {
    regex.lastIndex = 0;
    for (let m = regex.exec(folded); m !== null; m = regex.exec(folded)) {
      const start = m.index;
      const end = start + m[0].length;
      if (m[0].length === 0) {
        regex.lastIndex++;
        continue;
      }
      if (taken.some(([s, e]) => start < e && end > s)) continue;
      taken.push([start, end]);
      const origStart = offsets[start]!;
      const origEnd = offsets[end]!;
      found.push({
        id: city.id,
        name: city.name,
        country: city.country,
        matched: text.slice(origStart, origEnd),
        index: origStart,
      });
    }
  }
  found.sort((a, b) => a.index - b.index);
  const seen = new Set<string>();
  return found.filter((c) => (seen.has(c.id) ? false : (seen.add(c.id), true)));
}

// ---- dates -----------------------------------------------------------------------

export type DateKind = 'iso' | 'relative' | 'weekday' | 'weekend' | 'day-month' | 'month-day';

export interface DateMention {
  /** The resolved day, YYYY-MM-DD. */
  date: string;
  /** The text as written, e.g. "on 5 December". */
  matched: string;
  index: number;
  kind: DateKind;
}

const MONTHS: Readonly<Record<string, number>> = {
  january: 1,
  jan: 1,
  february: 2,
  feb: 2,
  march: 3,
  mar: 3,
  april: 4,
  apr: 4,
  may: 5,
  june: 6,
  jun: 6,
  july: 7,
  jul: 7,
  august: 8,
  aug: 8,
  september: 9,
  sept: 9,
  sep: 9,
  october: 10,
  oct: 10,
  november: 11,
  nov: 11,
  december: 12,
  dec: 12,
};
const MONTH_RE =
  '(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\\.?';
const WEEKDAYS = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
const WEEKDAY_RE =
  '(sunday|monday|tuesday|wednesday|thursday|friday|saturday|mon|tues|tue|wed|thurs|thu|fri)';
const NUMBER_WORDS: Readonly<Record<string, number>> = {
  a: 1,
  an: 1,
  one: 1,
  two: 2,
  three: 3,
  four: 4,
  five: 5,
  six: 6,
  seven: 7,
  eight: 8,
  nine: 9,
  ten: 10,
  eleven: 11,
  twelve: 12,
  fourteen: 14,
  thirty: 30,
};

const DAY_MS = 86_400_000;

function toIso(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function isoToMs(iso: string): number {
  return Date.parse(`${iso}T00:00:00Z`);
}

/** The calendar date for (y, m, d), or undefined when it does not exist (31 February). */
function makeDate(y: number, m: number, d: number): string | undefined {
  if (m < 1 || m > 12 || d < 1 || d > 31) return undefined;
  const ms = Date.UTC(y, m - 1, d);
  const iso = toIso(ms);
  return Number(iso.slice(5, 7)) === m && Number(iso.slice(8, 10)) === d && Number(iso.slice(0, 4)) === y
    ? iso
    : undefined;
}

function normalizeToday(today: string | Date): string {
  if (today instanceof Date) {
    if (Number.isNaN(today.getTime())) throw new TypeError('extractDate: today is an invalid Date');
    return today.toISOString().slice(0, 10);
  }
  if (!/^\d{4}-\d{2}-\d{2}$/.test(today) || Number.isNaN(isoToMs(today))) {
    throw new TypeError(`extractDate: today must be a Date or "YYYY-MM-DD", got "${today}"`);
  }
  return today;
}

/** Day and month without a year: this year's if still ahead (or today), else next year's. */
function nextOccurrence(todayIso: string, month: number, day: number): string | undefined {
  const year = Number(todayIso.slice(0, 4));
  const thisYear = makeDate(year, month, day);
  if (thisYear && thisYear >= todayIso) return thisYear;
  // 29 February: look ahead up to 8 years for the next leap day.
  for (let y = year + 1; y <= year + 8; y++) {
    const d = makeDate(y, month, day);
    if (d) return d;
  }
  return undefined;
}

function weekdayIndex(word: string): number {
  return WEEKDAYS.findIndex((w) => w.startsWith(word.slice(0, 3)));
}

interface Rule {
  regex: RegExp;
  kind: DateKind;
  resolve(m: RegExpExecArray, today: string): string | undefined;
}

const addDays = (iso: string, n: number): string => toIso(isoToMs(iso) + n * DAY_MS);
const dayOfWeek = (iso: string): number => new Date(isoToMs(iso)).getUTCDay();
const B = '(?<![\\p{L}\\p{N}])'; // word start
const E = '(?![\\p{L}\\p{N}])'; // word end

const RULES: Rule[] = [
  {
    kind: 'iso',
    regex: new RegExp(`${B}(\\d{4})-(\\d{1,2})-(\\d{1,2})${E}`, 'gu'),
    resolve: (m) => makeDate(Number(m[1]), Number(m[2]), Number(m[3])),
  },
  {
    kind: 'relative',
    regex: new RegExp(`${B}(?:the\\s+)?day\\s+after\\s+tomorrow${E}`, 'gu'),
    resolve: (_m, today) => addDays(today, 2),
  },
  {
    kind: 'relative',
    regex: new RegExp(
      `${B}(today|tonight|this\\s+(?:morning|afternoon|evening)|tomorrow|yesterday)${E}`,
      'gu',
    ),
    resolve: (m, today) => {
      const w = m[1]!;
      return addDays(today, w === 'tomorrow' ? 1 : w === 'yesterday' ? -1 : 0);
    },
  },
  {
    kind: 'relative',
    regex: new RegExp(
      `${B}in\\s+(\\d{1,3}|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fourteen|thirty)\\s+(days?|weeks?)${E}`,
      'gu',
    ),
    resolve: (m, today) => {
      const n = /\d/.test(m[1]!) ? Number(m[1]) : NUMBER_WORDS[m[1]!]!;
      return addDays(today, m[2]!.startsWith('week') ? 7 * n : n);
    },
  },
  {
    kind: 'relative',
    regex: new RegExp(`${B}(?:next\\s+week|a\\s+week\\s+from\\s+(?:today|now))${E}`, 'gu'),
    resolve: (_m, today) => addDays(today, 7),
  },
  {
    kind: 'day-month',
    regex: new RegExp(
      `${B}(\\d{1,2})(?:st|nd|rd|th)?(?:\\s+of)?\\s+${MONTH_RE}(?:,?\\s+(\\d{4}))?${E}`,
      'gu',
    ),
    resolve: (m, today) => {
      const day = Number(m[1]);
      const month = MONTHS[m[2]!]!;
      return m[3] ? makeDate(Number(m[3]), month, day) : nextOccurrence(today, month, day);
    },
  },
  {
    kind: 'month-day',
    regex: new RegExp(
      `${B}${MONTH_RE}\\s+(\\d{1,2})(?:st|nd|rd|th)?(?![\\p{L}\\d:])(?:,?\\s+(\\d{4})${E})?`,
      'gu',
    ),
    resolve: (m, today) => {
      const month = MONTHS[m[1]!]!;
      const day = Number(m[2]);
      return m[3] ? makeDate(Number(m[3]), month, day) : nextOccurrence(today, month, day);
    },
  },
  {
    kind: 'weekend',
    regex: new RegExp(`${B}(?:this\\s+|next\\s+|the\\s+|over\\s+the\\s+|on\\s+the\\s+)?weekend${E}`, 'gu'),
    resolve: (m, today) => {
      const dow = dayOfWeek(today);
      const saturday = addDays(today, (6 - dow + 7) % 7); // today on a Saturday
      // "next weekend" on a Saturday or Sunday is the following one; otherwise the coming one.
      if (/^next/.test(m[0]) && (dow === 6 || dow === 0)) return addDays(today, dow === 6 ? 7 : 6);
      return dow === 0 && !/^next/.test(m[0]) ? today : saturday;
    },
  },
  {
    kind: 'weekday',
    regex: new RegExp(`${B}(?:(this|next|coming|on)\\s+)?${WEEKDAY_RE}${E}`, 'gu'),
    resolve: (m, today) => {
      const target = weekdayIndex(m[2]!);
      if (target < 0) return undefined;
      const ahead = (target - dayOfWeek(today) + 7) % 7;
      // "next Friday" is never today; "Friday" / "this Friday" is today when today is Friday.
      return addDays(today, m[1] === 'next' && ahead === 0 ? 7 : ahead);
    },
  },
];

/**
 * Every day mentioned in `text`, in order of appearance, resolved against
 * `today` (a Date, taken as its UTC date, or "YYYY-MM-DD").
 *
 * Understood: ISO dates ("2026-12-05"), "today", "tonight", "tomorrow",
 * "the day after tomorrow", "yesterday", "in 3 days", "in two weeks",
 * "next week" (+7 days), "5 December", "5th of Dec 2026", "December 5",
 * "Dec. 5th, 2026", weekday names ("on Friday", "this Friday" = the coming
 * one, today included; "next Friday" = never today) and "this weekend"
 * (the coming Saturday, or today on a Sunday; "next weekend" said on a
 * weekend is the following one). A day and month without a year
 * means the next such day from today on.
 */
export function extractDates(text: string, today: string | Date = new Date()): DateMention[] {
  const todayIso = normalizeToday(today);
  const { folded, offsets } = foldWithOffsets(text);
  const lower = folded.toLowerCase();
  const taken: Array<[number, number]> = [];
  const found: DateMention[] = [];
  for (const rule of RULES) {
    rule.regex.lastIndex = 0;
    for (let m = rule.regex.exec(lower); m !== null; m = rule.regex.exec(lower)) {
      const start = m.index;
      const end = start + m[0].length;
      if (taken.some(([s, e]) => start < e && end > s)) continue;
      const date = rule.resolve(m, todayIso);
      if (!date) continue;
      taken.push([start, end]);
      const origStart = offsets[start]!;
      found.push({ date, matched: text.slice(origStart, offsets[end]!), index: origStart, kind: rule.kind });
    }
  }
  return found.sort((a, b) => a.index - b.index);
}

/** The first day mentioned in `text` (see {@link extractDates}), or null. */
export function extractDate(text: string, today: string | Date = new Date()): DateMention | null {
  return extractDates(text, today)[0] ?? null;
}

// ---- weather intent ---------------------------------------------------------------

const WEATHER_WORDS = [
  'weather',
  'forecast',
  'temperature',
  'temperatures',
  'temp',
  'degrees',
  'celsius',
  'fahrenheit',
  'rain',
  'rainy',
  'raining',
  'rainfall',
  'umbrella',
  'raincoat',
  'snow',
  'snowing',
  'sunny',
  'sunshine',
  'sun',
  'cloudy',
  'clouds',
  'wind',
  'windy',
  'storm',
  'storms',
  'thunderstorm',
  'hot',
  'hotter',
  'cold',
  'colder',
  'warm',
  'warmer',
  'cool',
  'cooler',
  'chilly',
  'humid',
  'humidity',
  'precipitation',
  'drizzle',
  'fog',
  'foggy',
  'heat',
  'freezing',
  'pack',
  'packing',
  'wear',
  'jacket',
  'coat',
];
const WEATHER_STEMS = new Set(WEATHER_WORDS.flatMap((w) => tokenize(w, { stopWords: false })));

/** True when the text asks about weather or something that depends on it (what to wear or pack). */
export function mentionsWeather(text: string): boolean {
  return tokenize(text, { stopWords: false }).some((t) => WEATHER_STEMS.has(t));
}

export interface WeatherHint {
  /** True when the text is about weather and names at least one known city. */
  needsWeather: boolean;
  cities: CityMention[];
  /** The first day mentioned, or null (the caller picks a default, e.g. today). */
  date: DateMention | null;
  /** The lookups to make: every mentioned city on the mentioned day (empty without a date). */
  lookups: Array<{ city: string; date: string }>;
  reason: string;
}

/**
 * Decides whether a (sub-)question needs `weather.get`, and with which
 * arguments. Example: "Will it rain in Lisbon tomorrow?" with today
 * 2026-12-04 gives needsWeather true and lookups [{city: "Lisbon", date: "2026-12-05"}].
 */
export function weatherHint(text: string, today: string | Date = new Date()): WeatherHint {
  const cities = extractCities(text);
  const date = extractDate(text, today);
  const weatherish = mentionsWeather(text);
  const needsWeather = weatherish && cities.length > 0;
  const reason = !weatherish
    ? 'no weather words'
    : cities.length === 0
      ? 'weather words but no known city'
      : `weather in ${cities.map((c) => c.name).join(', ')}${date ? ` on ${date.date}` : ' (no day given)'}`;
  return {
    needsWeather,
    cities,
    date,
    lookups: needsWeather && date ? cities.map((c) => ({ city: c.name, date: date.date })) : [],
    reason,
  };
}
