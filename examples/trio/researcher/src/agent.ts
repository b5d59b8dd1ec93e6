/**
 * The trio's Researcher (TypeScript). Serves `web.search` (BM25 over the bundled corpus, or a
 * real search API when configured) and `weather.get` (the bundled dataset, or Open-Meteo when
 * configured). Follows every thread's plan on `thread.*.broadcast`, answers each task by calling
 * those capabilities through the bridge (so the calls show up like any other), and publishes one
 * finding per task on `thread.<id>.reply`, quoting source sentences verbatim with their ids.
 *
 * Configuration (set by `loom run`): LOOM_URL, LOOM_AGENT_ID; LOOM_SEARCH_PROVIDER,
 * LOOM_WEATHER_PROVIDER (see src/search.ts and src/weather.ts).
 */
import {
  type AgentContext,
  capability,
  defineAgent,
  InvalidParamsError,
  LoomError,
  type LoomEvent,
  run,
  ToolError,
} from '@loom-agents/sdk';
import { corpusIndex, loadCorpus, search, type CorpusDoc, type SearchHit } from './search.js';
import { cityRegistry } from './cities.js';
import { relevantHits } from './relevance.js';
import { splitSentences, tokenize } from './text.js';
import {
  getWeather,
  WEATHER_PROVIDER_ENV,
  WeatherError,
  type WeatherReport,
  weatherTable,
} from './weather.js';
import { SEARCH_PROVIDER_ENV } from './search.js';

interface PlanTask {
  id: string;
  text: string;
  capability: string;
  city?: string;
  date?: string;
  query?: string;
  /** All the days asked (a weekend, a week, a month); `date` is the first. */
  dates?: string[];
  /** weather, packing, best-time, sightseeing, food, transport, history, general. */
  aspect?: string;
  /** For weather parts: cold, warm, temperature, rain, snow, sun, wind, clothes, best-time, weather. */
  asks?: string[];
  city_in_data?: boolean;
}
interface Plan {
  kind: 'plan';
  question: string;
  tasks: PlanTask[];
}
interface Source {
  id: string;
  title: string;
  url: string | null;
  snippet?: string;
}
/** A capability call made for a task, as the report's readers (and tests) can check it. */
interface Call {
  capability: string;
  args: Record<string, unknown>;
  outcome: string;
}
interface Finding {
  kind: 'finding';
  task_id: string;
  question: string;
  answer: string;
  sources: Source[];
  sentences: { text: string; source_id: string }[];
  /** The first day's weather (kept for readers of one day). */
  weather?: WeatherReport;
  /** Every day's weather found, in date order. */
  weather_days?: WeatherReport[];
  /** Plain statements of what the data does not have ("no weather data for Oslo in the bundled set"). */
  no_data?: string[];
  calls: Call[];
  aspect?: string;
  asks?: string[];
  error?: string;
}

/** Most days one weather task looks up (a month). */
const MAX_DAYS_PER_TASK = 31;

const SENTENCES_PER_DOC = 2;
const HITS_PER_TASK = 3;
const docsById = new Map<string, CorpusDoc>(loadCorpus().map((d) => [d.id, d]));
corpusIndex(); // build the index before the first call, not during it

const log = (message: string): void => {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
};

/** The sentences of a document that best cover the query terms, in document order. */
export function bestSentences(doc: CorpusDoc, query: string, count = SENTENCES_PER_DOC): string[] {
  const terms = new Set(tokenize(query));
  const scored = splitSentences(doc.text).map((text, index) => {
    const words = tokenize(text);
    const hits = new Set(words.filter((w) => terms.has(w))).size;
    return { text, index, score: hits + hits / Math.sqrt(Math.max(1, words.length)) - index * 0.01 };
  });
  return scored
    .sort((a, b) => b.score - a.score)
    .slice(0, count)
    .sort((a, b) => a.index - b.index)
    .map((s) => s.text);
}

export const webSearch = capability({
  name: 'web.search',
  description:
    'Searches the web (offline: BM25 over the bundled corpus) and returns ranked hits with titles, snippets and source ids.',
  tags: ['trio', 'search'],
  latencyHintMs: 5,
  input: {
    type: 'object',
    properties: {
      query: { type: 'string', minLength: 1, maxLength: 500, description: 'What to look for.' },
      limit: { type: 'integer', minimum: 1, maximum: 10, default: 5 },
      city: { type: 'string', description: 'Only documents about this city (bundled corpus only).' },
    },
    required: ['query'],
    additionalProperties: false,
  },
  output: { type: 'object', properties: { hits: { type: 'array' } }, required: ['hits'] },
  handler: async (input: unknown) => {
    const { query, limit, city } = input as { query: string; limit?: number; city?: string };
    const known = city ? cityRegistry().resolve(city) : undefined;
    if (city && !known && offlineSearch()) {
      // The bundled corpus has nothing about this place: no hits, rather than another city's.
      return { hits: [], note: `The bundled corpus has no documents about ${city}.` };
    }
    const hits = await search(query, {
      limit: limit ?? 5,
      ...(known ? { topics: [`city:${known.id}`] } : {}),
    });
    return { hits };
  },
});

