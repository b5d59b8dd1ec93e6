/**
 * Topic matching, as the bridge does it (`core/Loom.Core/Topics.cs`; the cases are in
 * `tests/vectors/topics.json`).
 * @module
 */
import { validatePattern, validateTopic } from './internal/util.js';

function valid(check: () => void): boolean {
  try {
    check();
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a concrete `topic` matches a subscription `pattern` (`*` one token, `>` one or more
 * tokens, last only). An invalid pattern or topic matches nothing; it never throws.
 */
export function matches(pattern: string, topic: string): boolean {
  if (!valid(() => validatePattern(pattern)) || !valid(() => validateTopic(topic))) return false;
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    const token = p[i];
    if (token === '>') return t.length > i;
    if (i >= t.length || (token !== '*' && token !== t[i])) return false;
  }
  return p.length === t.length;
}
