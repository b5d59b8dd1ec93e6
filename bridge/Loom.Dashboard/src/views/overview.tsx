import { useEffect, useMemo, useState } from 'preact/hooks';
import { openStream, type AgentRow, type Overview, type OverviewPoint, type StreamState } from '../api';
import { Chart } from '../chart';
import { age, count, rate } from '../format';
import { usePoll } from './hooks';
import { Spacer, useWindow } from '../virtual';

const DROP_REASONS = ['QueueFullDropOldest', 'QueueFullDropNewest', 'BlockTimeout', 'TtlExpired', 'HopLimit', 'SlowConsumer', 'MemoryLimit', 'TooLarge'];
const DROP_COLORS = ['#f2994a', '#eb5757', '#bb6bd9', '#56ccf2', '#f2c94c', '#ff7ab6', '#9b51e0', '#b0b0b0'];
const MAX_POINTS = 300;

export function OverviewView() {
  const [overview, setOverview] = useState<Overview | null>(null);
  const [points, setPoints] = useState<OverviewPoint[]>([]);
  const [stream, setStream] = useState<StreamState>({ state: 'connecting' });
  const [filter, setFilter] = useState('');

  useEffect(
    () =>
      openStream(
        'v1/stream/overview',
        (event, data) => {
          if (event === 'history') setPoints((JSON.parse(data) as { points: OverviewPoint[] }).points);
          else if (event === 'overview') {
            const o = JSON.parse(data) as Overview;
            setOverview(o);
            if (o.point) setPoints((p) => (p.length && p[p.length - 1]!.t >= o.point.t ? p : [...p, o.point].slice(-MAX_POINTS)));
          }
        },
        setStream,
      ),
    [],
  );

  const x = useMemo(() => points.map((p) => p.t / 1000), [points]);
  const traffic = useMemo(() => [x, points.map((p) => p.events), points.map((p) => p.deliveries)] as [number[], ...number[][]], [points]);
  const calls = useMemo(() => [x, points.map((p) => p.calls), points.map((p) => p.errors)] as [number[], ...number[][]], [points]);
  const drops = useMemo(() => [x, ...DROP_REASONS.map((r) => points.map((p) => p.drops[r] ?? 0))] as [number[], ...number[][]], [points]);
  const last = points[points.length - 1];
  // The bridge sends at most 200 agent rows a second (and counts the rest); a search runs on the bridge.
  const query = filter.trim();
  const search = usePoll<{ agents: AgentRow[]; total: number; matched: number }>(query ? `v1/overview/agents?q=${encodeURIComponent(query)}` : null, 2000);
  const agents = query ? (search.data?.agents ?? []) : (overview?.agents ?? []);
  const matched = query ? (search.data?.matched ?? 0) : (overview?.agents_total ?? 0);
  const states = overview?.agent_states ?? {};
  const rowsWindow = useWindow(agents.length);
  const live = Object.entries(states).reduce((n, [state, c]) => (state === 'gone' ? n : n + c), 0);

  return (
    <section data-testid="view-overview">
      <div class="tiles">
        <Tile label="agents" value={String(live)} testId="tile-agents" />
        <Tile label="events" value={rate(last?.events ?? 0)} sub={count(overview?.events_total ?? 0) + ' total'} testId="tile-events" />
        <Tile label="deliveries" value={rate(last?.deliveries ?? 0)} sub={count(overview?.delivered_total ?? 0) + ' total'} testId="tile-deliveries" />
        <Tile label="calls" value={rate(last?.calls ?? 0)} sub={count(overview?.calls_total ?? 0) + ' total'} testId="tile-calls" />
        <Tile label="errors" value={rate(last?.errors ?? 0)} sub={count(overview?.errors_total ?? 0) + ' total'} bad={(last?.errors ?? 0) > 0} testId="tile-errors" />
        <Tile
          label="drops"
          value={rate(Object.values(last?.drops ?? {}).reduce((a, b) => a + b, 0))}
          sub={count(Object.values(overview?.drops_total ?? {}).reduce((a, b) => a + b, 0)) + ' total'}
          bad={Object.keys(last?.drops ?? {}).length > 0}
          testId="tile-drops"
        />
        <span class={`stream ${stream.state}`} data-testid="stream-state" title={stream.error?.message}>
          {stream.state === 'open' ? 'live' : stream.state}
        </span>
      </div>
      <div class="charts">
        <Chart title="Events and deliveries /s" testId="chart-traffic" series={[{ label: 'events', color: '#56ccf2' }, { label: 'deliveries', color: '#6fcf97' }]} data={traffic} />
        <Chart title="Calls and errors /s" testId="chart-calls" series={[{ label: 'calls', color: '#bb86fc' }, { label: 'errors', color: '#eb5757' }]} data={calls} />
        <Chart title="Drops by reason /s" testId="chart-drops" series={DROP_REASONS.map((r, i) => ({ label: r, color: DROP_COLORS[i]! }))} data={drops} />
      </div>
      <div class="card">
        <div class="row">
          <h3>Agents</h3>
          <input placeholder="filter agents" value={filter} onInput={(e) => setFilter((e.target as HTMLInputElement).value)} data-testid="agent-filter" />
        </div>
        <div {...rowsWindow.box}>
        <table data-testid="agents">
          <thead>
            <tr>
              <th>agent</th>
              <th>name</th>
              <th>state</th>
              <th>language</th>
              <th>sdk</th>
              <th>heartbeat</th>
              <th>connected</th>
              <th>capabilities</th>
              <th>subscriptions</th>
            </tr>
          </thead>
          <tbody>
            <Spacer height={rowsWindow.padTop} columns={9} />
            {agents.slice(rowsWindow.first, rowsWindow.last).map((a) => (
              <tr key={a.agent_id} data-testid="agent-row" data-agent={a.name}>
                <td class="mono">{a.agent_id}</td>
                <td>{a.name}</td>
                <td>
                  <span class={`badge ${a.state}`}>{a.state}</span>
                </td>
                <td>{a.language}</td>
                <td class="mono">{a.sdk}</td>
                <td>{a.state === 'gone' ? `left ${a.gone_at ? age(Date.now() - Date.parse(a.gone_at)) + ' ago' : ''}` : age(a.last_seen_ms)}</td>
                <td>{new Date(a.connected_at).toLocaleTimeString('en-GB')}</td>
                <td>{a.capabilities.join(', ')}</td>
                <td class="mono small">{a.topics.join(' ')}</td>
              </tr>
            ))}
            <Spacer height={rowsWindow.padBottom} columns={9} />
          </tbody>
        </table>
        </div>
        {matched > agents.length ? (
          <p class="muted" data-testid="agents-more">
            {count(matched - agents.length)} more agents not shown ({Object.entries(states).map(([state, c]) => `${count(c)} ${state}`).join(', ')}); search to find one.
          </p>
        ) : null}
        {overview && overview.agents.length === 0 ? <p class="muted">No agent has connected yet.</p> : null}
      </div>
    </section>
  );
}

function Tile(props: { label: string; value: string; sub?: string; bad?: boolean; testId: string }) {
  return (
    <div class={`tile ${props.bad ? 'bad' : ''}`} data-testid={props.testId}>
      <div class="value">{props.value}</div>
      <div class="label">{props.label}</div>
      {props.sub ? <div class="sub">{props.sub}</div> : null}
    </div>
  );
}
