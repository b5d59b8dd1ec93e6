import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cityRegistry } from '../src/cities.js';
import { dataDir } from '../src/data-dir.js';
import {
  conditionFromWmoCode,
  getWeather,
  knownCities,
  lookupWeather,
  SYNTHETIC_NOTE,
  WeatherError,
  weatherTable,
} from '../src/weather.js';

const rejectsWith = async (p: Promise<unknown>, code: string, message: RegExp) =>
  assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof WeatherError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  });

describe('weather dataset', () => {
  const csv = readFileSync(join(dataDir(), 'weather.csv'), 'utf8');
  const rows = csv
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(','));

  it('has every city for every day of 2026 and 2027', () => {
    const cities = cityRegistry().cities;
    assert.equal(rows.length, cities.length * 730);
    assert.deepEqual(knownCities(), cityRegistry().names());
    assert.equal(weatherTable().firstDate, '2026-01-01');
    assert.equal(weatherTable().lastDate, '2027-12-31');
  });

  it('stays under 3 MB', () => {
    assert.ok(csv.length < 3_000_000, `${csv.length} bytes`);
  });

  it('has plausible values', () => {
    const conditions = new Set<string>();
    for (const [, , date, condition, tmin, tmax, precip, wind, humidity] of rows) {
      conditions.add(condition!);
      assert.ok(Number(tmin) < Number(tmax), `${date}: min ${tmin} >= max ${tmax}`);
      assert.ok(Number(precip) >= 0 && Number(wind) > 0, date);
      assert.ok(Number(humidity) >= 0 && Number(humidity) <= 100, date);
    }
    for (const c of [
      'sunny',
      'partly cloudy',
      'cloudy',
      'light rain',
      'rain',
      'heavy rain',
      'thunderstorm',
      'snow',
      'fog',
    ]) {
      assert.ok(conditions.has(c), `no "${c}" days`);
    }
  });

  it("follows each city's climate normals", () => {
    const { cities } = JSON.parse(readFileSync(join(dataDir(), 'cities.json'), 'utf8')) as {
      cities: Array<{ name: string; climate: { tmax: number[]; precip: number[] } }>;
    };
    for (const city of cities) {
      const mine = rows.filter((r) => r[0] === city.name);
      const meanMax = mine.reduce((s, r) => s + Number(r[5]), 0) / mine.length;
      const normalMax = city.climate.tmax.reduce((a, b) => a + b, 0) / 12;
      assert.ok(
        Math.abs(meanMax - normalMax) < 1,
        `${city.name}: mean max ${meanMax.toFixed(1)} vs normal ${normalMax.toFixed(1)}`,
      );
      const yearly = mine.reduce((s, r) => s + Number(r[6]), 0) / 2;
      const normalYearly = city.climate.precip.reduce((a, b) => a + b, 0);
      assert.ok(
        Math.abs(yearly - normalYearly) <= Math.max(60, normalYearly * 0.35),
        `${city.name}: ${yearly.toFixed(0)} mm vs ${normalYearly} mm`,
      );
    }
    // seasons are the right way round
    const month = (city: string, m: string) =>
      rows
        .filter((r) => r[0] === city && r[2]!.slice(5, 7) === m)
        .reduce((s, r, _i, a) => s + Number(r[5]) / a.length, 0);
    assert.ok(month('Sydney', '01') > month('Sydney', '07') + 5);
    assert.ok(month('Chicago', '07') > month('Chicago', '01') + 20);
  });

  it('is reproducible from generate-weather.mjs', () => {
    const out = execFileSync(process.execPath, [join(dataDir(), 'generate-weather.mjs'), '--check'], {
      encoding: 'utf8',
    });
    assert.match(out, /up to date/);
  });
});

