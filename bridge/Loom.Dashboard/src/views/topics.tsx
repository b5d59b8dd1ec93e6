import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import type { TopicList } from '../api';
import { count } from '../format';
import { usePoll } from './hooks';

function drops(d: Record<string, number>): string {
  return Object.entries(d)
    .map(([k, v]) => `${k} ${count(v)}`)
    .join(', ');
}

export function TopicsView() {
  // The bridge lists the busiest 100 topics matching the search (and up to 20 subscriptions each).
  const [filter, setFilter] = useState('');
  const query = filter.trim();
  const { data, error } = usePoll<TopicList>(query ? `v1/topics?q=${encodeURIComponent(query)}` : 'v1/topics', 2000);
  if (error) return <div class="banner error">{error.message}</div>;
  if (!data) return <p class="muted">Loading…</p>;
  const topics = data.topics;
  return (
    <section data-testid="view-topics" class="card">
      <div class="row">
        <h3>Topics</h3>
        <input placeholder="filter topics" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} data-testid="topic-filter" />
      </div>
      <table data-testid="topics">
        <thead>
          <tr>
            <th>topic</th>
            <th>group</th>
            <th>published</th>
            <th>delivered</th>
            <th>no subscriber</th>
            <th>dropped</th>
          </tr>
        </thead>
        <tbody>
          {topics.map((t) => (
            <Fragment key={t.topic}>
              <tr data-testid="topic-row" data-topic={t.topic}>
                <td class="mono">{t.topic}</td>
                <td class="mono">{t.group}</td>
                <td>{count(t.published)}</td>
                <td>{count(t.delivered)}</td>
                <td>{count(t.no_subscribers)}</td>
                <td class={t.dropped_total ? 'bad' : ''}>{t.dropped_total ? `${count(t.dropped_total)} (${drops(t.dropped)})` : '0'}</td>
              </tr>
              {t.subscriptions.map((s) => (
                <tr class="sub-row">
                  <td class="mono small indent">↳ {s.agent}</td>
                  <td class="mono small">{s.pattern}</td>
                  <td class="small">
                    {s.qos} / {s.overflow}
                  </td>
                  <td class="small">
                    queue {s.depth}/{s.capacity}
                  </td>
                  <td />
                  <td class={`small ${s.dropped_total ? 'bad' : ''}`}>{s.dropped_total ? `${count(s.dropped_total)} by ${s.overflow} (${drops(s.dropped)})` : ''}</td>
                </tr>
              ))}
              {t.subscriptions_total > t.subscriptions.length ? (
                <tr class="sub-row">
                  <td class="muted small indent" colSpan={6}>
                    ↳ {count(t.subscriptions_total - t.subscriptions.length)} more subscriptions
                  </td>
                </tr>
              ) : null}
            </Fragment>
          ))}
        </tbody>
      </table>
      {data.truncated ? (
        <p class="muted" data-testid="topics-more">
          The {topics.length} busiest of {count(data.matched)} {query ? 'matching ' : ''}topics are listed ({count(data.total)} in all); search to find others.
        </p>
      ) : null}
      {topics.length === 0 ? <p class="muted">No topic yet.</p> : null}
    </section>
  );
}
