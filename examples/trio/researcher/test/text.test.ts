import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { foldDiacritics, foldWithOffsets, nameKey, splitSentences, stem, tokenize } from '../src/text.js';

describe('text normalisation', () => {
  it('strips diacritics but keeps case', () => {
    assert.equal(foldDiacritics('São Paulo'), 'Sao Paulo');
    assert.equal(
      foldDiacritics('Reykjavík, Zürich, Kraków, Ciudad de México'),
      'Reykjavik, Zurich, Krakow, Ciudad de Mexico',
    );
    assert.equal(foldDiacritics('Straße Øresund Łódź'), 'Strasse Oresund Lodz');
    // decomposed input (a + combining tilde) folds the same way
    assert.equal(foldDiacritics('Sa\u0303o'), 'Sao');
  });

  it('maps folded offsets back to the original text', () => {
    const text = 'Weather in Straße São Paulo';
    const { folded, offsets } = foldWithOffsets(text);
    const at = folded.indexOf('Sao Paulo');
    assert.equal(text.slice(offsets[at], offsets[at + 'Sao Paulo'.length]), 'São Paulo');
  });

  it('builds name keys without punctuation', () => {
    assert.equal(nameKey('  L.A. '), 'l a');
    assert.equal(nameKey('São-Paulo'), 'sao paulo');
  });

  it('drops stop words and single letters, lowercases and stems', () => {
    assert.deepEqual(tokenize('What are the LANDMARKS of Lisbon?'), ['landmark', 'lisbon']);
    assert.deepEqual(tokenize('the of and a'), []);
    assert.deepEqual(tokenize("Lisbon's cities", { stem: false }), ['lisbon', 'cities']);
  });

  it('stems common variants to the same term', () => {
    const same = (words: string[]) => assert.equal(new Set(words.map(stem)).size, 1, words.join(', '));
    same(['landmark', 'landmarks']);
    same(['city', 'cities']);
    same(['rain', 'rains', 'rainy', 'raining', 'rained']);
    same(['beach', 'beaches']);
    same(['forecast', 'forecasts']);
    same(['sun', 'sunny']);
    same(['climate', 'climates']);
    assert.equal(stem('paris'), 'paris');
    assert.equal(stem('bus'), 'bus');
    assert.equal(stem('2026'), '2026');
  });

  it('splits sentences', () => {
    assert.deepEqual(splitSentences('It rains. It is 1,200 mm a year! Is it? Yes.'), [
      'It rains.',
      'It is 1,200 mm a year!',
      'Is it?',
      'Yes.',
    ]);
  });
});
