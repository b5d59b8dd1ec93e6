// Heartbeat: one timer per session. A ping goes out when nothing was written for half an
// interval; a session that received nothing for 3 intervals is declared dead.
import { UnavailableError, type LoomError } from '../../errors.js';
import type { Session } from './state.js';
import type { Writer } from './writer.js';

export class Heartbeat {
  readonly #writer: Writer;
  readonly #onSilent: (session: Session, error: LoomError) => void;
  #sequence = 0;

  /** `onSilent`: the session is dead (its call was cancelled); the supervisor reconnects. */
  constructor(writer: Writer, onSilent: (session: Session, error: LoomError) => void) {
    this.#writer = writer;
    this.#onSilent = onSilent;
  }

  start(session: Session): void {
    session.heartbeat = setInterval(() => this.#tick(session), session.intervalMs);
  }

  stop(session: Session): void {
    clearInterval(session.heartbeat);
  }

  #tick(session: Session): void {
    if (session.ended) return;
    const now = Date.now();
    const silent = now - session.lastReceived;
    if (silent > session.intervalMs * 3) {
      session.call.cancel();
      this.#onSilent(
        session,
        new UnavailableError(
          `Nothing arrived from the bridge for ${silent} ms (3 heartbeat intervals of ${session.intervalMs} ms).`,
        ),
      );
      return;
    }
    if (now - session.lastWrite >= session.intervalMs / 2) {
      this.#writer.enqueue({ heartbeat: { sequence: ++this.#sequence, sentUnixMs: now } });
    }
  }
}
