import { useEffect, useState } from 'preact/hooks';
import { ApiError, postJson, type CallResult, type CapabilityCallStats, type CapabilityView, type JsonSchema } from '../api';
import { count } from '../format';
import { usePoll } from './hooks';

function typeOf(schema: JsonSchema): string {
  const t = Array.isArray(schema.type) ? schema.type.find((x) => x !== 'null') : schema.type;
  return t ?? (schema.properties ? 'object' : 'any');
}

/** Initial form values from the schema: defaults, else empty. */
function initial(schema: JsonSchema): Record<string, string | boolean> {
  const values: Record<string, string | boolean> = {};
  for (const [name, p] of Object.entries(schema.properties ?? {})) {
    const t = typeOf(p);
    if (t === 'boolean') values[name] = p.default === true;
    else if (p.default !== undefined) values[name] = t === 'string' ? String(p.default) : JSON.stringify(p.default);
    else values[name] = p.enum?.length ? String(p.enum[0]) : '';
  }
  return values;
}

/** The input JSON from the form's values, or an error naming the field to fix. */
export function toInput(schema: JsonSchema, values: Record<string, string | boolean>): { input?: unknown; error?: string } {
  const input: Record<string, unknown> = {};
  for (const [name, p] of Object.entries(schema.properties ?? {})) {
    const raw = values[name];
    const t = typeOf(p);
    const required = schema.required?.includes(name) ?? false;
    if (t === 'boolean') {
      input[name] = raw === true;
      continue;
    }
    if (raw === '' || raw === undefined) {
      if (required) return { error: `${name} is required` };
      continue;
    }
    if (t === 'string') input[name] = raw;
    else if (t === 'number' || t === 'integer') {
      const n = Number(raw);
      if (!Number.isFinite(n) || (t === 'integer' && !Number.isInteger(n))) return { error: `${name} must be ${t === 'integer' ? 'an integer' : 'a number'}` };
      input[name] = n;
    } else {
      try {
        input[name] = JSON.parse(String(raw));
      } catch {
        return { error: `${name} must be JSON (${t})` };
      }
    }
  }
  return { input };
}

function SchemaForm(props: { capability: CapabilityView; canCall: boolean }) {
  const schema = props.capability.input_schema;
  const structured = typeOf(schema) === 'object' && !!schema.properties && Object.keys(schema.properties).length > 0;
  const [values, setValues] = useState(() => initial(schema));
  const [raw, setRaw] = useState(!structured);
  const [text, setText] = useState('{}');
  const [result, setResult] = useState<CallResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    setValues(initial(schema));
    setResult(null);
    setError(null);
  }, [props.capability.name]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setResult(null);
    let body: string;
    if (raw) {
      try {
        body = JSON.stringify(JSON.parse(text));
      } catch {
        setError('The input is not JSON.');
        return;
      }
    } else {
      const built = toInput(schema, values);
      if (built.error) {
        setError(built.error);
        return;
      }
      body = JSON.stringify(built.input);
    }
    setBusy(true);
    try {
      setResult(await postJson<CallResult>(`v1/capabilities/${encodeURIComponent(props.capability.name)}/call`, body));
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card call" onSubmit={submit} data-testid="call-form">
      <div class="row">
        <h3>Call {props.capability.name}</h3>
        {structured ? (
          <label class="small">
            <input type="checkbox" checked={raw} onChange={(e) => setRaw((e.target as HTMLInputElement).checked)} /> raw JSON
          </label>
        ) : null}
      </div>
      {raw ? (
        <textarea rows={6} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} data-testid="call-raw" />
      ) : (
        Object.entries(schema.properties ?? {}).map(([name, p]) => {
          const t = typeOf(p);
          const set = (v: string | boolean) => setValues({ ...values, [name]: v });
          return (
            <label class="field">
              <span>
                {name}
                {schema.required?.includes(name) ? ' *' : ''} <em>{t}</em>
              </span>
              {t === 'boolean' ? (
                <input type="checkbox" data-testid={`field-${name}`} checked={values[name] === true} onChange={(e) => set((e.target as HTMLInputElement).checked)} />
              ) : p.enum ? (
                <select data-testid={`field-${name}`} value={String(values[name])} onChange={(e) => set((e.target as HTMLSelectElement).value)}>
                  {p.enum.map((v) => (
                    <option value={String(v)}>{String(v)}</option>
                  ))}
                </select>
              ) : (
                <input
                  data-testid={`field-${name}`}
                  type={t === 'number' || t === 'integer' ? 'number' : 'text'}
                  step={t === 'integer' ? 1 : 'any'}
                  placeholder={t === 'string' || t === 'number' || t === 'integer' ? (p.description ?? '') : `JSON ${t}`}
                  value={String(values[name] ?? '')}
                  onInput={(e) => set((e.target as HTMLInputElement).value)}
                />
              )}
            </label>
          );
        })
      )}
      <button type="submit" disabled={!props.canCall || busy} data-testid="call-submit" title={props.canCall ? '' : 'Calling needs an admin credential'}>
        {busy ? 'Calling…' : 'Call'}
      </button>
      {!props.canCall ? <p class="muted small">Calling needs an admin credential (loom token create --admin).</p> : null}
      {error ? <div class="banner error" data-testid="call-error">{error}</div> : null}
      {result ? (
        <div data-testid="call-result" class={result.ok ? 'ok' : 'bad'}>
          <p class="small">
            {result.ok ? 'ok' : result.code} from {result.provider || '—'} in {result.duration_ms} ms
          </p>
          <pre>{result.ok ? JSON.stringify(result.output, null, 2) : result.message}</pre>
        </div>
      ) : null}
    </form>
  );
}

