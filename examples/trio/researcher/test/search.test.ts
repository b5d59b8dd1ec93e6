import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cityRegistry } from '../src/cities.js';
import {
  type CorpusDoc,
  corpusIndex,
  createSearchProvider,
  loadCorpus,
  parseCorpus,
  SearchIndex,
  searchCorpus,
  SearchProviderError,
} from '../src/search.js';
import { tokenize } from '../src/text.js';

const docs = loadCorpus();
const KINDS = ['overview', 'geography', 'landmarks', 'transport', 'food', 'economy'];

describe('corpus', () => {
  it('has 300+ well-formed documents with unique ids', () => {
    assert.ok(docs.length >= 300, `only ${docs.length} documents`);
    const ids = new Set(docs.map((d) => d.id));
    assert.equal(ids.size, docs.length);
    for (const d of docs) {
      assert.match(d.id, /^doc-\d{4}$/);
      assert.match(d.url, /^https:\/\/en\.wiki(pedia|voyage)\.org\/wiki\/\S+$/, d.id);
      assert.ok(d.topics.length > 0, d.id);
      const sentences = d.text.split(/(?<=[.!?])\s+(?=[A-Z0-9])/).length;
      assert.ok(sentences >= 3 && sentences <= 6, `${d.id} has ${sentences} sentences`);
    }
  });

  it('covers every city of the weather dataset with one document per kind', () => {
    for (const city of cityRegistry().cities) {
      const mine = docs.filter((d) => d.topics.includes(`city:${city.id}`));
      for (const kind of KINDS) {
        assert.ok(
          mine.some((d) => d.topics.includes(kind)),
          `${city.name} has no ${kind} document`,
        );
      }
    }
  });

  it('has general weather, climate and travel documents', () => {
    const general = docs.filter((d) => !d.topics.some((t) => t.startsWith('city:')));
    assert.ok(
      general.filter((d) => d.topics.includes('weather') || d.topics.includes('climate')).length >= 30,
    );
    assert.ok(general.filter((d) => d.topics.includes('travel')).length >= 20);
  });

  it('rejects malformed lines with the line number', () => {
    assert.throws(
      () => parseCorpus('{"id":"a","title":"t","url":"u","topics":[],"text":"x"}\n{oops', 'c.jsonl'),
      /c\.jsonl:2: invalid JSON/,
    );
    assert.throws(
      () => parseCorpus('{"id":"a","title":"","url":"u","topics":[],"text":"x"}'),
      /"title" must be a non-empty string/,
    );
    const line = '{"id":"a","title":"t","url":"u","topics":[],"text":"x"}';
    assert.throws(() => parseCorpus(`${line}\n${line}`), /duplicate id a/);
  });
});

