// Search for the Researcher: BM25F (Okapi BM25 over title, topics and body)
// over the bundled corpus, and optional web search backends (Brave, Tavily)
// that are used only when configured through environment variables.

import { readFileSync } from 'node:fs';
import { dataFile } from './data-dir.js';
import { splitSentences, tokenize } from './text.js';

/** One corpus document (a line of data/corpus.jsonl). */
export interface CorpusDoc {
  id: string;
  title: string;
  url: string;
  topics: string[];
  text: string;
}

/** A ranked result. `id` is the corpus id, or the URL for web results. */
export interface SearchHit {
  id: string;
  title: string;
  url: string;
  /** The best-matching sentence(s) of the document (or the web result's description). */
  snippet: string;
  score: number;
  /** Where the hit came from: "corpus" for the bundled corpus, else the web provider's name. */
  source: SearchSource;
}

export type SearchSource = 'corpus' | 'brave' | 'tavily';

export interface SearchOptions {
  /** Maximum number of hits (default 5). */
  limit?: number;
  /** Only documents carrying all these topics, e.g. ["city:lisbon"]. Corpus only. */
  topics?: string[];
}

export interface Bm25Options {
  k1?: number;
  b?: number;
  /** Weight of a title term relative to a body term (default 2.5). */
  titleBoost?: number;
  /** Weight of a topic term relative to a body term (default 1.5). */
  topicBoost?: number;
}

// ---- corpus loading --------------------------------------------------------

/** Parses corpus JSONL text, checking each line's shape. */
export function parseCorpus(jsonl: string, source = 'corpus'): CorpusDoc[] {
  const docs: CorpusDoc[] = [];
  const seen = new Set<string>();
  jsonl.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new Error(`${source}:${i + 1}: invalid JSON (${(err as Error).message})`);
    }
    const d = value as Partial<CorpusDoc>;
    for (const field of ['id', 'title', 'url', 'text'] as const) {
      if (typeof d[field] !== 'string' || d[field] === '') {
        throw new Error(`${source}:${i + 1}: "${field}" must be a non-empty string`);
      }
    }
    if (!Array.isArray(d.topics) || !d.topics.every((t) => typeof t === 'string')) {
      throw new Error(`${source}:${i + 1}: "topics" must be an array of strings`);
    }
    if (seen.has(d.id!)) throw new Error(`${source}:${i + 1}: duplicate id ${d.id}`);
    seen.add(d.id!);
    docs.push({ id: d.id!, title: d.title!, url: d.url!, topics: d.topics, text: d.text! });
  });
  return docs;
}

/** Reads a corpus file (default: the bundled data/corpus.jsonl). */
export function loadCorpus(path: string = dataFile('corpus.jsonl')): CorpusDoc[] {
  return parseCorpus(readFileSync(path, 'utf8'), path);
}

// ---- BM25 index ---------------------------------------------------------------

interface Posting {
  doc: number;
  body: number;
  title: number;
  topic: number;
}

interface DocStats {
  bodyLen: number;
  titleLen: number;
  topicLen: number;
  /** Sentences and their terms, computed on first use (only hits need them). */
  sentences?: string[];
  sentenceTerms?: Array<Set<string>>;
}

function topicText(topics: readonly string[]): string {
  // "city:sao-paulo" -> "city sao paulo"
  return topics.join(' ').replace(/[:_-]/g, ' ');
}

function countTerms(terms: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of terms) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}

const SNIPPET_MAX = 360;

/**
 * An in-memory BM25F index. Built once from the documents; searching is
 * synchronous and allocation-light.
 */
export class SearchIndex {
  readonly docs: readonly CorpusDoc[];
  readonly k1: number;
  readonly b: number;
  readonly titleBoost: number;
  readonly topicBoost: number;
  private readonly postings = new Map<string, Posting[]>();
  private readonly stats: DocStats[] = [];
  private readonly avgBody: number;
  private readonly avgTitle: number;
  private readonly avgTopic: number;

