// Text normalisation shared by search, weather and plan hints: diacritic
// folding, tokenising, stop words, a light suffix-stripping stemmer and a
// sentence splitter.

// Letters that Unicode NFKD does not decompose into base letter + mark.
const SPECIAL_FOLDS: Readonly<Record<string, string>> = {
  ß: 'ss',
  ẞ: 'SS',
  æ: 'ae',
  Æ: 'AE',
  œ: 'oe',
  Œ: 'OE',
  ø: 'o',
  Ø: 'O',
  đ: 'd',
  Đ: 'D',
  ð: 'd',
  Ð: 'D',
  þ: 'th',
  Þ: 'TH',
  ł: 'l',
  Ł: 'L',
  ı: 'i',
  '’': "'",
  '‘': "'",
};

const COMBINING_MARKS = /\p{M}+/gu;

/** Folds one character: strips diacritics ("ã" -> "a") but keeps case. */
function foldChar(ch: string): string {
  const special = SPECIAL_FOLDS[ch];
  if (special !== undefined) return special;
  return ch.normalize('NFKD').replace(COMBINING_MARKS, '');
}

const SPECIAL_RE = new RegExp(`[${Object.keys(SPECIAL_FOLDS).join('')}]`, 'gu');
const ASCII_ONLY = /^[\x00-\x7f]*$/;

/** Strips diacritics and compatibility forms, keeping case: "São Paulo" -> "Sao Paulo". */
export function foldDiacritics(text: string): string {
  if (ASCII_ONLY.test(text)) return text;
  return text
    .normalize('NFC')
    .replace(SPECIAL_RE, (ch) => SPECIAL_FOLDS[ch] ?? ch)
    .normalize('NFKD')
    .replace(COMBINING_MARKS, '');
}

/**
 * Like {@link foldDiacritics}, but also returns for each character of the
 * folded string the index of the character it came from in `text`, so matches
 * found in folded text can be reported at their original position.
 */
export function foldWithOffsets(text: string): { folded: string; offsets: number[] } {
  let folded = '';
  const offsets: number[] = [];
  let index = 0;
  for (const ch of text) {
    const f = ch.normalize('NFC').normalize('NFKD').replace(COMBINING_MARKS, '');
    const piece = SPECIAL_FOLDS[ch] ?? f;
    for (let i = 0; i < piece.length; i++) offsets.push(index);
    folded += piece;
    index += ch.length;
  }
  offsets.push(index);
  return { folded, offsets };
}

/** Lower-cased, diacritic-free form used for all comparisons. */
export function normalizeText(text: string): string {
  return foldDiacritics(text).toLowerCase();
}

/** A canonical key for names: "  L.A. " -> "l a", "São-Paulo" -> "sao paulo". */
export function nameKey(name: string): string {
  return normalizeText(name)
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();
}

export const STOP_WORDS: ReadonlySet<string> = new Set(
  (
    'a about above after again against all also am an and any are aren as at be because been before being below ' +
    'between both but by can could did do does doing don down during each few for from further had has have having ' +
    'he her here hers herself him himself his how i if in into is isn it its itself just let me more most my myself ' +
    'no nor not now of off on once only or other our ours ourselves out over own same she should so some such than ' +
    'that the their theirs them themselves then there these they this those through to too under until up very was ' +
    'we were what when where which while who whom why will with would you your yours yourself yourselves ' +
    'tell please give know like want get s t d ll m re ve'
  ).split(' '),
);

const VOWEL = /[aeiouy]/;

function undouble(w: string): string {
  const n = w.length;
  if (n >= 3 && w[n - 1] === w[n - 2] && !'lsz'.includes(w[n - 1]!) && !VOWEL.test(w[n - 1]!)) {
    return w.slice(0, -1);
  }
  return w;
}

/**
 * A light English suffix stripper (plurals, -ing, -ed, -y, final -e). It is
 * deliberately simple: what matters is that the same word always maps to the
 * same stem, and that common variants meet ("landmarks" / "landmark",
 * "rainy" / "raining" / "rain", "cities" / "city").
 */
export function stem(word: string): string {
  let w = word;
  if (w.length <= 3 || /\d/.test(w)) return w;
  if (w.endsWith('ies') && w.length > 4) w = w.slice(0, -3) + 'y';
  else if (w.endsWith('sses')) w = w.slice(0, -2);
  else if (/(?:ch|sh|x|z)es$/.test(w)) w = w.slice(0, -2);
  else if (w.endsWith('s') && !/(?:ss|us|is|os)$/.test(w)) w = w.slice(0, -1);

  if (w.length > 5 && w.endsWith('ing') && VOWEL.test(w.slice(0, -3))) w = undouble(w.slice(0, -3));
  else if (w.length > 4 && w.endsWith('ed') && VOWEL.test(w.slice(0, -2))) w = undouble(w.slice(0, -2));

  if (w.length > 4 && w.endsWith('y') && !VOWEL.test(w[w.length - 2]!)) w = undouble(w.slice(0, -1));
  if (w.length > 4 && w.endsWith('e') && !w.endsWith('ee')) w = w.slice(0, -1);
  return w;
}

const stemCache = new Map<string, string>();

function cachedStem(word: string): string {
  let s = stemCache.get(word);
  if (s === undefined) {
    s = stem(word);
    if (stemCache.size < 100_000) stemCache.set(word, s);
  }
  return s;
}

export interface TokenizeOptions {
  /** Drop stop words (default true). */
  stopWords?: boolean;
  /** Apply {@link stem} (default true). */
  stem?: boolean;
}

/** Splits text into normalised terms: lower case, no diacritics, no stop words, stemmed. */
export function tokenize(text: string, options: TokenizeOptions = {}): string[] {
  const dropStop = options.stopWords ?? true;
  const doStem = options.stem ?? true;
  const out: string[] = [];
  for (const raw of normalizeText(text).split(/[^\p{L}\p{N}]+/u)) {
    if (raw.length === 0) continue;
    if (raw.length === 1 && !/\d/.test(raw)) continue;
    if (dropStop && STOP_WORDS.has(raw)) continue;
    out.push(doStem ? cachedStem(raw) : raw);
  }
  return out;
}

/** Splits prose into sentences on ., ! or ? followed by space and a capital, digit or quote. */
export function splitSentences(text: string): string[] {
  return text
    .split(/(?<=[.!?])\s+(?=[\p{Lu}\p{N}"“(])/u)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
