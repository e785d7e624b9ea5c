// room.js — one room's timeline on screen: the latest events from
// History.GetHistory, older ones as the person scrolls up (before_seq),
// live ones from the feed, and the person's own messages from typing to
// acknowledged.
//
// Every persisted event sits at its seq, once (a Map by seq drops
// repeats from history, the feed and Send's answer alike). Notices of
// presence (seq 0) sit after the last event seen when they arrived; own
// messages not yet acknowledged sit below everything. Sends go out one at
// a time in the order typed, each with its client_msg_id, retried with the
// same id while the server is away (so a retry never makes a second
// copy), and marked failed with Retry and Discard when they cannot go.

import { call, describe, isTransient } from './api.js';
import { h, randomId, sleep, timeEl } from './dom.js';

const PAGE = 50;
const SEND_TIMEOUT_MS = 10000;
// How long a message keeps being retried while the server is away before
// it is marked failed (and offered for a retry by hand).
const SEND_GIVE_UP_MS = 30000;
// Presence comes per feed connection: a page that reconnects goes offline
// and online again at once. An offline notice waits this long and is
// dropped if the person comes back meanwhile.
const OFFLINE_GRACE_MS = 3000;

export class Timeline {
  // ctx: { token(), me, nameOf(userId), announce(text), onError(text),
  //        onSessionEnded(), onSent(roomId, seq), focusComposer(),
  //        mutate(timeline, fn, older): runs fn, which changes the list,
  //        keeping the view where the person had it }
  constructor(roomId, ctx) {
    this.roomId = roomId;
    this.ctx = ctx;
    this.list = h('ol', { class: 'log', id: 'log' });
    this.bySeq = new Map();
    this.pending = new Map(); // client_msg_id -> {li, text, state}
    this.queue = [];
    this.sending = false;
    this.oldest = Infinity; // lowest seq on screen
    this.newest = 0;	    // highest seq on screen
    this.hasOlder = true;
    this.loadingOlder = false;
    this.ready = false;	    // the first page is in
    this.early = [];	    // feed events that came before it
    this.onTop = null;	    // (text) what the top of the log says
    this.presence = new Map(); // userId -> 'ONLINE' | 'OFFLINE' last shown
    this.offline = new Map();  // userId -> timer of an offline notice held back
  }

  // Loads the latest page; feed events that arrive meanwhile wait in
  // this.early and are merged after it (by seq, so nothing is lost or
  // shown twice).
  async start() {
    let r;
    try {
      r = await call('History/GetHistory', { roomId: this.roomId, limit: PAGE },
        { token: this.ctx.token() });
    } catch (e) {
      if (e.code === 'unauthenticated') return this.ctx.onSessionEnded();
      this.ctx.onError(describe(e, 'Could not load the messages of this room'));
      // Try again a little later: the feed keeps the live part meanwhile.
      await sleep(2000);
      if (!this.dropped) return this.start();
      return;
    }
    this.ctx.mutate(this, () => {
      for (const ev of r.events ?? []) this.insert(ev, false);
      this.ready = true;
      for (const ev of this.early) this.insert(ev, false);
    }, false);
    this.hasOlder = Boolean(r.hasMore) && (r.events ?? []).length > 0;
    this.early = [];
    this.updateTop();
  }

  drop() {
    this.dropped = true;
  }

  // New events from the feed. live: announce others' messages (insert
  // also takes 'held': an offline notice whose grace time passed).
  take(events, live) {
    if (!this.ready) {
      this.early.push(...events);
      return;
    }
    this.ctx.mutate(this, () => {
      for (const ev of events) this.insert(ev, live);
    }, false);
  }

  async loadOlder() {
    if (!this.ready || !this.hasOlder || this.loadingOlder || this.oldest === Infinity) return false;
    this.loadingOlder = true;
    this.updateTop();
    try {
      const r = await call('History/GetHistory',
        { roomId: this.roomId, beforeSeq: String(this.oldest), limit: PAGE },
        { token: this.ctx.token() });
      const events = r.events ?? [];
      this.ctx.mutate(this, () => {
        for (const ev of events) this.insert(ev, false);
      }, true);
      this.hasOlder = Boolean(r.hasMore) && events.length > 0;
      return events.length > 0;
    } catch (e) {
      if (e.code === 'unauthenticated') this.ctx.onSessionEnded();
      else this.ctx.onError(describe(e, 'Could not load earlier messages'));
      return false;
    } finally {
      this.loadingOlder = false;
      this.updateTop();
    }
  }