describe('getWeather', () => {
  it("returns the day's row for a city", async () => {
    const r = await getWeather({ city: 'Lisbon', date: '2026-12-05' }, { env: {} });
    assert.equal(r.city, 'Lisbon');
    assert.equal(r.country, 'Portugal');
    assert.equal(r.date, '2026-12-05');
    assert.equal(r.source, 'synthetic');
    assert.equal(r.note, SYNTHETIC_NOTE);
    assert.ok(r.tempMinC < r.tempMaxC);
    assert.ok(r.tempMaxC > 5 && r.tempMaxC < 25, `Lisbon in December: ${r.tempMaxC}`);
    assert.match(
      r.summary,
      /^Lisbon, 2026-12-05: .+, -?\d+\.\d to -?\d+\.\d °C, precipitation \d+\.\d mm, wind \d+ km\/h, humidity \d+%$/,
    );
    const line = readFileSync(join(dataDir(), 'weather.csv'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Lisbon,Portugal,2026-12-05,'));
    assert.equal(
      line,
      `Lisbon,Portugal,2026-12-05,${r.condition},${r.tempMinC.toFixed(1)},${r.tempMaxC.toFixed(1)},${r.precipMm.toFixed(1)},${r.windKph},${r.humidityPct}`,
    );
  });

  it('matches city names case- and diacritic-insensitively, with aliases', () => {
    const date = '2027-03-01';
    const same = (a: string, b: string) =>
      assert.deepEqual(lookupWeather({ city: a, date }), lookupWeather({ city: b, date }));
    same('NYC', 'New York City');
    same('new york', 'New York City');
    same('  new-york-city ', 'New York City');
    same('sao paulo', 'São Paulo');
    same('SÃO PAULO', 'São Paulo');
    same('Reykjavik', 'Reykjavík');
    same('Lisboa', 'Lisbon');
    same('Bombay', 'Mumbai');
    same('L.A.', 'Los Angeles');
    same('Marrakech', 'Marrakesh');
    same('Lisbon, Portugal', 'Lisbon');
    assert.equal(lookupWeather({ city: 'nyc', date }).city, 'New York City');
  });

  it('explains an unknown city and suggests known ones', async () => {
    await rejectsWith(
      getWeather({ city: 'Lisbn', date: '2026-12-05' }, { env: {} }),
      'UNKNOWN_CITY',
      /Unknown city "Lisbn"\. Did you mean "Lisbon"\? Known cities include Amsterdam, Athens, .* \(40 in all\)\./,
    );
    await rejectsWith(
      getWeather({ city: 'Atlantis', date: '2026-12-05' }, { env: {} }),
      'UNKNOWN_CITY',
      /^Unknown city "Atlantis"\. Known cities include/,
    );
    try {
      lookupWeather({ city: 'Pariss', date: '2026-01-01' });
      assert.fail('expected an error');
    } catch (err) {
      assert.ok(err instanceof WeatherError);
      assert.deepEqual(err.details.suggestions, ['Paris']);
    }
  });

  it('explains dates outside the dataset', async () => {
    await rejectsWith(
      getWeather({ city: 'Lisbon', date: '2028-01-01' }, { env: {} }),
      'DATE_OUT_OF_RANGE',
      /No weather data for 2028-01-01: the bundled dataset covers 2026-01-01 to 2027-12-31\./,
    );
    await rejectsWith(
      getWeather({ city: 'Lisbon', date: '2025-12-31' }, { env: {} }),
      'DATE_OUT_OF_RANGE',
      /covers 2026-01-01 to 2027-12-31/,
    );
  });

  it('explains malformed dates and missing arguments', async () => {
    await rejectsWith(
      getWeather({ city: 'Lisbon', date: '05/12/2026' }, { env: {} }),
      'BAD_DATE',
      /Invalid date "05\/12\/2026": expected an ISO date YYYY-MM-DD/,
    );
    await rejectsWith(
      getWeather({ city: 'Lisbon', date: '2026-02-30' }, { env: {} }),
      'BAD_DATE',
      /no such day/,
    );
    await rejectsWith(
      getWeather({ city: 'Lisbon', date: 'tomorrow' }, { env: {} }),
      'BAD_DATE',
      /expected an ISO date/,
    );
    await rejectsWith(
      getWeather({ city: '', date: '2026-12-05' }, { env: {} }),
      'MISSING_ARGUMENT',
      /A city is required/,
    );
    await rejectsWith(
      getWeather({ city: 'Lisbon' } as never, { env: {} }),
      'MISSING_ARGUMENT',
      /A date is required/,
    );
  });

  it('rejects an unknown provider', async () => {
    await rejectsWith(
      getWeather({ city: 'Lisbon', date: '2026-12-05' }, { env: { LOOM_WEATHER_PROVIDER: 'met-office' } }),
      'PROVIDER_CONFIG',
      /use "local" .* or "open-meteo"/,
    );
  });
});

describe('Open-Meteo provider', () => {
  const env = { LOOM_WEATHER_PROVIDER: 'open-meteo' };
  const daily = {
    daily: {
      time: ['2026-12-05'],
      weather_code: [63],
      temperature_2m_max: [15.26],
      temperature_2m_min: [9.04],
      precipitation_sum: [6.18],
      wind_speed_10m_max: [24.6],
      relative_humidity_2m_mean: [81.4],
    },
  };
  const fake = (responses: Array<[number, unknown]>, urls: string[] = []) => {
    let i = 0;
    return async (url: string): Promise<Response> => {
      urls.push(url);
      const [status, body] = responses[Math.min(i++, responses.length - 1)]!;
      return new Response(JSON.stringify(body), { status });
    };
  };

  it('maps the daily forecast for a known city', async () => {
    const urls: string[] = [];
    const r = await getWeather(
      { city: 'lisboa', date: '2026-12-05' },
      { env, today: '2026-12-01', fetch: fake([[200, daily]], urls) },
    );
    assert.deepEqual(
      { ...r, note: undefined },
      {
        city: 'Lisbon',
        country: 'Portugal',
        date: '2026-12-05',
        condition: 'rain',
        tempMinC: 9,
        tempMaxC: 15.3,
        precipMm: 6.2,
        windKph: 25,
        humidityPct: 81,
        source: 'open-meteo',
        summary: 'Lisbon, 2026-12-05: rain, 9.0 to 15.3 °C, precipitation 6.2 mm, wind 25 km/h, humidity 81%',
        note: undefined,
      },
    );
    assert.equal(urls.length, 1);
    assert.match(
      urls[0]!,
      /^https:\/\/api\.open-meteo\.com\/v1\/forecast\?latitude=38\.7223&longitude=-9\.1393&daily=.*&start_date=2026-12-05&end_date=2026-12-05$/,
    );
  });

  it('geocodes unknown cities and uses the archive for old dates', async () => {
    const urls: string[] = [];
    const geo = { results: [{ name: 'Porto', country: 'Portugal', latitude: 41.15, longitude: -8.61 }] };
    const r = await getWeather(
      { city: 'Porto', date: '2020-06-01' },
      {
        env,
        today: '2026-12-01',
        fetch: fake(
          [
            [200, geo],
            [200, daily],
          ],
          urls,
        ),
      },
    );
    assert.equal(r.city, 'Porto');
    assert.match(urls[0]!, /^https:\/\/geocoding-api\.open-meteo\.com\/v1\/search\?name=Porto/);
    assert.match(
      urls[1]!,
      /^https:\/\/archive-api\.open-meteo\.com\/v1\/archive\?latitude=41\.15&longitude=-8\.61/,
    );
  });

  it('explains unknown places, far-future dates and API errors', async () => {
    await rejectsWith(
      getWeather(
        { city: 'Atlantis', date: '2026-12-05' },
        { env, today: '2026-12-01', fetch: fake([[200, {}]]) },
      ),
      'UNKNOWN_CITY',
      /geocoder found no such place/,
    );
    await rejectsWith(
      getWeather(
        { city: 'Lisbon', date: '2027-06-01' },
        { env, today: '2026-12-01', fetch: fake([[200, daily]]) },
      ),
      'DATE_OUT_OF_RANGE',
      /reach 16 days ahead \(up to 2026-12-16\)/,
    );
    await rejectsWith(
      getWeather(
        { city: 'Lisbon', date: '2026-12-05' },
        {
          env,
          today: '2026-12-01',
          fetch: fake([[400, { error: true, reason: "Parameter 'daily' is invalid" }]]),
        },
      ),
      'PROVIDER_ERROR',
      /Open-Meteo failed: HTTP 400: Parameter 'daily' is invalid/,
    );
  });

  it('maps WMO weather codes', () => {
    assert.equal(conditionFromWmoCode(0), 'sunny');
    assert.equal(conditionFromWmoCode(2), 'partly cloudy');
    assert.equal(conditionFromWmoCode(45), 'fog');
    assert.equal(conditionFromWmoCode(53), 'drizzle');
    assert.equal(conditionFromWmoCode(82), 'heavy rain');
    assert.equal(conditionFromWmoCode(75), 'snow');
    assert.equal(conditionFromWmoCode(95), 'thunderstorm');
  });
});
