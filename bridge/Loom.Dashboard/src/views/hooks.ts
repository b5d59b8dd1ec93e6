import { useEffect, useState } from 'preact/hooks';
import { ApiError, getJson } from '../api';

/** Polls a JSON view every intervalMs while mounted. */
export function usePoll<T>(path: string | null, intervalMs: number): { data: T | null; error: ApiError | null } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    if (!path) {
      setData(null);
      return undefined;
    }
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const controller = new AbortController();
    const tick = async () => {
      try {
        const value = await getJson<T>(path, controller.signal);
        if (!stopped) {
          setData(value);
          setError(null);
        }
      } catch (e) {
        if (!stopped) setError(e instanceof ApiError ? e : new ApiError(String(e), 0, 'UNAVAILABLE', { cause: e }));
      }
      if (!stopped) timer = setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      controller.abort();
      clearTimeout(timer);
    };
  }, [path, intervalMs]);
  return { data, error };
}
