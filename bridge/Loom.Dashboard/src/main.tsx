import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { getJson, getToken, onTokenChange, setToken, type WhoAmI, ApiError } from './api';
import { OverviewView } from './views/overview';
import { TopologyView } from './views/topology';
import { TopicsView } from './views/topics';
import { CapabilitiesView } from './views/capabilities';
import { EventsView } from './views/events';
import { ThreadsView } from './views/threads';
import './style.css';

const views = [
  ['overview', 'Overview'],
  ['topology', 'Topology'],
  ['topics', 'Topics'],
  ['capabilities', 'Capabilities'],
  ['events', 'Live events'],
  ['threads', 'Threads'],
] as const;

function useRoute(): string[] {
  const read = () => (location.hash.replace(/^#\/?/, '') || 'overview').split('/').map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function TokenBox(props: { who: WhoAmI | null; error: ApiError | null }) {
  const [value, setValue] = useState(getToken());
  const needs = props.error && (props.error.status === 401 || props.error.status === 403);
  if (props.who && !props.who.auth) return <span class="who" data-testid="who">auth off</span>;
  return (
    <form
      class="token"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value);
      }}
    >
      {props.who && props.who.level !== 'none' ? (
        <span class="who" data-testid="who">
          {props.who.identity ?? '?'} ({props.who.level})
        </span>
      ) : null}
      <input
        type="password"
        placeholder={needs ? 'token needed: loom token create --read-only' : 'bearer token'}
        value={value}
        data-testid="token"
        onInput={(e) => setValue((e.target as HTMLInputElement).value)}
      />
      <button type="submit" data-testid="token-save">
        Use
      </button>
    </form>
  );
}

function App() {
  const route = useRoute();
  const [who, setWho] = useState<WhoAmI | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [tokenVersion, setTokenVersion] = useState(0);
  useEffect(() => onTokenChange(() => setTokenVersion((v) => v + 1)), []);
  useEffect(() => {
    getJson<WhoAmI>('v1/whoami')
      .then((w) => {
        setWho(w);
        setError(null);
      })
      .catch((e: unknown) => setError(e instanceof ApiError ? e : new ApiError(String(e), 0, 'UNAVAILABLE')));
  }, [tokenVersion]);
  const view = route[0] ?? 'overview';
  return (
    <div class="shell">
      <header>
        <span class="brand">Loom</span>
        <nav>
          {views.map(([id, label]) => (
            <a href={`#/${id}`} class={view === id ? 'active' : ''} data-testid={`nav-${id}`}>
              {label}
            </a>
          ))}
        </nav>
        <TokenBox who={who} error={error} />
      </header>
      {error ? (
        <div class="banner error" data-testid="auth-error">
          {error.message}
        </div>
      ) : null}
      <main key={tokenVersion}>
        {view === 'overview' && <OverviewView />}
        {view === 'topology' && <TopologyView />}
        {view === 'topics' && <TopicsView />}
        {view === 'capabilities' && <CapabilitiesView selected={route[1]} canCall={who?.level === 'admin'} />}
        {view === 'events' && <EventsView />}
        {view === 'threads' && <ThreadsView selected={route[1]} />}
      </main>
    </div>
  );
}

render(<App />, document.getElementById('app')!);
