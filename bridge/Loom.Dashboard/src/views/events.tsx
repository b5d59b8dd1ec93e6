import { useEffect, useRef, useState } from 'preact/hooks';
import { openStream, type RecordedEvent, type StreamState } from '../api';
import { clock, shortId } from '../format';
import { Spacer, useWindow } from '../virtual';

const MAX_ROWS = 500;
/** Events arriving between two renders are kept (at most MAX_ROWS) and drawn together, at most every FLUSH_MS. */
const FLUSH_MS = 250;
type Filters = { topic: string; agent: string; thread: string; correlation: string };
const EMPTY: Filters = { topic: '', agent: '', thread: '', correlation: '' };

export function EventsView() {
  const [draft, setDraft] = useState<Filters>(EMPTY);
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [rows, setRows] = useState<RecordedEvent[]>([]);
  const [paused, setPaused] = useState(false);
  const [missed, setMissed] = useState(0);
  const [skipped, setSkipped] = useState(0);
  const [selected, setSelected] = useState<RecordedEvent | null>(null);
  const [stream, setStream] = useState<StreamState>({ state: 'connecting' });
  const pausedRef = useRef(false);
  pausedRef.current = paused;

  useEffect(() => {
    setRows([]);
    setSkipped(0);
    let active = true;
    let pending: RecordedEvent[] = [];
    let missedNow = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      if (!active) return;
      const batch = pending.reverse();
      pending = [];
      if (batch.length) setRows((r) => [...batch, ...r].slice(0, MAX_ROWS));
      if (missedNow) {
        const m = missedNow;
        missedNow = 0;
        setMissed((x) => x + m);
      }
    };
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    const stop = openStream(
      `v1/stream/events?${query}`,
      (event, data) => {
        if (!active) return;
        if (event === 'skipped') {
          setSkipped(Number(data));
          return;
        }
        const incoming = event === 'backlog' ? (JSON.parse(data) as { events: RecordedEvent[] }).events : event === 'event' ? [JSON.parse(data) as RecordedEvent] : [];
        if (pausedRef.current) missedNow += incoming.length;
        else {
          pending.push(...incoming);
          if (pending.length > MAX_ROWS) pending.splice(0, pending.length - MAX_ROWS);
        }
        timer ??= setTimeout(flush, FLUSH_MS);
      },
      setStream,
    );
    return () => {
      active = false;
      clearTimeout(timer);
      stop();
    };
  }, [filters]);

  const rowsWindow = useWindow(rows.length);
  const field = (name: keyof Filters, placeholder: string) => (
    <input placeholder={placeholder} value={draft[name]} data-testid={`filter-${name}`} onInput={(e) => setDraft({ ...draft, [name]: (e.target as HTMLInputElement).value })} />
  );

  return (
    <section data-testid="view-events" class="split">
      <div class="card">
        <form
          class="filters"
          onSubmit={(e) => {
            e.preventDefault();
            setFilters({ ...draft });
          }}
        >
          {field('topic', 'topic pattern (thread.*.reply, thread.>)')}
          {field('agent', 'agent id')}
          {field('thread', 'thread id')}
          {field('correlation', 'correlation id')}
          <button type="submit" data-testid="filter-apply">
            Apply
          </button>
          <button
            type="button"
            data-testid="pause"
            onClick={() => {
              setPaused(!paused);
              setMissed(0);
            }}
          >
            {paused ? `Resume (${missed} new)` : 'Pause'}
          </button>
          <span class={`stream ${stream.state}`} data-testid="stream-state" title={stream.error?.message}>
            {stream.state === 'open' ? 'live' : stream.state}
          </span>
        </form>
        {stream.error ? <div class="banner error">{stream.error.message}</div> : null}
        {skipped ? <p class="muted small">{skipped} events were not sent to this page (its rate cap); narrow the filters to see them all.</p> : null}
        <div {...rowsWindow.box}>
        <table data-testid="events">
          <thead>
            <tr>
              <th>time</th>
              <th>kind</th>
              <th>topic / capability</th>
              <th>from</th>
              <th>thread</th>
              <th>correlation</th>
            </tr>
          </thead>
          <tbody>
            <Spacer height={rowsWindow.padTop} columns={6} />
            {rows.slice(rowsWindow.first, rowsWindow.last).map((e) => (
              <tr key={e.seq} data-testid="event-row" data-topic={e.topic} class={`${e.error ? 'bad' : ''} ${selected?.seq === e.seq ? 'selected' : ''}`} onClick={() => setSelected(e)}>
                <td class="mono small">{clock(e.timestamp_unix_ms)}</td>
                <td>{e.kind === 'call' ? 'call' : (e.headers?.['loom-collab'] ?? 'event')}</td>
                <td class="mono">{e.topic}</td>
                <td class="mono">{e.sender}{e.target ? ` → ${e.target}` : ''}</td>
                <td class="mono small">{shortId(e.thread_id)}</td>
                <td class="mono small">{shortId(e.correlation_id)}</td>
              </tr>
            ))}
            <Spacer height={rowsWindow.padBottom} columns={6} />
          </tbody>
        </table>
        </div>
        {rows.length === 0 ? <p class="muted">No event matches yet.</p> : null}
      </div>
      {selected ? (
        <div class="card detail" data-testid="envelope">
          <div class="row">
            <h3>{selected.kind === 'call' ? 'Call' : 'Envelope'}</h3>
            <button type="button" onClick={() => setSelected(null)}>
              close
            </button>
          </div>
          <pre data-testid="envelope-json">{JSON.stringify(withPayload(selected), null, 2)}</pre>
        </div>
      ) : null}
    </section>
  );
}

function withPayload(e: RecordedEvent): unknown {
  if (e.payload && e.content_type.includes('json') && !e.payload_truncated) {
    try {
      return { ...e, payload: JSON.parse(e.payload) };
    } catch {
      return e;
    }
  }
  return e;
}
