// Which search hits a finding may cite: relevant enough to the question, and about the place it
// asks (or about no place at all). Hits below the threshold are dropped, never padded in.

import type { CityInfo } from './cities.js';
import type { CorpusDoc, SearchHit } from './search.js';
import { tokenize } from './text.js';

/** A hit is kept only when it scores at least this share of the best hit's score. */
export const RELATIVE_THRESHOLD = 0.5;

export interface RelevanceOptions {
  /** The search query (its terms, other than the city's name, must appear in a kept hit). */
  query: string;
  /** The city the question asks about (resolved in the registry), if any. */
  city?: CityInfo;
  /** Every known city, to tell a document about another city from a general one. */
  cities: readonly CityInfo[];
  /** Corpus documents by id (web hits, absent here, are judged on their title and snippet). */
  docs: ReadonlyMap<string, CorpusDoc>;
  /** Share of the best score a hit needs (default RELATIVE_THRESHOLD). */
  threshold?: number;
}

export interface RelevanceResult {
  kept: SearchHit[];
  /** Dropped hits and why, for the logs. */
  dropped: Array<{ id: string; reason: string }>;
}

/**
 * Keeps the hits worth citing, in rank order:
 * - about the place asked: a document tagged with another city (`city:<id>`) is dropped; with no
 *   city asked, a document about any particular city is dropped unless the query names that city;
 * - on the subject: the hit contains at least one query term that is not part of a city's name;
 * - close to the best: its score is at least `threshold` × the best kept score.
 */
export function relevantHits(hits: readonly SearchHit[], options: RelevanceOptions): RelevanceResult {
  const threshold = options.threshold ?? RELATIVE_THRESHOLD;
  const cityTerms = new Set(
    options.cities.flatMap((c) => [c.name, ...c.aliases].flatMap((n) => tokenize(n))),
  );
  const contentTerms = new Set(tokenize(options.query).filter((t) => !cityTerms.has(t)));
  const queryTerms = new Set(tokenize(options.query));
  const dropped: RelevanceResult['dropped'] = [];
  const candidates: SearchHit[] = [];
  for (const hit of hits) {
    const doc = options.docs.get(hit.id);
    const topicCities = (doc?.topics ?? []).filter((t) => t.startsWith('city:')).map((t) => t.slice(5));
    if (topicCities.length > 0) {
      const allowed = options.city
        ? topicCities.includes(options.city.id)
        : topicCities.some((id) => {
            const city = options.cities.find((c) => c.id === id);
            return city !== undefined && tokenize(city.name).every((t) => queryTerms.has(t));
          });
      if (!allowed) {
        dropped.push({ id: hit.id, reason: `about ${topicCities.join(', ')}, not the place asked` });
        continue;
      }
    }
    const words = new Set(
      tokenize(
        doc
          ? `${doc.title} ${doc.text} ${doc.topics.join(' ').replace(/[:_-]/g, ' ')}`
          : `${hit.title} ${hit.snippet}`,
      ),
    );
    if (contentTerms.size > 0 && ![...contentTerms].some((t) => words.has(t))) {
      dropped.push({ id: hit.id, reason: 'shares no term with the question but the place name' });
      continue;
    }
    candidates.push(hit);
  }
  const best = candidates[0]?.score ?? 0;
  const kept: SearchHit[] = [];
  for (const hit of candidates) {
    if (hit.score >= threshold * best) kept.push(hit);
    else dropped.push({ id: hit.id, reason: `score ${hit.score} below ${threshold} × ${best}` });
  }
  return { kept, dropped };
}
