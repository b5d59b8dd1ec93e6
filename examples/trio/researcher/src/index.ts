// Public surface of the Researcher's domain logic.
export * from './search.js';
export * from './weather.js';
export * from './plan-hints.js';
export { type CityInfo, CityRegistry, cityRegistry } from './cities.js';
export { dataDir, DATA_DIR_ENV } from './data-dir.js';
export { foldDiacritics, normalizeText, stem, tokenize, splitSentences, STOP_WORDS } from './text.js';
