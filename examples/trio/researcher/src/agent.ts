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
  type AgentContext, capability, defineAgent, InvalidParamsError, LoomError, type LoomEvent, run, ToolError,
} from '@loom-agents/sdk';
import { corpusIndex, loadCorpus, search, type CorpusDoc, type SearchHit } from './search.js';
import { cityRegistry } from './cities.js';
import { splitSentences, tokenize } from './text.js';
import { getWeather, WeatherError, type WeatherReport } from './weather.js';

interface PlanTask { id: string; text: string; capability: string; city?: string; date?: string; query?: string }
interface Plan { kind: 'plan'; question: string; tasks: PlanTask[] }
interface Source { id: string; title: string; url: string | null; snippet?: string }
interface Finding {
  kind: 'finding';
  task_id: string;
  question: string;
  answer: string;
  sources: Source[];
  sentences: { text: string; source_id: string }[];
  weather?: WeatherReport;
  error?: string;
}

const SENTENCES_PER_DOC = 2;
const HITS_PER_TASK = 3;
const docsById = new Map<string, CorpusDoc>(loadCorpus().map((d) => [d.id, d]));
corpusIndex(); // build the index before the first call, not during it

const log = (message: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`); };

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
  description: 'Searches the web (offline: BM25 over the bundled corpus) and returns ranked hits with titles, snippets and source ids.',
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
    const hits = await search(query, { limit: limit ?? 5, ...(known ? { topics: [`city:${known.id}`] } : {}) });
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
        const path = error.code === 'UNKNOWN_CITY' ? '/city' : error.code === 'BAD_DATE' || error.code === 'DATE_OUT_OF_RANGE' ? '/date' : undefined;
        if (path) throw new InvalidParamsError(error.message, { path, cause: error });
        throw new ToolError(error.message, { cause: error });
      }
      throw error;
    }
  },
});

async function research(ctx: AgentContext, task: PlanTask, threadId: string): Promise<Finding> {
  const base = { kind: 'finding' as const, task_id: task.id, question: task.text };
  try {
    if (task.capability === 'weather.get' && task.city && task.date) {
      const weather = await ctx.invoke<WeatherReport>('weather.get', { city: task.city, date: task.date }, { threadId, timeoutMs: 10_000 });
      const month = new Date(`${task.date}T00:00:00Z`).toLocaleString('en', { month: 'long', timeZone: 'UTC' });
      const context = await ctx.invoke<{ hits: SearchHit[] }>('web.search', { query: `${weather.city} climate weather ${month}`, limit: 1, city: weather.city }, { threadId, timeoutMs: 10_000 });
      const weatherSource: Source = {
        id: `weather:${weather.city.toLowerCase().replace(/[^a-z0-9]+/g, '-')}:${weather.date}`,
        title: `${weather.source === 'synthetic' ? 'Bundled weather dataset (synthetic, from climate normals)' : 'Open-Meteo'}: ${weather.city}, ${weather.date}`,
        url: weather.source === 'synthetic' ? null : 'https://open-meteo.com/',
      };
      const sentences = [{ text: `${weather.summary}.`, source_id: weatherSource.id }];
      const sources: Source[] = [weatherSource];
      for (const hit of context.hits) {
        const doc = docsById.get(hit.id);
        for (const text of doc ? bestSentences(doc, `${weather.city} climate ${month} rain temperature`, 1) : [hit.snippet]) {
          sentences.push({ text, source_id: hit.id });
        }
        sources.push({ id: hit.id, title: hit.title, url: hit.url, snippet: hit.snippet });
      }
      return { ...base, answer: `${weather.summary}. ${weather.note}`, sources, sentences, weather };
    }
    const query = task.query ?? task.text;
    const { hits } = await ctx.invoke<{ hits: SearchHit[] }>('web.search', { query, limit: HITS_PER_TASK, ...(task.city ? { city: task.city } : {}) }, { threadId, timeoutMs: 10_000 });
    const sentences: Finding['sentences'] = [];
    for (const hit of hits) {
      const doc = docsById.get(hit.id);
      for (const text of doc ? bestSentences(doc, `${task.text} ${query}`) : [hit.snippet]) sentences.push({ text, source_id: hit.id });
    }
    return {
      ...base,
      answer: sentences.map((s) => s.text).join(' '),
      sources: hits.map((h) => ({ id: h.id, title: h.title, url: h.url, snippet: h.snippet })),
      sentences,
    };
  } catch (error) {
    const message = error instanceof LoomError ? `${error.code}: ${error.message}` : String(error);
    return { ...base, answer: '', sources: [], sentences: [], error: message };
  }
}

function isPlanTask(value: unknown): value is PlanTask {
  if (typeof value !== 'object' || value === null) return false;
  const task = value as Record<string, unknown>;
  const optional = (key: string): boolean => task[key] === undefined || typeof task[key] === 'string';
  return typeof task.id === 'string' && typeof task.text === 'string' && typeof task.capability === 'string'
    && optional('city') && optional('date') && optional('query');
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
    log(`thread ${threadId}: ${tasks.length} tasks${skipped > 0 ? ` (${skipped} malformed or beyond ${MAX_TASKS_PER_PLAN} ignored)` : ''}`);
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(MAX_CONCURRENT_TASKS, tasks.length) }, async () => {
      for (let i = next++; i < tasks.length; i = next++) {
        const task = tasks[i]!;
        try {
          const finding = await research(ctx, task, threadId);
          await ctx.emit(`thread.${threadId}.reply`, finding, { threadId });
          log(`thread ${threadId}: ${task.id} → ${finding.error ? `failed (${finding.error})` : `${finding.sources.length} sources`}`);
        } catch (error) {
          // One task's failure (a lost connection, say) must not end its worker: the others' tasks go on.
          log(`thread ${threadId}: ${task.id} → not reported (${error instanceof Error ? error.message : String(error)})`);
        }
      }
    }));
  },
});

if (import.meta.url === `file://${process.argv[1]}`) {
  await run(researcher, { agentId: process.env.LOOM_AGENT_ID ?? 'researcher' });
}