export const weatherGet = capability({
  name: 'weather.get',
  description: 'Weather for a city on a date (offline: the bundled dataset, synthetic from climate normals).',
  tags: ['trio', 'weather'],
  latencyHintMs: 2,
  input: {
    type: 'object',
    properties: {
      city: { type: 'string', minLength: 1, description: 'City name or alias, e.g. "Lisbon" or "NYC".' },
      date: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: 'ISO date, e.g. 2026-12-05.' },
    },
    required: ['city', 'date'],
    additionalProperties: false,
  },
  handler: async (input: unknown) => {
    const { city, date } = input as { city: string; date: string };
    try {
      return await getWeather({ city, date });
    } catch (error) {
      if (error instanceof WeatherError) {
        const path =
          error.code === 'UNKNOWN_CITY'
            ? '/city'
            : error.code === 'BAD_DATE' || error.code === 'DATE_OUT_OF_RANGE'
              ? '/date'
              : undefined;
        if (path) throw new InvalidParamsError(error.message, { path, cause: error });
        throw new ToolError(error.message, { cause: error });
      }
      throw error;
    }
  },
});

const offlineSearch = (): boolean =>
  ['', 'local', 'corpus'].includes((process.env[SEARCH_PROVIDER_ENV] ?? '').trim().toLowerCase());
const offlineWeather = (): boolean =>
  ['', 'local', 'synthetic', 'bundled'].includes(
    (process.env[WEATHER_PROVIDER_ENV] ?? '').trim().toLowerCase(),
  );
const slug = (s: string): string =>
  s
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');

/** "2026-12-05", "2026-12-05 and 2026-12-06" or "2026-12-01 to 2026-12-31". */
function describeDays(days: readonly string[]): string {
  if (days.length === 1) return days[0]!;
  if (days.length === 2) return `${days[0]} and ${days[1]}`;
  return `${days[0]} to ${days[days.length - 1]}`;
}