  updateTop() {
    let text = '';
    if (!this.ready) text = 'Loading messages…';
    else if (this.loadingOlder) text = 'Loading earlier messages…';
    else if (!this.hasOlder) text = 'This is the beginning of the room.';
    else text = 'Scroll up for earlier messages.';
    this.onTop?.(text);
  }

  // ---- placing items --------------------------------------------------------

  // Puts li at position `order` (after every item of lower or equal
  // order), keeping the view pinned to the bottom when it was there.
  place(li, order) {
    li.order = order;
    let after = this.list.lastElementChild;
    while (after && after.order > order) after = after.previousElementSibling;
    if (after) after.after(li);
    else this.list.prepend(li);
  }

  insert(ev, live) {
    const seq = Number(ev.seq ?? 0);
    const me = this.ctx.me;
    if (seq !== 0) {
      if (this.bySeq.has(seq)) return;
      // One of ours that Send has not answered yet: the feed was faster.
      const cmid = ev.message?.clientMsgId;
      if (ev.sender === me && cmid && this.pending.has(cmid)) {
        const p = this.pending.get(cmid);
        p.li.remove();
        p.li = null;
      }
      if (ev.edit || ev.redaction) {
        // Kept as a hidden marker (its seq is part of the timeline) and
        // applied to the message it changes.
        this.applyChange(ev);
        const mark = h('li', { class: 'change', hidden: true, dataset: { seq: String(seq) } });
        this.bySeq.set(seq, mark);
        this.oldest = Math.min(this.oldest, seq);
        this.newest = Math.max(this.newest, seq);
        this.place(mark, seq);
        return;
      }
    } else if (ev.typing) {
      if (live && ev.sender !== me) this.ctx.onTyping(this.roomId, ev.sender, Boolean(ev.typing.typing));
      return;
    } else if (!live || !ev.presence || ev.sender === me) {
      return; // presence is only news when it happens, and not one's own
    } else if (live !== 'held' && !this.presenceNews(ev)) {
      return;
    }
    const li = this.render(ev);
    if (!li) return;
    if (seq !== 0) {
      this.bySeq.set(seq, li);
      this.oldest = Math.min(this.oldest, seq);
      this.newest = Math.max(this.newest, seq);
      this.place(li, seq);
    } else {
      this.place(li, this.newest + 0.5);
    }
    if (live && ev.sender !== me) {
      if (ev.message) this.ctx.announce(`${this.ctx.nameOf(ev.sender)}: ${ev.message.text}`);
      else this.ctx.announce(li.textContent);
    }
  }

  // Whether a presence event is worth a notice now; holds offline back.
  presenceNews(ev) {
    const user = ev.sender;
    const held = this.offline.get(user);
    if (ev.presence.state === 'OFFLINE') {
      if (held || this.presence.get(user) === 'OFFLINE') return false;
      this.offline.set(user, setTimeout(() => {
        this.offline.delete(user);
        if (this.dropped) return;
        this.presence.set(user, 'OFFLINE');
        this.ctx.mutate(this, () => this.insert(ev, 'held'), false);
      }, OFFLINE_GRACE_MS));
      return false;
    }
    if (held) {
      clearTimeout(held);
      this.offline.delete(user);
    }
    if (this.presence.get(user) === 'ONLINE') return false;
    this.presence.set(user, ev.presence.state);
    return true;
  }

  whoEl(userId) {
    return h('span', { class: 'who', text: this.ctx.nameOf(userId), title: userId,
      dataset: { user: userId } });
  }