describe('BM25 ranking', () => {
  const index = corpusIndex();
  const topDoc = (query: string) => {
    const hit = index.search(query, { limit: 1 })[0];
    assert.ok(hit, `no hit for ${query}`);
    return docs.find((d) => d.id === hit.id)!;
  };

  it("ranks each city's landmarks document first for '<city> landmarks'", () => {
    for (const city of cityRegistry().cities) {
      const doc = topDoc(`${city.name} landmarks`);
      assert.ok(
        doc.topics.includes(`city:${city.id}`) && doc.topics.includes('landmarks'),
        `${city.name}: got ${doc.title}`,
      );
    }
  });

  it('ranks the matching kind first for other city questions', () => {
    const cases: Array<[string, string, string]> = [
      ['What is the food like in Tokyo?', 'tokyo', 'food'],
      ['How do I get around Berlin by public transport?', 'berlin', 'transport'],
      ['climate of Cape Town', 'cape-town', 'climate'],
      ['Dubai economy', 'dubai', 'economy'],
      ['history of Istanbul', 'istanbul', 'history'],
    ];
    for (const [query, city, kind] of cases) {
      const doc = topDoc(query);
      assert.ok(
        doc.topics.includes(`city:${city}`) && doc.topics.includes(kind),
        `${query}: got ${doc.title}`,
      );
    }
  });

  it('finds general documents', () => {
    assert.equal(topDoc('what does the UV index mean').title, 'UV index');
    assert.equal(topDoc('how do weather forecasts work').title, 'How weather forecasts work');
    assert.equal(topDoc('packing for rain').title, 'Packing for rain');
    assert.equal(topDoc('jet stream').title, 'Jet stream');
  });

  it('ignores diacritics and case', () => {
    const a = index.search('sao paulo landmarks');
    const b = index.search('SÃO PAULO landmarks');
    assert.deepEqual(a, b);
    assert.equal(a[0]?.title, 'São Paulo: landmarks and culture');
    assert.equal(index.search('reykjavik')[0]?.title.startsWith('Reykjavík'), true);
  });

  it('ignores stop words', () => {
    assert.deepEqual(index.search('the of and'), []);
    assert.deepEqual(index.search('What are the landmarks of Rome?'), index.search('landmarks Rome'));
  });

  it('returns nothing for empty or unknown queries', () => {
    assert.deepEqual(index.search(''), []);
    assert.deepEqual(index.search('zzqxj'), []);
    assert.deepEqual(index.search('Lisbon', { limit: 0 }), []);
  });

  it('returns hits with the documented shape, sorted by score', () => {
    const hits = index.search('Lisbon landmarks', { limit: 5 });
    assert.equal(hits.length, 5);
    for (const h of hits) {
      assert.deepEqual(Object.keys(h).sort(), ['id', 'score', 'snippet', 'source', 'title', 'url']);
      assert.equal(h.source, 'corpus');
      assert.ok(h.score > 0);
    }
    for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1]!.score >= hits[i]!.score);
  });

  it('makes snippets from sentences that contain the query terms', () => {
    for (const query of [
      'Lisbon landmarks',
      'Mumbai monsoon rain',
      'deep-dish pizza Chicago',
      'Tokyo cherry blossom',
    ]) {
      const terms = tokenize(query);
      for (const hit of index.search(query, { limit: 3 })) {
        assert.ok(hit.snippet.length > 0 && hit.snippet.length <= 360, hit.id);
        const doc = docs.find((d) => d.id === hit.id)!;
        for (const part of hit.snippet.replace(/…$/, '').split(' … ')) {
          assert.ok(doc.text.includes(part), `${hit.id}: snippet not from the text`);
        }
        const docHasTerm = terms.some((t) => tokenize(doc.text).includes(t));
        if (docHasTerm) {
          assert.ok(
            terms.some((t) => tokenize(hit.snippet).includes(t)),
            `${query} / ${hit.id}: "${hit.snippet}"`,
          );
        }
      }
    }
    assert.match(index.search('Lisbon landmarks')[0]!.snippet, /landmark/i);
  });

  it('filters by topics and honours the limit', () => {
    const hits = index.search('food', { topics: ['city:lisbon'], limit: 10 });
    assert.ok(hits.length > 0);
    assert.ok(hits.every((h) => docs.find((d) => d.id === h.id)!.topics.includes('city:lisbon')));
    assert.equal(index.search('food', { limit: 2 }).length, 2);
  });

  it('boosts titles', () => {
    const mini: CorpusDoc[] = [
      {
        id: 'a',
        title: 'Trams',
        url: 'u',
        topics: [],
        text: 'Lisbon has yellow vehicles. They climb hills. They are old.',
      },
      {
        id: 'b',
        title: 'Buses',
        url: 'u',
        topics: [],
        text: 'Trams and buses run here. Many routes exist. Fares are low.',
      },
    ];
    assert.equal(new SearchIndex(mini).search('trams')[0]?.id, 'a');
    assert.equal(new SearchIndex(mini, { titleBoost: 0 }).search('trams')[0]?.id, 'b');
  });

  it('builds the index quickly', () => {
    const before = process.cpuUsage();
    const fresh = new SearchIndex(loadCorpus());
    const used = process.cpuUsage(before);
    const ms = (used.user + used.system) / 1000;
    assert.equal(fresh.size, docs.length);
    // < 200 ms of CPU on a developer machine; the bound is loose for busy CI hosts.
    assert.ok(ms < 1000, `index build took ${ms.toFixed(0)} ms of CPU`);
  });

  it('searchCorpus uses the shared index', () => {
    assert.deepEqual(searchCorpus('Lisbon landmarks'), index.search('Lisbon landmarks'));
  });
});

type FetchCall = { url: string; init?: RequestInit };
function fakeFetch(status: number, body: unknown, calls: FetchCall[] = []) {
  return async (url: string, init?: RequestInit): Promise<Response> => {
    calls.push({ url, init });
    return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
  };
}