async function researchWeather(ctx: AgentContext, task: PlanTask, threadId: string): Promise<Finding> {
  const calls: Call[] = [];
  const base = {
    kind: 'finding' as const,
    task_id: task.id,
    question: task.text,
    calls,
    aspect: task.aspect ?? 'weather',
    asks: task.asks ?? ['weather'],
  };
  const where = offlineWeather() ? 'in the bundled set' : 'from the weather provider';
  if (!task.city) {
    return {
      ...base,
      answer: '',
      sources: [],
      sentences: [],
      no_data: ['The question names no city, so there is no weather to look up; ask about a named city'],
    };
  }
  const days = [...new Set(task.dates && task.dates.length > 0 ? task.dates : task.date ? [task.date] : [])]
    .sort()
    .slice(0, MAX_DAYS_PER_TASK);
  if (days.length === 0) {
    return {
      ...base,
      answer: '',
      sources: [],
      sentences: [],
      no_data: [`No day was given for ${task.city}, so there is no weather to look up`],
    };
  }
  const found: WeatherReport[] = [];
  const unknownCity: string[] = [];
  const missingDays: string[] = [];
  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(4, days.length) }, async () => {
      for (let i = next++; i < days.length; i = next++) {
        const date = days[i]!;
        try {
          found.push(
            await ctx.invoke<WeatherReport>(
              'weather.get',
              { city: task.city, date },
              { threadId, timeoutMs: 10_000 },
            ),
          );
          calls.push({ capability: 'weather.get', args: { city: task.city, date }, outcome: 'ok' });
        } catch (error) {
          const message = error instanceof LoomError ? error.message : String(error);
          const code = error instanceof LoomError ? error.code : 'ERROR';
          calls.push({
            capability: 'weather.get',
            args: { city: task.city, date },
            outcome: `${code}: ${message}`,
          });
          if (/unknown city/i.test(message)) unknownCity.push(date);
          else if (/no weather data|covers|forecast/i.test(message)) missingDays.push(date);
          else failures.push(`${date}: ${message}`);
        }
      }
    }),
  );
  found.sort((a, b) => a.date.localeCompare(b.date));
  calls.sort((a, b) => String(a.args.date).localeCompare(String(b.args.date)));
  const noData: string[] = [];
  if (unknownCity.length > 0) {
    const known = cityRegistry().names();
    noData.push(`No weather data for ${task.city} ${where}`);
    noData.push(`The bundled set covers ${known.length} cities: ${known.join(', ')}`);
  }
  if (missingDays.length > 0) {
    const range = offlineWeather() ? ` (it covers ${weatherRange()})` : '';
    noData.push(
      `No weather data for ${found[0]?.city ?? task.city} on ${describeDays(missingDays.sort())} ${where}${range}`,
    );
  }
  if (failures.length > 0)
    noData.push(`The weather lookup failed for ${task.city} on ${failures.join('; ')}`);
  if (found.length === 0) {
    return { ...base, answer: noData.join('. '), sources: [], sentences: [], no_data: noData };
  }
  const city = found[0]!.city;
  const synthetic = found.every((w) => w.source === 'synthetic');
  const foundDays = found.map((w) => w.date);
  const weatherSource: Source = {
    id: `weather:${slug(city)}:${foundDays.length === 1 ? foundDays[0] : `${foundDays[0]}..${foundDays[foundDays.length - 1]}`}`,
    title: `${synthetic ? 'Bundled weather dataset (synthetic sample data from climate normals, not observations)' : 'Open-Meteo'}: ${city}, ${describeDays(foundDays)}`,
    url: synthetic ? null : 'https://open-meteo.com/',
  };
  const label = synthetic ? ' (synthetic sample data)' : '';
  const sentences: Finding['sentences'] = found
    .slice(0, 7)
    .map((w) => ({ text: `${w.summary}${label}.`, source_id: weatherSource.id }));
  const sources: Source[] = [weatherSource];
  // The city's own climate document, for context (never another city's).
  const month = new Date(`${foundDays[0]}T00:00:00Z`).toLocaleString('en', {
    month: 'long',
    timeZone: 'UTC',
  });
  const query = `${city} climate weather ${month}`;
  const context = await ctx.invoke<{ hits: SearchHit[] }>(
    'web.search',
    { query, limit: 1, city },
    { threadId, timeoutMs: 10_000 },
  );
  calls.push({
    capability: 'web.search',
    args: { query, limit: 1, city },
    outcome: `${context.hits.length} hits`,
  });
  const registry = cityRegistry();
  const { kept } = relevantHits(context.hits, {
    query,
    city: registry.resolve(city),
    cities: registry.cities,
    docs: docsById,
  });
  for (const hit of kept) {
    const doc = docsById.get(hit.id);
    for (const text of doc
      ? bestSentences(doc, `climate weather ${month} rain rainfall temperature season winter summer`, 1)
      : [hit.snippet]) {
      sentences.push({ text, source_id: hit.id });
    }
    sources.push({ id: hit.id, title: hit.title, url: hit.url, snippet: hit.snippet });
  }
  const note = found[0]!.note;
  return {
    ...base,
    answer: `${found.map((w) => w.summary).join('; ')}${label}. ${note}`,
    sources,
    sentences,
    weather: found[0],
    weather_days: found,
    ...(noData.length > 0 ? { no_data: noData } : {}),
  };
}

let cachedRange: string | undefined;
/** The bundled dataset's first and last day, e.g. "2026-01-01 to 2027-12-31". */
function weatherRange(): string {
  if (cachedRange) return cachedRange;
  const table = weatherTable();
  return (cachedRange = `${table.firstDate} to ${table.lastDate}`);
}