  constructor(docs: readonly CorpusDoc[], options: Bm25Options = {}) {
    this.docs = docs;
    this.k1 = options.k1 ?? 1.2;
    this.b = options.b ?? 0.75;
    this.titleBoost = options.titleBoost ?? 2.5;
    this.topicBoost = options.topicBoost ?? 1.5;
    let sumBody = 0;
    let sumTitle = 0;
    let sumTopic = 0;
    docs.forEach((doc, i) => {
      const body = tokenize(doc.text);
      const title = tokenize(doc.title);
      const topic = tokenize(topicText(doc.topics));
      this.stats.push({ bodyLen: body.length, titleLen: title.length, topicLen: topic.length });
      sumBody += body.length;
      sumTitle += title.length;
      sumTopic += topic.length;
      const b = countTerms(body);
      const t = countTerms(title);
      const p = countTerms(topic);
      for (const term of new Set([...b.keys(), ...t.keys(), ...p.keys()])) {
        let list = this.postings.get(term);
        if (!list) this.postings.set(term, (list = []));
        list.push({ doc: i, body: b.get(term) ?? 0, title: t.get(term) ?? 0, topic: p.get(term) ?? 0 });
      }
    });
    const n = Math.max(1, docs.length);
    this.avgBody = sumBody / n || 1;
    this.avgTitle = sumTitle / n || 1;
    this.avgTopic = sumTopic / n || 1;
  }

  get size(): number {
    return this.docs.length;
  }

  /** Number of distinct indexed terms. */
  get vocabularySize(): number {
    return this.postings.size;
  }

  /** Inverse document frequency (BM25 variant that never goes negative). */
  idf(term: string): number {
    const df = this.postings.get(term)?.length ?? 0;
    const n = this.docs.length;
    return Math.log(1 + (n - df + 0.5) / (df + 0.5));
  }

  search(query: string, options: SearchOptions = {}): SearchHit[] {
    const limit = options.limit ?? 5;
    if (limit <= 0) return [];
    const qterms = countTerms(tokenize(query));
    if (qterms.size === 0) return [];
    const requiredTopics = options.topics ?? [];

    const scores = new Map<number, number>();
    const { k1, b } = this;
    for (const [term, qtf] of qterms) {
      const list = this.postings.get(term);
      if (!list) continue;
      const idf = this.idf(term);
      for (const p of list) {
        const s = this.stats[p.doc]!;
        // BM25F: length-normalise each field, weight, then saturate once.
        const tf =
          p.body / (1 - b + (b * s.bodyLen) / this.avgBody) +
          (this.titleBoost * p.title) / (1 - b + (b * s.titleLen) / this.avgTitle) +
          (this.topicBoost * p.topic) / (1 - b + (b * s.topicLen) / this.avgTopic);
        const w = (idf * (tf * (k1 + 1))) / (tf + k1);
        scores.set(p.doc, (scores.get(p.doc) ?? 0) + qtf * w);
      }
    }

    const ranked = [...scores.entries()]
      .filter(([doc]) => requiredTopics.every((t) => this.docs[doc]!.topics.includes(t)))
      .sort((x, y) => y[1] - x[1] || this.docs[x[0]]!.id.localeCompare(this.docs[y[0]]!.id))
      .slice(0, limit);

    return ranked.map(([doc, score]) => {
      const d = this.docs[doc]!;
      return {
        id: d.id,
        title: d.title,
        url: d.url,
        snippet: this.snippet(doc, [...qterms.keys()]),
        score: Math.round(score * 1000) / 1000,
        source: 'corpus' as const,
      };
    });
  }