describe('search providers', () => {
  it('uses the bundled corpus by default', async () => {
    const provider = createSearchProvider({ env: {} });
    assert.equal(provider.name, 'local');
    assert.equal((await provider.search('Lisbon landmarks'))[0]?.id, searchCorpus('Lisbon landmarks')[0]?.id);
  });

  it('requires the API key for web providers and never echoes it', () => {
    assert.throws(
      () => createSearchProvider({ env: { LOOM_SEARCH_PROVIDER: 'brave' } }),
      /needs BRAVE_API_KEY/,
    );
    assert.throws(
      () => createSearchProvider({ env: { LOOM_SEARCH_PROVIDER: 'tavily' } }),
      /needs TAVILY_API_KEY/,
    );
    assert.throws(
      () => createSearchProvider({ env: { LOOM_SEARCH_PROVIDER: 'bing' } }),
      /Unknown LOOM_SEARCH_PROVIDER "bing"/,
    );
  });

  it('maps Brave results to the hit shape', async () => {
    const calls: FetchCall[] = [];
    const provider = createSearchProvider({
      env: { LOOM_SEARCH_PROVIDER: 'brave', BRAVE_API_KEY: 'secret-brave-key' },
      fetch: fakeFetch(
        200,
        {
          web: {
            results: [
              {
                title: 'Lisbon &amp; <strong>landmarks</strong>',
                url: 'https://example.org/a',
                description: 'The <strong>Belém</strong> Tower',
              },
              { title: 'Second', url: 'https://example.org/b', description: 'More' },
            ],
          },
        },
        calls,
      ),
    });
    const hits = await provider.search('Lisbon landmarks', { limit: 2 });
    assert.deepEqual(hits[0], {
      id: 'https://example.org/a',
      title: 'Lisbon & landmarks',
      url: 'https://example.org/a',
      snippet: 'The Belém Tower',
      score: 1,
      source: 'brave',
    });
    assert.equal(hits[1]?.score, 0.5);
    assert.match(
      calls[0]!.url,
      /^https:\/\/api\.search\.brave\.com\/res\/v1\/web\/search\?q=Lisbon%20landmarks&count=2$/,
    );
    assert.equal(
      (calls[0]!.init?.headers as Record<string, string>)['X-Subscription-Token'],
      'secret-brave-key',
    );
  });

  it('maps Tavily results to the hit shape', async () => {
    const calls: FetchCall[] = [];
    const provider = createSearchProvider({
      env: { LOOM_SEARCH_PROVIDER: 'tavily', TAVILY_API_KEY: 'secret-tavily-key' },
      fetch: fakeFetch(
        200,
        { results: [{ title: 'T', url: 'https://example.org/t', content: 'Text', score: 0.8123 }] },
        calls,
      ),
    });
    const hits = await provider.search('q');
    assert.deepEqual(hits, [
      {
        id: 'https://example.org/t',
        title: 'T',
        url: 'https://example.org/t',
        snippet: 'Text',
        score: 0.812,
        source: 'tavily',
      },
    ]);
    assert.equal(calls[0]!.init?.method, 'POST');
    assert.deepEqual(JSON.parse(String(calls[0]!.init?.body)), {
      query: 'q',
      max_results: 5,
      search_depth: 'basic',
    });
  });

  it('reports HTTP failures without the key', async () => {
    const provider = createSearchProvider({
      env: { LOOM_SEARCH_PROVIDER: 'brave', BRAVE_API_KEY: 'secret-brave-key' },
      fetch: fakeFetch(401, { error: 'bad key secret-brave-key' }),
    });
    await assert.rejects(provider.search('x'), (err: unknown) => {
      assert.ok(err instanceof SearchProviderError);
      assert.equal(err.status, 401);
      assert.match(err.message, /brave search failed: HTTP 401 \(check the API key\)/);
      assert.doesNotMatch(err.message, /secret/);
      return true;
    });
  });

  it('reports network failures', async () => {
    const provider = createSearchProvider({
      env: { LOOM_SEARCH_PROVIDER: 'tavily', TAVILY_API_KEY: 'k' },
      fetch: async () => {
        throw new TypeError('fetch failed');
      },
    });
    await assert.rejects(provider.search('x'), /tavily search request failed: fetch failed/);
  });
});
