import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { extractCities, extractDate, extractDates, mentionsWeather, weatherHint } from '../src/plan-hints.js';

// 2026-12-02 is a Wednesday.
const TODAY = '2026-12-02';
const dateOf = (text: string, today: string | Date = TODAY) => extractDate(text, today)?.date ?? null;

describe('extractCities', () => {
  const names = (text: string) => extractCities(text).map((c) => c.name);

  it('finds known cities in order of mention, once each', () => {
    assert.deepEqual(names('Compare Tokyo and Lisbon, then Tokyo again.'), ['Tokyo', 'Lisbon']);
    assert.deepEqual(names('Nothing here.'), []);
  });

  it('ignores case and diacritics and reports the text as written', () => {
    const [c] = extractCities('weather in SAO PAULO next week');
    assert.deepEqual(c, {
      id: 'sao-paulo',
      name: 'São Paulo',
      country: 'Brazil',
      matched: 'SAO PAULO',
      index: 11,
    });
    assert.deepEqual(names('Trip to São Paulo and reykjavík'), ['São Paulo', 'Reykjavík']);
  });

  it('knows aliases', () => {
    assert.deepEqual(names('Flights from NYC to Bombay via Lisboa'), ['New York City', 'Mumbai', 'Lisbon']);
    assert.deepEqual(names('Is L.A. warmer than SF in May?'), ['Los Angeles', 'San Francisco']);
  });

  it('prefers the longest name', () => {
    assert.deepEqual(
      extractCities('Rio de Janeiro beaches').map((c) => c.matched),
      ['Rio de Janeiro'],
    );
    assert.deepEqual(
      extractCities('New York City in winter').map((c) => c.matched),
      ['New York City'],
    );
  });

  it('does not match short aliases inside ordinary words or lower case', () => {
    assert.deepEqual(names('la plaza de la ciudad is nice'), []);
    assert.deepEqual(names('Parisian cafés and Romeo'), []);
    assert.deepEqual(names('Mexico is big'), []);
  });

  it('handles possessives', () => {
    assert.deepEqual(names("Lisbon's trams"), ['Lisbon']);
  });
});

describe('extractDate', () => {
  it('reads ISO dates', () => {
    assert.deepEqual(extractDate('Weather in Lisbon on 2026-12-05?', TODAY), {
      date: '2026-12-05',
      matched: '2026-12-05',
      index: 21,
      kind: 'iso',
    });
    assert.equal(dateOf('on 2026-02-30'), null);
  });

  it('reads relative days', () => {
    assert.equal(dateOf('today'), '2026-12-02');
    assert.equal(dateOf('tonight in Paris'), '2026-12-02');
    assert.equal(dateOf('Will it rain tomorrow?'), '2026-12-03');
    assert.equal(dateOf('the day after tomorrow'), '2026-12-04');
    assert.equal(dateOf('yesterday'), '2026-12-01');
    assert.equal(dateOf('in 3 days'), '2026-12-05');
    assert.equal(dateOf('in two weeks'), '2026-12-16');
    assert.equal(dateOf('next week'), '2026-12-09');
  });

  it('reads day and month, rolling over to next year when past', () => {
    assert.equal(dateOf('on 5 December'), '2026-12-05');
    assert.equal(dateOf('on the 5th of December'), '2026-12-05');
    assert.equal(dateOf('December 5th'), '2026-12-05');
    assert.equal(dateOf('Dec. 5, 2027'), '2027-12-05');
    assert.equal(dateOf('5 Dec 2027'), '2027-12-05');
    assert.equal(dateOf('on 1 December'), '2027-12-01');
    assert.equal(dateOf('on 2 December'), '2026-12-02');
    assert.equal(dateOf('10 January'), '2027-01-10');
    assert.equal(dateOf('on 31 February'), null);
    assert.equal(dateOf('in December 2026'), null);
    assert.equal(dateOf('29 February', '2026-03-01'), '2028-02-29');
  });

  it('reads weekday names', () => {
    assert.equal(dateOf('on Friday'), '2026-12-04');
    assert.equal(dateOf('this Friday'), '2026-12-04');
    assert.equal(dateOf('next Friday'), '2026-12-04');
    assert.equal(dateOf('on Wednesday'), '2026-12-02');
    assert.equal(dateOf('next Wednesday'), '2026-12-09');
    assert.equal(dateOf('Monday'), '2026-12-07');
    assert.equal(dateOf('on Thu'), '2026-12-03');
  });

  it('reads the weekend', () => {
    assert.equal(dateOf('this weekend'), '2026-12-05');
    assert.equal(dateOf('at the weekend', '2026-12-06'), '2026-12-06');
    assert.equal(dateOf('next weekend', '2026-12-05'), '2026-12-12');
  });

  it('accepts a Date for today and rejects a bad one', () => {
    assert.equal(dateOf('tomorrow', new Date(Date.UTC(2026, 11, 31, 12))), '2027-01-01');
    assert.throws(() => extractDate('tomorrow', '02/12/2026'), /today must be a Date or "YYYY-MM-DD"/);
  });

  it('returns null without a date and lists several dates in order', () => {
    assert.equal(extractDate('What is Lisbon famous for?', TODAY), null);
    assert.deepEqual(
      extractDates('From 5 December to 2026-12-09, back on Friday', TODAY).map((d) => [d.date, d.kind]),
      [
        ['2026-12-05', 'day-month'],
        ['2026-12-09', 'iso'],
        ['2026-12-04', 'weekday'],
      ],
    );
    assert.equal(dateOf('I may 3D print it'), null);
  });
});

describe('weatherHint', () => {
  it('asks for weather when a known city and weather words appear', () => {
    const h = weatherHint('Should I pack an umbrella for Lisbon on 5 December?', TODAY);
    assert.equal(h.needsWeather, true);
    assert.deepEqual(h.lookups, [{ city: 'Lisbon', date: '2026-12-05' }]);
    assert.equal(h.reason, 'weather in Lisbon on 2026-12-05');
  });

  it('plans one lookup per city', () => {
    const h = weatherHint('Will it be warmer in Rome or Athens tomorrow?', TODAY);
    assert.deepEqual(h.lookups, [
      { city: 'Rome', date: '2026-12-03' },
      { city: 'Athens', date: '2026-12-03' },
    ]);
  });

  it('does not ask for weather without weather words or without a city', () => {
    assert.equal(weatherHint('What are the best museums in Paris?', TODAY).needsWeather, false);
    assert.equal(weatherHint('Will it rain tomorrow?', TODAY).needsWeather, false);
    assert.equal(weatherHint('Will it rain tomorrow?', TODAY).reason, 'weather words but no known city');
  });

  it('asks for weather without a date but plans no lookups', () => {
    const h = weatherHint('Is Dubai hot?', TODAY);
    assert.equal(h.needsWeather, true);
    assert.equal(h.date, null);
    assert.deepEqual(h.lookups, []);
  });

  it('recognises weather words in their forms', () => {
    assert.equal(mentionsWeather('Is it raining?'), true);
    assert.equal(mentionsWeather('What should I wear?'), true);
    assert.equal(mentionsWeather('Best museums'), false);
  });
});