export function CapabilitiesView(props: { selected?: string; canCall: boolean }) {
  const caps = usePoll<{ capabilities: CapabilityView[] }>('v1/capabilities', 3000);
  const stats = usePoll<{ capabilities: CapabilityCallStats[] }>('v1/capabilities/stats', 3000);
  if (caps.error) return <div class="banner error">{caps.error.message}</div>;
  if (!caps.data) return <p class="muted">Loading…</p>;
  const byName = new Map((stats.data?.capabilities ?? []).map((s) => [s.name, s]));
  const selected = caps.data.capabilities.find((c) => c.name === props.selected);
  return (
    <section data-testid="view-capabilities" class="split">
      <div class="card">
        <h3>Capabilities</h3>
        <table data-testid="capabilities">
          <thead>
            <tr>
              <th>name</th>
              <th>version</th>
              <th>providers</th>
              <th>calls</th>
              <th>errors</th>
              <th>p50 / p90 / p99 ms</th>
            </tr>
          </thead>
          <tbody>
            {caps.data.capabilities.map((c) => {
              const s = byName.get(c.name);
              return (
                <tr class={c.name === props.selected ? 'selected' : ''} data-testid="capability-row" data-capability={c.name}>
                  <td>
                    <a href={`#/capabilities/${encodeURIComponent(c.name)}`}>{c.name}</a>
                  </td>
                  <td>{c.version}</td>
                  <td>{c.providers.map((p) => p.agent_id).join(', ')}</td>
                  <td>{count(s?.calls ?? 0)}</td>
                  <td class={s?.errors ? 'bad' : ''}>{count(s?.errors ?? 0)}</td>
                  <td>{s ? `${s.p50_ms} / ${s.p90_ms} / ${s.p99_ms}` : '—'}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {caps.data.capabilities.length === 0 ? <p class="muted">No capability is registered.</p> : null}
      </div>
      {selected ? (
        <div class="detail" data-testid="capability-detail">
          <div class="card">
            <h3>{selected.name}</h3>
            <p>{selected.description}</p>
            <table>
              <thead>
                <tr>
                  <th>provider</th>
                  <th>healthy</th>
                  <th>in flight</th>
                  <th>calls</th>
                  <th>failures</th>
                  <th>latency (ewma)</th>
                </tr>
              </thead>
              <tbody>
                {selected.providers.map((p) => (
                  <tr>
                    <td class="mono">{p.agent_id}</td>
                    <td>{p.healthy ? 'yes' : <span class="bad">no</span>}</td>
                    <td>{p.in_flight}</td>
                    <td>{p.calls}</td>
                    <td>{p.failures}</td>
                    <td>{p.latency_ewma_ms} ms</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {byName.get(selected.name)?.errors ? (
              <p class="bad small">
                errors:{' '}
                {Object.entries(byName.get(selected.name)!.errors_by_code)
                  .map(([k, v]) => `${k} ${v}`)
                  .join(', ')}
              </p>
            ) : null}
            <details>
              <summary>input schema</summary>
              <pre>{JSON.stringify(selected.input_schema, null, 2)}</pre>
            </details>
            <details>
              <summary>output schema</summary>
              <pre>{JSON.stringify(selected.output_schema, null, 2)}</pre>
            </details>
          </div>
          <SchemaForm capability={selected} canCall={props.canCall} />
        </div>
      ) : null}
    </section>
  );
}
