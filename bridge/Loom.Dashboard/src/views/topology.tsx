import type { Topology } from '../api';
import { rate } from '../format';
import { usePoll } from './hooks';

interface Edge {
  from: string;
  to: string;
  label?: string;
  bad?: boolean;
}

/** Three columns of nodes with curved edges between neighbouring columns. */
function Flow(props: { columns: [string, string[]][]; edges: [Edge[], Edge[]]; testId: string }) {
  const rowHeight = 26;
  const width = 960;
  const colX = [20, 370, 720];
  const boxWidth = 220;
  const rows = Math.max(1, ...props.columns.map(([, nodes]) => nodes.length));
  const height = rows * rowHeight + 40;
  const y = (col: number, node: string) => 40 + props.columns[col]![1].indexOf(node) * rowHeight;
  return (
    <svg class="flow" data-testid={props.testId} viewBox={`0 0 ${width} ${height}`} width="100%" style={{ maxHeight: `${Math.max(160, height)}px` }}>
      {props.columns.map(([title], c) => (
        <text x={colX[c]} y={18} class="col-title">
          {title}
        </text>
      ))}
      {props.edges.map((edges, c) =>
        edges.map((e) => {
          const y1 = y(c, e.from) + 9;
          const y2 = y(c + 1, e.to) + 9;
          if (y1 < 40 || y2 < 40) return null;
          const x1 = colX[c]! + boxWidth;
          const x2 = colX[c + 1]!;
          const mid = (x1 + x2) / 2;
          return (
            <g class={`edge ${e.bad ? 'bad' : ''}`}>
              <path d={`M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`} />
              {e.label ? (
                <text x={mid} y={(y1 + y2) / 2 - 3} class="edge-label">
                  {e.label}
                </text>
              ) : null}
            </g>
          );
        }),
      )}
      {props.columns.map(([, nodes], c) =>
        nodes.map((n, i) => (
          <g class="node" data-testid="flow-node" data-node={n}>
            <rect x={colX[c]} y={40 + i * rowHeight - 4} width={boxWidth} height={rowHeight - 6} rx={4} />
            <text x={colX[c]! + 8} y={40 + i * rowHeight + 12}>
              {n.length > 32 ? n.slice(0, 31) + '…' : n}
              <title>{n}</title>
            </text>
          </g>
        )),
      )}
    </svg>
  );
}

export function TopologyView() {
  // The bridge keeps the busiest nodes of each column and folds the rest into "(N more …)" nodes.
  const { data, error } = usePoll<Topology>('v1/topology', 2000);
  if (error) return <div class="banner error">{error.message}</div>;
  if (!data) return <p class="muted">Loading…</p>;
  const topics = [...new Set(data.publishes.map((p) => p.to))].sort();
  const publishers = [...new Set(data.publishes.map((p) => p.from))].sort();
  const subscribeEdges: Edge[] = data.subscribes.map((s) => ({ from: s.topic, to: s.agent, label: s.depth ? `queued ${s.depth}` : undefined }));
  const subscribers = [...new Set(subscribeEdges.map((e) => e.to))].sort();
  const capabilities = [...new Set([...data.calls.map((c) => c.to), ...data.provides.map((p) => p.capability)])].sort();
  const callers = [...new Set(data.calls.map((c) => c.from))].sort();
  const providers = [...new Set(data.provides.map((p) => p.agent))].sort();
  const hidden = data.hidden;
  const cut = hidden.publishers + hidden.topics + hidden.subscribers + hidden.callers + hidden.capabilities + hidden.providers > 0;
  return (
    <section data-testid="view-topology">
      <div class="card">
        <h3>Events: publishers → topics → subscribers</h3>
        {topics.length === 0 ? (
          <p class="muted">No event has been published yet.</p>
        ) : (
          <Flow
            testId="flow-events"
            columns={[
              ['publishers', publishers],
              ['topics', topics],
              ['subscribers', subscribers],
            ]}
            edges={[data.publishes.map((p) => ({ from: p.from, to: p.to, label: `${rate(p.rate)} (${p.count})` })), subscribeEdges]}
          />
        )}
        <p class="muted small">
          Rates are over the last second; counts since the bridge started. Subscribers are drawn for every pattern that matches a topic shown.
          {cut ? ` Only the ${data.limit} busiest nodes of each column are drawn; the rest are summed into the "(N more …)" nodes.` : ''}
        </p>
      </div>
      <div class="card">
        <h3>Calls: callers → capabilities → providers</h3>
        {capabilities.length === 0 ? (
          <p class="muted">No capability is registered or called.</p>
        ) : (
          <Flow
            testId="flow-calls"
            columns={[
              ['callers', callers],
              ['capabilities', capabilities],
              ['providers', providers],
            ]}
            edges={[data.calls.map((c) => ({ from: c.from, to: c.to, label: `${rate(c.rate)} (${c.count})` })), data.provides.map((p) => ({ from: p.capability, to: p.agent }))]}
          />
        )}
      </div>
    </section>
  );
}
