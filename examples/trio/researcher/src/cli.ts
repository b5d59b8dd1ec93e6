// Small command line for trying the Researcher's data by hand:
//   node dist/src/cli.js search "Lisbon landmarks" [limit]
//   node dist/src/cli.js weather Lisbon 2026-12-05
//   node dist/src/cli.js hint "Will it rain in Lisbon tomorrow?" [today]
import { weatherHint } from './plan-hints.js';
import { search } from './search.js';
import { getWeather, WeatherError } from './weather.js';

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'search' && rest[0]) {
    console.log(JSON.stringify(await search(rest[0], { limit: Number(rest[1] ?? 5) }), null, 2));
    return 0;
  }
  if (command === 'weather' && rest[0] && rest[1]) {
    console.log(JSON.stringify(await getWeather({ city: rest[0], date: rest[1] }), null, 2));
    return 0;
  }
  if (command === 'hint' && rest[0]) {
    console.log(JSON.stringify(weatherHint(rest[0], rest[1] ?? new Date()), null, 2));
    return 0;
  }
  console.error(
    'usage: cli.js search "<query>" [limit] | weather <city> <YYYY-MM-DD> | hint "<text>" [YYYY-MM-DD]',
  );
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(
      err instanceof WeatherError
        ? `${err.code}: ${err.message}`
        : err instanceof Error
          ? err.message
          : String(err),
    );
    process.exit(1);
  },
);
