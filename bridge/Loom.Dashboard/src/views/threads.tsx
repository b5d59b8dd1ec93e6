import type { RunStep, ThreadDetail, ThreadList } from '../api';
import { age, clock, shortId } from '../format';
import { usePoll } from './hooks';

export function ThreadsView(props: { selected?: string }) {
  const list = usePoll<ThreadList>('v1/threads?limit=200', 2000);
  const detail = usePoll<ThreadDetail>(props.selected ? `v1/threads/${encodeURIComponent(props.selected)}` : null, 2000);
  if (list.error) return <div class="banner error">{list.error.message}</div>;
  return (
    <section data-testid="view-threads">
      <div class="card">
        <h3>Recent threads</h3>
        <table data-testid="threads">
          <thead>
            <tr>
              <th>thread</th>
              <th>agents</th>
              <th>events</th>
              <th>calls</th>
              <th>collab</th>
              <th>errors</th>
              <th>started</th>
              <th>span</th>
            </tr>
          </thead>
          <tbody>
            {(list.data?.threads ?? []).map((t) => (
              <tr class={t.id === props.selected ? 'selected' : ''} data-testid="thread-row" data-thread={t.id}>
                <td class="mono">
                  <a href={`#/threads/${encodeURIComponent(t.id)}`}>{t.id}</a>
                </td>
                <td>{t.agents.join(', ')}</td>
                <td>
                  {t.events}
                  {t.truncated ? '+' : ''}
                </td>
                <td>{t.calls}</td>
                <td>{t.collab}</td>
                <td class={t.errors ? 'bad' : ''}>{t.errors}</td>
                <td>{clock(t.first_unix_ms)}</td>
                <td>{age(t.last_unix_ms - t.first_unix_ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {list.data && list.data.threads.length === 0 ? <p class="muted">No thread seen yet: events and calls with a thread id appear here.</p> : null}
        <p class="muted small">
          From the bridge's run records ({list.data?.persistent ? 'kept on disk under its data directory' : 'kept in memory: the bridge has no data directory'}; {list.data?.total ?? 0} threads
          held, the 200 most recent shown). A thread still running updates every 2 seconds.
        </p>
      </div>
      {props.selected && detail.data ? <Swimlanes thread={detail.data} /> : null}
      {props.selected && detail.error ? <div class="banner error">{detail.error.message}</div> : null}
    </section>
  );
}

const LANE = 56;
const BAD_STEPS = new Set(['fallback', 'timeout', 'failed', 'no_quorum', 'no_bids', 'late', 'cancelled']);
const LEFT = 150;
const WIDTH = 1100;

function kindOf(m: RunStep): string {
  if (m.kind === 'call') return 'call';
  if (m.kind === 'collab' && m.step) return m.step;
  const collab = m.headers?.['loom-collab'];
  if (collab) return collab;
  try {
    const kind = m.payload && m.content_type.includes('json') ? (JSON.parse(m.payload) as { kind?: unknown }).kind : undefined;
    if (typeof kind === 'string') return kind;
  } catch {
    // A preview cut at the run records' preview_bytes is not whole JSON: its "kind" may still be there.
    const found = m.payload ? /"kind"\s*:\s*"([^"]{1,40})"/.exec(m.payload) : null;
    if (found) return found[1];
  }
  return m.correlation_id ? 'reply' : 'event';
}

export function Swimlanes(props: { thread: ThreadDetail }) {
  const { thread } = props;
  const marks = thread.steps;
  const lanes: string[] = [];
  for (const m of marks) {
    for (const a of [m.sender, m.target]) if (a && !lanes.includes(a) && a !== '_loom.collab') lanes.push(a);
  }
  if (marks.some((m) => m.sender === '_loom.collab')) lanes.push('_loom.collab');
  const start = thread.first_unix_ms;
  const end = Math.max(thread.last_unix_ms, start + 1);
  const x = (t: number) => LEFT + ((t - start) / (end - start)) * (WIDTH - LEFT - 40);
  const y = (agent: string) => 30 + lanes.indexOf(agent) * LANE + LANE / 2;
  const byId = new Map(marks.filter((m) => m.kind !== 'call').map((m) => [m.id, m]));
  const height = 30 + lanes.length * LANE + 20;
  const ticks = 6;
  return (
    <div class="card" data-testid="swimlanes">
      <h3>
        Thread {shortId(thread.id)} — {marks.length}
        {thread.truncated ? '+' : ''} marks over {age(end - start)}
      </h3>
      <svg viewBox={`0 0 ${WIDTH} ${height}`} width="100%" class="lanes">
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#8a94a6" />
          </marker>
          <marker id="arrow-bad" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#eb5757" />
          </marker>
        </defs>
        {Array.from({ length: ticks + 1 }, (_, i) => {
          const t = start + ((end - start) * i) / ticks;
          return (
            <g class="tick">
              <line x1={x(t)} x2={x(t)} y1={20} y2={height - 10} />
              <text x={x(t)} y={14}>
                +{age(Math.round(t - start))}
              </text>
            </g>
          );
        })}
        {lanes.map((a, i) => (
          <g class="lane" data-testid="lane" data-agent={a}>
            <rect x={0} y={30 + i * LANE} width={WIDTH} height={LANE} class={i % 2 ? 'odd' : 'even'} />
            <text x={8} y={30 + i * LANE + LANE / 2 + 4}>
              {a.length > 20 ? a.slice(0, 19) + '…' : a}
              <title>{a}</title>
            </text>
          </g>
        ))}
        {marks.map((m) => {
          // request → reply: an arrow from the request's mark to the reply's
          const request = m.kind !== 'call' && m.correlation_id ? byId.get(m.correlation_id) : undefined;
          if (!request || request === m || !lanes.includes(request.sender) || !lanes.includes(m.sender)) return null;
          return (
            <line
              class={`arrow ${m.error ? 'bad' : ''}`}
              data-testid="reply-arrow"
              x1={x(request.timestamp_unix_ms)}
              y1={y(request.sender)}
              x2={x(m.timestamp_unix_ms)}
              y2={y(m.sender)}
              marker-end={m.error ? 'url(#arrow-bad)' : 'url(#arrow)'}
            />
          );
        })}
        {marks.map((m) => {
          const kind = kindOf(m);
          const title = `${clock(m.timestamp_unix_ms)} ${m.kind === 'call' ? `call ${m.topic} ${m.sender} → ${m.target || '?'} ${m.duration_ms ?? 0} ms` : m.kind === 'collab' ? `${m.operation ?? ''} ${m.step ?? ''} (op ${m.op_id ?? ''}) by ${m.sender}` : `${m.topic} from ${m.sender}`}${m.error ? `\nerror: ${m.error}` : ''}${m.payload ? `\n${m.payload.slice(0, 200)}` : ''}`;
          if (m.kind === 'call') {
            const x1 = x(m.timestamp_unix_ms);
            const x2 = Math.max(x1 + 3, x(m.end_unix_ms ?? m.timestamp_unix_ms));
            const yc = y(m.sender);
            const yp = m.target && lanes.includes(m.target) ? y(m.target) : yc;
            return (
              <g class={`mark call ${m.error ? 'bad' : ''}`} data-testid="mark" data-kind="call" data-capability={m.topic}>
                <rect x={x1} y={yc - 7} width={x2 - x1} height={14} rx={3} />
                {yp !== yc ? <line x1={x1} y1={yc} x2={x1} y2={yp} class="call-line" marker-end="url(#arrow)" /> : null}
                {yp !== yc ? <line x1={x2} y1={yp} x2={x2} y2={yc} class="call-line" marker-end={m.error ? 'url(#arrow-bad)' : 'url(#arrow)'} /> : null}
                <text x={x1} y={yc - 10} class="mark-label">
                  {m.topic}
                </text>
                <title>{title}</title>
              </g>
            );
          }
          const cx = x(m.timestamp_unix_ms);
          const cy = y(m.sender);
          const collab = m.kind === 'collab' || !!m.headers?.['loom-collab'];
          const bad = !!m.error || (collab && BAD_STEPS.has(kind));
          return (
            <g class={`mark ${collab ? 'collab' : 'event'} ${bad ? 'bad' : ''}`} data-testid="mark" data-kind={kind} data-operation={m.operation ?? ''} data-topic={m.topic}>
              {collab ? <rect x={cx - 6} y={cy - 6} width={12} height={12} transform={`rotate(45 ${cx} ${cy})`} /> : <circle cx={cx} cy={cy} r={6} />}
              <text x={cx + 8} y={cy + 18} class="mark-label">
                {collab && m.operation && m.operation !== 'collab' ? `${m.operation.replace('_', '-')} ${kind}` : kind}
              </text>
              <title>{title}</title>
            </g>
          );
        })}
      </svg>
      <p class="muted small">Circles are events, diamonds collaboration operations (gather, barrier, contract-net cfp/bid/award), bars calls (caller lane, with arrows to and from the provider); arrows link a request to its reply; red is an error.</p>
    </div>
  );
}
