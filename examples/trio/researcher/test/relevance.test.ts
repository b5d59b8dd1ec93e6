import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cityRegistry } from '../src/cities.js';
import { relevantHits } from '../src/relevance.js';
import { loadCorpus, searchCorpus, type SearchHit } from '../src/search.js';

const docs = new Map(loadCorpus().map((d) => [d.id, d]));
const registry = cityRegistry();
const topicsOf = (id: string): string[] => docs.get(id)?.topics ?? [];

describe('relevantHits', () => {
  it("drops other cities' documents when the place asked is not in the corpus (Oslo)", () => {
    const query = 'Will it be cold in Oslo on Friday?';
    const hits = searchCorpus(query, { limit: 5 });
    assert.ok(
      hits.some((h) => topicsOf(h.id).includes('city:stockholm')),
      'the raw search finds Stockholm (Oslo is only mentioned there)',
    );
    const { kept, dropped } = relevantHits(hits, { query, cities: registry.cities, docs });
    assert.ok(
      kept.every((h) => !topicsOf(h.id).some((t) => t.startsWith('city:'))),
      `kept a city document: ${kept.map((h) => h.id)}`,
    );
    assert.ok(dropped.some((d) => /not the place asked/.test(d.reason)));
  });

  it("keeps only the asked city's documents and drops those far below the best", () => {
    const lisbon = registry.resolve('Lisbon')!;
    const query = 'Lisbon landmarks culture famous sights';
    const hits = searchCorpus(query, { limit: 6, topics: ['city:lisbon'] });
    assert.equal(hits.length, 6, "every Lisbon document matches 'Lisbon'");
    const { kept, dropped } = relevantHits(hits, { query, city: lisbon, cities: registry.cities, docs });
    assert.ok(kept.length >= 1 && kept.length < hits.length, `kept ${kept.length} of ${hits.length}`);
    assert.ok(topicsOf(kept[0]!.id).includes('landmarks'));
    assert.equal(dropped.length, hits.length - kept.length);
    for (const h of kept) assert.ok(h.score >= 0.5 * kept[0]!.score);
  });

  it('drops hits scoring below the threshold share of the best', () => {
    const hit = (id: string, score: number): SearchHit => ({
      id,
      title: `climate ${id}`,
      url: id,
      snippet: 'climate',
      score,
      source: 'brave',
    });
    const { kept, dropped } = relevantHits([hit('a', 10), hit('b', 6), hit('c', 4.9)], {
      query: 'climate',
      cities: registry.cities,
      docs,
    });
    assert.deepEqual(
      kept.map((h) => h.id),
      ['a', 'b'],
    );
    assert.match(dropped[0]!.reason, /below 0.5/);
  });

  it('drops a document that matches only the place name', () => {
    const rome = registry.resolve('Rome')!;
    const query = 'Rome quantum chromodynamics';
    const hits = searchCorpus(query, { limit: 6, topics: ['city:rome'] });
    assert.ok(hits.length > 0);
    assert.deepEqual(relevantHits(hits, { query, city: rome, cities: registry.cities, docs }).kept, []);
  });

  it("keeps general documents on the subject, and a city's when the query names it", () => {
    const query = 'packing for cold weather layers';
    const { kept } = relevantHits(searchCorpus(query, { limit: 5 }), {
      query,
      cities: registry.cities,
      docs,
    });
    assert.ok(kept.length >= 1);
    assert.ok(kept.some((h) => topicsOf(h.id).includes('travel')));
    const named = 'Stockholm Nobel prize ceremonies';
    const stockholm = relevantHits(searchCorpus(named, { limit: 3 }), {
      query: named,
      cities: registry.cities,
      docs,
    }).kept;
    assert.ok(stockholm.some((h) => topicsOf(h.id).includes('city:stockholm')));
  });

  it('judges web hits (not in the corpus) on their title and snippet', () => {
    const web: SearchHit[] = [
      {
        id: 'https://a',
        title: 'Oslo weather in December',
        url: 'https://a',
        snippet: 'Cold, dark days.',
        score: 1,
        source: 'brave',
      },
      {
        id: 'https://b',
        title: 'Something else',
        url: 'https://b',
        snippet: 'Nothing to do with it.',
        score: 0.9,
        source: 'brave',
      },
    ];
    const { kept } = relevantHits(web, { query: 'Oslo weather December', cities: registry.cities, docs });
    assert.deepEqual(
      kept.map((h) => h.id),
      ['https://a'],
    );
  });
});