  render(ev) {
    const ts = Number(ev.tsMs ?? 0);
    if (ev.message) {
      const mine = ev.sender === this.ctx.me;
      const m = ev.message;
      const li = h('li', { class: mine ? 'msg mine' : 'msg', dataset: { seq: String(ev.seq) } },
        h('div', { class: 'line' }, this.whoEl(ev.sender ?? ''), ' ', ts ? timeEl(ts) : null,
          h('span', { class: 'edited', text: Number(m.editedAtMs ?? 0) ? '(edited)' : '' })),
        h('p', { class: 'text', text: m.text ?? '' }));
      if (m.redacted) this.showRedacted(li);
      else if (mine) this.addTools(li, Number(ev.seq));
      return li;
    }
    const mb = ev.membership;
    const by = mb?.actor && mb.actor !== ev.sender ? mb.actor : '';
    const reason = mb?.reason ? `: ${mb.reason}` : '';
    let what = null;
    if (mb?.kind === 'JOINED') what = by ? 'was added' : 'joined';
    else if (mb?.kind === 'LEFT') what = 'left';
    else if (mb?.kind === 'KICKED') what = 'was removed';
    else if (mb?.kind === 'BANNED') what = 'was banned';
    else if (mb?.kind === 'UNBANNED') what = 'may join again';
    else if (mb?.kind === 'INVITED') what = 'was invited';
    else if (ev.roomUpdate) what = `changed the room: ${ev.roomUpdate.name ?? ''}` +
      (ev.roomUpdate.topic ? ` (${ev.roomUpdate.topic})` : '');
    else if (ev.presence?.state === 'ONLINE') what = 'is online';
    else if (ev.presence?.state === 'OFFLINE') what = 'is offline';
    if (!what) return null; // a kind of event this page does not know yet
    const cls = ev.presence ? 'notice presence' : 'notice';
    return h('li', { class: cls, dataset: ev.seq ? { seq: String(ev.seq) } : {} },
      this.whoEl(ev.sender ?? ''), ` ${what}`, by ? ' by ' : null, by ? this.whoEl(by) : null,
      reason, ts ? ' ' : null, ts ? timeEl(ts) : null);
  }

  // ---- edits and deletes --------------------------------------------------------

  applyChange(ev) {
    const target = Number((ev.edit ?? ev.redaction).targetSeq ?? 0);
    const li = this.bySeq.get(target);
    if (!li || !li.classList.contains('msg')) return; // older than what is loaded
    if (ev.redaction) {
      this.showRedacted(li);
      return;
    }
    li.querySelector('.text').textContent = ev.edit.text ?? '';
    li.querySelector('.edited').textContent = '(edited)';
  }

  showRedacted(li) {
    li.classList.add('redacted');
    li.querySelector('.text').textContent = 'message deleted';
    li.querySelector('.edited').textContent = '';
    li.querySelector('.tools')?.remove();
    li.querySelector('.edit-box')?.remove();
    li.querySelector('.text').hidden = false;
  }

  addTools(li, seq) {
    const edit = h('button', { type: 'button', text: 'Edit', 'aria-label': 'Edit this message' });
    const del = h('button', { type: 'button', text: 'Delete', 'aria-label': 'Delete this message' });
    edit.addEventListener('click', () => this.startEdit(li, seq));
    del.addEventListener('click', () => {
      if (del.dataset.armed !== 'yes') {
        // A second press confirms; leaving the button disarms it.
        del.dataset.armed = 'yes';
        del.textContent = 'Really delete?';
        return;
      }
      del.disabled = true;
      this.change('Messaging/Delete', { seq: String(seq) }, 'Could not delete the message')
        .finally(() => { del.disabled = false; });
    });
    const disarm = () => {
      del.dataset.armed = '';
      del.textContent = 'Delete';
    };
    del.addEventListener('blur', disarm);
    del.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') disarm(); });
    li.querySelector('.line').append(h('span', { class: 'tools' }, edit, del));
  }