  /**
   * The best sentence, or pair of sentences, of a document for the query
   * terms: the choice that covers the most query weight (sum of idf of the
   * distinct terms present) within SNIPPET_MAX characters; a single sentence
   * wins ties, then the earlier one. A gap between two sentences shows as "…".
   */
  private snippet(doc: number, terms: readonly string[]): string {
    const stats = this.stats[doc]!;
    if (!stats.sentences || !stats.sentenceTerms) {
      stats.sentences = splitSentences(this.docs[doc]!.text);
      stats.sentenceTerms = stats.sentences.map((x) => new Set(tokenize(x)));
    }
    const sentences = stats.sentences;
    const sentenceTerms = stats.sentenceTerms;
    if (sentences.length === 0) return '';
    const weight = (idx: number[]): number => {
      let total = 0;
      for (const t of terms) if (idx.some((i) => sentenceTerms[i]!.has(t))) total += this.idf(t);
      return total;
    };
    let best: number[] = [0];
    let bestWeight = weight(best);
    for (let i = 0; i < sentences.length; i++) {
      const w = weight([i]);
      if (w > bestWeight) {
        best = [i];
        bestWeight = w;
      }
    }
    for (let i = 0; i < sentences.length; i++) {
      for (let j = i + 1; j < sentences.length; j++) {
        if (sentences[i]!.length + sentences[j]!.length + 3 > SNIPPET_MAX) continue;
        const w = weight([i, j]);
        if (w > bestWeight + 1e-9) {
          best = [i, j];
          bestWeight = w;
        }
      }
    }
    const [a, b] = best as [number, number?];
    const text =
      b === undefined ? sentences[a]! : `${sentences[a]!}${b === a + 1 ? ' ' : ' … '}${sentences[b]!}`;
    return truncate(text, SNIPPET_MAX);
  }
}

function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max - 1);
  const space = cut.lastIndexOf(' ');
  return `${space > max / 2 ? cut.slice(0, space) : cut}…`;
}

let defaultIndex: SearchIndex | undefined;

/** The index over the bundled corpus, built on first use and then reused. */
export function corpusIndex(): SearchIndex {
  return (defaultIndex ??= new SearchIndex(loadCorpus()));
}

/** Synchronous search of the bundled corpus. */
export function searchCorpus(query: string, options: SearchOptions = {}): SearchHit[] {
  return corpusIndex().search(query, options);
}

// ---- providers -----------------------------------------------------------------

export type SearchProviderName = 'local' | 'brave' | 'tavily';

export interface SearchProvider {
  readonly name: SearchProviderName;
  search(query: string, options?: SearchOptions): Promise<SearchHit[]>;
}

type Env = Record<string, string | undefined>;
type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface SearchProviderConfig {
  /** Where to read LOOM_SEARCH_PROVIDER and API keys (default process.env). */
  env?: Env;
  /** fetch implementation (default globalThis.fetch); tests pass a fake. */
  fetch?: FetchLike;
  /** Index for the local provider (default: the bundled corpus). */
  index?: SearchIndex;
  /** Per-request timeout for web providers, ms (default 10000). */
  timeoutMs?: number;
}

/** Selects the provider; unset or "local" means the bundled corpus. */
export const SEARCH_PROVIDER_ENV = 'LOOM_SEARCH_PROVIDER';

/** A web search backend failed or is misconfigured. Messages never contain API keys. */
export class SearchProviderError extends Error {
  constructor(
    message: string,
    readonly provider: SearchProviderName,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'SearchProviderError';
  }
}

/**
 * Picks the search backend from the environment:
 * - unset / `local`: BM25 over the bundled corpus (offline);
 * - `brave`: Brave Search API, needs BRAVE_API_KEY;
 * - `tavily`: Tavily search API, needs TAVILY_API_KEY.
 */
export function createSearchProvider(config: SearchProviderConfig = {}): SearchProvider {
  const env = config.env ?? process.env;
  const name = (env[SEARCH_PROVIDER_ENV] ?? 'local').trim().toLowerCase() || 'local';
  const doFetch: FetchLike = config.fetch ?? ((input, init) => fetch(input, init));
  const timeoutMs = config.timeoutMs ?? 10_000;
  switch (name) {
    case 'local':
    case 'corpus': {
      const index = config.index;
      return {
        name: 'local',
        search: async (query, options) => (index ?? corpusIndex()).search(query, options),
      };
    }
    case 'brave':
      return braveProvider(requireKey(env, 'BRAVE_API_KEY', 'brave'), doFetch, timeoutMs);
    case 'tavily':
      return tavilyProvider(requireKey(env, 'TAVILY_API_KEY', 'tavily'), doFetch, timeoutMs);
    default:
      throw new SearchProviderError(
        `Unknown ${SEARCH_PROVIDER_ENV} "${name}": use "local" (default), "brave" or "tavily".`,
        'local',
      );
  }
}