async function research(ctx: AgentContext, task: PlanTask, threadId: string): Promise<Finding> {
  const base = {
    kind: 'finding' as const,
    task_id: task.id,
    question: task.text,
    aspect: task.aspect ?? 'general',
  };
  const calls: Call[] = [];
  try {
    if (task.capability === 'weather.get') return await researchWeather(ctx, task, threadId);
    const query = task.query ?? task.text;
    const args = { query, limit: HITS_PER_TASK + 2, ...(task.city ? { city: task.city } : {}) };
    const result = await ctx.invoke<{ hits: SearchHit[]; note?: string }>('web.search', args, {
      threadId,
      timeoutMs: 10_000,
    });
    calls.push({ capability: 'web.search', args, outcome: `${result.hits.length} hits` });
    const registry = cityRegistry();
    const known = task.city ? registry.resolve(task.city) : undefined;
    if (task.city && !known && offlineSearch()) {
      return {
        ...base,
        calls,
        answer: '',
        sources: [],
        sentences: [],
        no_data: [
          `The bundled data has no documents about ${task.city} (it covers ${registry.cities.length} cities)`,
        ],
      };
    }
    const { kept, dropped } = relevantHits(result.hits, {
      query: `${task.text} ${query}`,
      ...(known ? { city: known } : {}),
      cities: registry.cities,
      docs: docsById,
    });
    for (const d of dropped) log(`thread ${threadId}: ${task.id} dropped ${d.id} (${d.reason})`);
    const hits = kept.slice(0, HITS_PER_TASK);
    if (hits.length === 0) {
      return {
        ...base,
        calls,
        answer: '',
        sources: [],
        sentences: [],
        no_data: [
          `Nothing in the ${offlineSearch() ? 'bundled corpus' : 'search results'} answers this${task.city ? ` for ${task.city}` : ''}`,
        ],
      };
    }
    const sentences: Finding['sentences'] = [];
    for (const hit of hits) {
      const doc = docsById.get(hit.id);
      for (const text of doc ? bestSentences(doc, `${task.text} ${query}`) : [hit.snippet])
        sentences.push({ text, source_id: hit.id });
    }
    return {
      ...base,
      calls,
      answer: sentences.map((s) => s.text).join(' '),
      sources: hits.map((h) => ({ id: h.id, title: h.title, url: h.url, snippet: h.snippet })),
      sentences,
    };
  } catch (error) {
    const message = error instanceof LoomError ? `${error.code}: ${error.message}` : String(error);
    return { ...base, calls, answer: '', sources: [], sentences: [], error: message };
  }
}

function isPlanTask(value: unknown): value is PlanTask {
  if (typeof value !== 'object' || value === null) return false;
  const task = value as Record<string, unknown>;
  const optional = (key: string): boolean => task[key] === undefined || typeof task[key] === 'string';
  const strings = (key: string, max: number): boolean =>
    task[key] === undefined ||
    (Array.isArray(task[key]) &&
      (task[key] as unknown[]).length <= max &&
      (task[key] as unknown[]).every((v) => typeof v === 'string'));
  return (
    typeof task.id === 'string' &&
    typeof task.text === 'string' &&
    typeof task.capability === 'string' &&
    optional('city') &&
    optional('date') &&
    optional('query') &&
    optional('aspect') &&
    strings('dates', MAX_DAYS_PER_TASK) &&
    strings('asks', 16) &&
    (task.city_in_data === undefined || typeof task.city_in_data === 'boolean')
  );
}

/** Tasks of one plan researched at once. */
const MAX_CONCURRENT_TASKS = 4;
/** Tasks of one plan researched at all (the bundled planner makes at most 6). */
const MAX_TASKS_PER_PLAN = 16;

export const researcher = defineAgent({
  name: 'researcher',
  topics: ['thread.*.broadcast'],
  capabilities: [webSearch, weatherGet],
  onEvent: async (event: LoomEvent, ctx: AgentContext) => {
    const data = event.json<{ kind?: string }>();
    if (data.kind !== 'plan') return;
    const plan = data as Plan;
    const threadId = event.threadId || event.topic.split('.')[1] || '';
    if (!Array.isArray(plan.tasks)) {
      log(`thread ${threadId}: a plan without a task list, ignored`);
      return;
    }
    // Anyone on the thread can publish a plan: well-formed tasks only, a bounded number, a few at a time.
    const valid = (plan.tasks as unknown[]).filter(isPlanTask);
    const tasks = valid.slice(0, MAX_TASKS_PER_PLAN);
    const skipped = plan.tasks.length - tasks.length;
    log(
      `thread ${threadId}: ${tasks.length} tasks${skipped > 0 ? ` (${skipped} malformed or beyond ${MAX_TASKS_PER_PLAN} ignored)` : ''}`,
    );
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(MAX_CONCURRENT_TASKS, tasks.length) }, async () => {
        for (let i = next++; i < tasks.length; i = next++) {
          const task = tasks[i]!;
          try {
            const finding = await research(ctx, task, threadId);
            await ctx.emit(`thread.${threadId}.reply`, finding, { threadId });
            log(
              `thread ${threadId}: ${task.id} → ${finding.error ? `failed (${finding.error})` : `${finding.sources.length} sources`}`,
            );
          } catch (error) {
            // One task's failure (a lost connection, say) must not end its worker: the others' tasks go on.
            log(
              `thread ${threadId}: ${task.id} → not reported (${error instanceof Error ? error.message : String(error)})`,
            );
          }
        }
      }),
    );
  },
});

if (import.meta.url === `file://${process.argv[1]}`) {
  await run(researcher, { agentId: process.env.LOOM_AGENT_ID ?? 'researcher' });
}