  startEdit(li, seq) {
    if (li.querySelector('.edit-box')) return;
    const text = li.querySelector('.text');
    const id = `edit-${seq}`;
    const box = h('textarea', { id, rows: 2, maxlength: 4096 });
    box.value = text.textContent;
    const save = h('button', { type: 'button', class: 'primary', text: 'Save' });
    const cancel = h('button', { type: 'button', class: 'quiet', text: 'Cancel' });
    const form = h('div', { class: 'edit-box' },
      h('label', { for: id, class: 'sr-only', text: 'Edit the message' }), box,
      h('div', { class: 'row' }, save, cancel));
    const close = () => {
      form.remove();
      text.hidden = false;
      li.querySelector('.tools button')?.focus();
    };
    const submit = async () => {
      const value = box.value.trim();
      if (!value || value === text.textContent) return close();
      save.disabled = true;
      if (await this.change('Messaging/Edit', { seq: String(seq), text: value }, 'Could not edit the message')) {
        text.textContent = value; // the feed's MessageEdit says the same
        li.querySelector('.edited').textContent = '(edited)';
        close();
      }
      save.disabled = false;
    };
    save.addEventListener('click', submit);
    cancel.addEventListener('click', close);
    box.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        submit();
      } else if (ev.key === 'Escape') {
        ev.stopPropagation();
        close();
      }
    });
    text.hidden = true;
    text.after(form);
    box.focus();
  }

  // Edit or Delete (with a fresh client_msg_id, so a retry is harmless);
  // true when the server took it.
  async change(method, body, doing) {
    try {
      await call(method, { roomId: this.roomId, clientMsgId: randomId(), ...body },
        { token: this.ctx.token() });
      return true;
    } catch (e) {
      if (e.code === 'unauthenticated') this.ctx.onSessionEnded();
      else this.ctx.onError(describe(e, doing));
      return false;
    }
  }

  // ---- sending ------------------------------------------------------------------

  send(text) {
    const p = { id: randomId(), text, state: 'pending', li: null, since: Date.now() };
    p.li = this.pendingItem(p);
    this.pending.set(p.id, p);
    this.ctx.mutate(this, () => this.place(p.li, Infinity), false);
    this.queue.push(p);
    this.pump();
  }

  pendingItem(p) {
    const li = h('li', { class: 'msg mine pending', dataset: { cmid: p.id } },
      h('div', { class: 'line' },
        h('span', { class: 'who', text: this.ctx.nameOf(this.ctx.me) }), ' ',
        h('span', { class: 'state', text: 'sending…' })),
      h('p', { class: 'text', text: p.text }));
    return li;
  }

  markFailed(p, why) {
    p.state = 'failed';
    if (!p.li) return;
    p.li.className = 'msg mine failed';
    const state = p.li.querySelector('.state');
    state.textContent = 'not sent';
    p.li.querySelector('.actions')?.remove();
    const retry = h('button', { type: 'button', class: 'quiet', text: 'Retry',
      'aria-label': 'Retry sending this message' });
    const discard = h('button', { type: 'button', class: 'quiet', text: 'Discard',
      'aria-label': 'Discard this message' });
    retry.addEventListener('click', () => {
      p.li.className = 'msg mine pending';
      state.textContent = 'sending…';
      p.li.querySelector('.actions').remove();
      p.state = 'pending';
      p.since = Date.now();
      this.queue.push(p);
      this.pump();
    });
    discard.addEventListener('click', () => {
      this.pending.delete(p.id);
      p.li.remove();
      this.ctx.focusComposer();
    });
    p.li.append(h('div', { class: 'actions' }, h('p', { class: 'why', text: why }), retry, discard));
  }

  async pump() {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0 && !this.dropped) {
        const p = this.queue.shift();
        await this.sendOne(p);
      }
    } finally {
      this.sending = false;
    }
  }

  async sendOne(p) {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await call('Messaging/Send',
          { roomId: this.roomId, text: p.text, clientMsgId: p.id },
          { token: this.ctx.token(), timeoutMs: SEND_TIMEOUT_MS });
        this.acked(p, Number(r.seq), Number(r.tsMs ?? 0));
        return;
      } catch (e) {
        if (e.code === 'unauthenticated') {
          this.markFailed(p, 'Not sent: your session has ended.');
          this.ctx.onSessionEnded();
          return;
        }
        if (!isTransient(e) || Date.now() - p.since > SEND_GIVE_UP_MS) {
          this.markFailed(p, describe(e, 'Not sent'));
          return;
        }
        const wait = Math.max(e.retryAfterMs || 0, Math.min(500 * 2 ** attempt, 5000));
        await sleep(wait);
        if (this.dropped) return;
      }
    }
  }

  acked(p, seq, ts) {
    this.pending.delete(p.id);
    p.state = 'sent';
    this.ctx.onSent(this.roomId, seq);
    if (!p.li) return; // the feed brought it first
    if (this.bySeq.has(seq)) {
      p.li.remove();
      return;
    }
    const li = this.render({ seq: String(seq), tsMs: ts, sender: this.ctx.me,
      message: { text: p.text, clientMsgId: p.id } });
    p.li.replaceWith(li);
    p.li = null;
    this.bySeq.set(seq, li);
    this.oldest = Math.min(this.oldest, seq);
    this.newest = Math.max(this.newest, seq);
    this.ctx.mutate(this, () => {
      li.remove();
      this.place(li, seq);
    }, false);
  }
}