function requireKey(env: Env, variable: string, provider: SearchProviderName): string {
  const key = env[variable]?.trim();
  if (!key) {
    throw new SearchProviderError(
      `${SEARCH_PROVIDER_ENV}=${provider} needs ${variable} to be set.`,
      provider,
    );
  }
  return key;
}

async function fetchJson(
  provider: SearchProviderName,
  doFetch: FetchLike,
  url: string,
  init: RequestInit,
  timeoutMs: number,
): Promise<unknown> {
  let response: Response;
  try {
    response = await doFetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const reason =
      (err as Error).name === 'TimeoutError' ? `timed out after ${timeoutMs} ms` : (err as Error).message;
    throw new SearchProviderError(`${provider} search request failed: ${reason}`, provider);
  }
  if (!response.ok) {
    throw new SearchProviderError(
      `${provider} search failed: HTTP ${response.status}${response.status === 401 || response.status === 403 ? ' (check the API key)' : ''}`,
      provider,
      response.status,
    );
  }
  try {
    return await response.json();
  } catch {
    throw new SearchProviderError(
      `${provider} search returned a body that is not JSON`,
      provider,
      response.status,
    );
  }
}

const stripTags = (s: string): string =>
  s
    .replace(/<[^>]*>/g, '')
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .trim();

function clampLimit(options?: SearchOptions): number {
  return Math.max(1, Math.min(20, options?.limit ?? 5));
}

function braveProvider(key: string, doFetch: FetchLike, timeoutMs: number): SearchProvider {
  return {
    name: 'brave',
    async search(query, options) {
      const limit = clampLimit(options);
      const url = `https://api.search.brave.com/res/v1/web/search?q=${encodeURIComponent(query)}&count=${limit}`;
      const body = (await fetchJson(
        'brave',
        doFetch,
        url,
        { headers: { Accept: 'application/json', 'X-Subscription-Token': key } },
        timeoutMs,
      )) as { web?: { results?: Array<{ title?: string; url?: string; description?: string }> } };
      const results = body.web?.results ?? [];
      return results
        .filter((r) => typeof r.url === 'string')
        .slice(0, limit)
        .map((r, i) => ({
          id: r.url!,
          title: stripTags(r.title ?? r.url!),
          url: r.url!,
          snippet: truncate(stripTags(r.description ?? ''), SNIPPET_MAX),
          // Brave gives no score: rank-based, 1 for the first result.
          score: Math.round((1 / (i + 1)) * 1000) / 1000,
          source: 'brave' as const,
        }));
    },
  };
}

function tavilyProvider(key: string, doFetch: FetchLike, timeoutMs: number): SearchProvider {
  return {
    name: 'tavily',
    async search(query, options) {
      const limit = clampLimit(options);
      const body = (await fetchJson(
        'tavily',
        doFetch,
        'https://api.tavily.com/search',
        {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
          body: JSON.stringify({ query, max_results: limit, search_depth: 'basic' }),
        },
        timeoutMs,
      )) as { results?: Array<{ title?: string; url?: string; content?: string; score?: number }> };
      return (body.results ?? [])
        .filter((r) => typeof r.url === 'string')
        .slice(0, limit)
        .map((r, i) => ({
          id: r.url!,
          title: r.title ?? r.url!,
          url: r.url!,
          snippet: truncate((r.content ?? '').trim(), SNIPPET_MAX),
          score:
            typeof r.score === 'number'
              ? Math.round(r.score * 1000) / 1000
              : Math.round((1 / (i + 1)) * 1000) / 1000,
          source: 'tavily' as const,
        }));
    },
  };
}

let defaultProvider: SearchProvider | undefined;

/**
 * Searches with the provider configured in process.env (the bundled corpus
 * unless LOOM_SEARCH_PROVIDER says otherwise). The provider is chosen once.
 */
export async function search(query: string, options: SearchOptions = {}): Promise<SearchHit[]> {
  defaultProvider ??= createSearchProvider();
  return defaultProvider.search(query, options);
}
