// live.js — the live feed of every room the person is in, over
// Messaging/Subscribe, reconnecting by itself.
//
// The feed keeps, per room, the last seq it has passed on (the cursor).
// Every (re)connection subscribes from those cursors, and events at or
// below a room's cursor are dropped, so a reconnect resumes with no gap
// and no duplicate. Presence events carry seq 0 and always pass. A session
// covers at most 64 rooms (the server's cap): more rooms, more streams.

import { ApiError, isTransient, subscribe } from './api.js';
import { sleep } from './dom.js';

const ROOMS_PER_STREAM = 64;
// The server sends a keep-alive every 15 s while idle: a line silent for
// this long is dead even if the socket does not know it yet.
const SILENCE_LIMIT_MS = 40000;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10000;

export class Live {
  // onEvents(Map roomId -> [Event]) for new events; onState('live' |
  // 'reconnecting' | 'idle', error); onRefused(ApiError) when the server
  // refuses the subscription itself (a room left elsewhere, the session
  // ended): the owner fixes the room set and calls setRooms again;
  // onForeign(Event) for an event of a room the feed does not hold (a
  // server whose sessions follow memberships sends those of a room
  // joined elsewhere): the owner looks at its rooms again.
  constructor(token, { onEvents, onState, onRefused, onForeign }) {
    this.token = token;
    this.onEvents = onEvents;
    this.onState = onState;
    this.onRefused = onRefused;
    this.onForeign = onForeign;
    this.cursors = new Map();
    this.ctl = null;
    this.down = new Set(); // streams not connected now
  }

  // cursors: Map roomId -> last seq already seen. Restarts every stream.
  setRooms(cursors) {
    for (const [room, seq] of cursors) {
      const had = this.cursors.get(room) ?? 0;
      this.cursors.set(room, Math.max(had, seq));
    }
    for (const room of [...this.cursors.keys()])
      if (!cursors.has(room)) this.cursors.delete(room);
    this.restart();
  }

  cursor(room) {
    return this.cursors.get(room) ?? 0;
  }

  restart() {
    this.stop();
    const ids = [...this.cursors.keys()].sort();
    if (ids.length === 0) {
      this.onState('idle');
      return;
    }
    this.ctl = new AbortController();
    this.down = new Set();
    for (let i = 0; i < ids.length; i += ROOMS_PER_STREAM)
      this.run(ids.slice(i, i + ROOMS_PER_STREAM), this.ctl.signal);
  }

  stop() {
    this.ctl?.abort();
    this.ctl = null;
  }

  async run(ids, signal) {
    const key = ids.join(',');
    let delay = RETRY_FIRST_MS;
    while (!signal.aborted) {
      const inner = new AbortController();
      const onAbort = () => inner.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      let timer = 0;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => inner.abort(), SILENCE_LIMIT_MS);
      };
      let failure = null;
      let opened = false;
      try {
        arm();
        const rooms = ids.map((id) => ({ roomId: id, sinceSeq: String(this.cursor(id)) }));
        await subscribe({ rooms }, {
          token: this.token,
          signal: inner.signal,
          onActivity: arm,
          onMessage: (m) => {
            if (!opened) {
              // The first message (the heads): this stream is up.
              opened = true;
              delay = RETRY_FIRST_MS;
              this.down.delete(key);
              this.onState(this.down.size === 0 ? 'live' : 'reconnecting');
            }
            this.take(m);
          },
        });
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && !isTransient(e)) {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          this.down.add(key);
          this.onRefused(e);
          return;
        }
        failure = e instanceof ApiError ? e : null;
      } finally {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      }
      if (signal.aborted) return;
      // A clean end (the server closing streams as it stops), a broken
      // line or silence: connect again from the cursors.
      this.down.add(key);
      this.onState('reconnecting', failure);
      const wait = Math.max(delay, failure?.retryAfterMs ?? 0);
      await sleep(wait * (0.75 + Math.random() / 2), signal);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  take(m) {
    const byRoom = new Map();
    for (const ev of m.events ?? []) {
      if (!this.cursors.has(ev.roomId)) {
        this.onForeign?.(ev);
        continue;
      }
      const seq = Number(ev.seq ?? 0);
      if (seq !== 0) {
        if (seq <= this.cursor(ev.roomId)) continue;
        this.cursors.set(ev.roomId, seq);
      }
      if (!byRoom.has(ev.roomId)) byRoom.set(ev.roomId, []);
      byRoom.get(ev.roomId).push(ev);
    }
    if (byRoom.size > 0) this.onEvents(byRoom);
  }
}
