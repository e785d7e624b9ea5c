// join.js — the three ways into a room, in the room list: creating one
// (PUBLIC, listed, or PRIVATE, by invitation), joining one by its id (how
// an invited person gets into a PRIVATE room, which no list shows), and
// opening the direct conversation with a person. Each form checks the
// contract's rules before calling and says failures in words.

import { call, describe } from './api.js';
import { userIdProblem } from './auth.js';
import { $, say } from './dom.js';

const ROOM_ID = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

// ctx: token(), me(), sessionEnded(), addRoom(Room) (joined: show and
// open it), has(roomId) (the person is in it), open(roomId).
export function setupJoin(ctx) {
  setupCreate(ctx);
  setupById(ctx);
  setupDirect(ctx);
}

// ---- creating a room ------------------------------------------------------------------

function setupCreate(ctx) {
  const form = $('create-form');
  const toggle = $('new-room');
  const err = $('create-error');
  const close = () => {
    form.hidden = true;
    toggle.setAttribute('aria-expanded', 'false');
    say(err, '');
    toggle.focus();
  };
  toggle.addEventListener('click', () => {
    if (!form.hidden) return close();
    form.hidden = false;
    toggle.setAttribute('aria-expanded', 'true');
    $('create-id').focus();
  });
  $('create-cancel').addEventListener('click', close);
  form.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') close();
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const roomId = $('create-id').value.trim();
    const name = $('create-name').value.trim();
    const topic = $('create-topic').value.trim();
    const visibility = form.querySelector('input[name=visibility]:checked')?.value ?? 'PUBLIC';
    if (!ROOM_ID.test(roomId)) {
      $('create-id').setAttribute('aria-invalid', 'true');
      $('create-id').focus();
      return say(err, 'The room id must be 1 to 64 characters of lower-case letters, digits, _ . or -, starting with a letter or digit.');
    }
    $('create-id').removeAttribute('aria-invalid');
    const submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    try {
      await call('Rooms/CreateRoom', { roomId, name, topic, visibility }, { token: ctx.token() });
      const r = await call('Rooms/JoinRoom', { roomId }, { token: ctx.token() });
      form.reset();
      form.hidden = true;
      toggle.setAttribute('aria-expanded', 'false');
      say(err, '');
      await ctx.addRoom(r.room ?? { roomId, name });
    } catch (e) {
      if (e.code === 'unauthenticated') return ctx.sessionEnded();
      say(err, e.code === 'already_exists'
        ? `A room ${roomId} exists already: pick another id, or join it from the list.`
        : describe(e, 'Could not create the room'));
    } finally {
      submit.disabled = false;
    }
  });
}

// ---- joining by id (a private room one was invited to) ------------------------------

function setupById(ctx) {
  const form = $('join-form');
  const input = $('join-id');
  const err = $('join-error');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const roomId = input.value.trim();
    if (!ROOM_ID.test(roomId)) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return say(err, 'A room id is 1 to 64 characters of lower-case letters, digits, _ . or -, starting with a letter or digit.');
    }
    input.removeAttribute('aria-invalid');
    if (ctx.has(roomId)) {
      input.value = '';
      say(err, '');
      return ctx.open(roomId);
    }
    try {
      const r = await call('Rooms/JoinRoom', { roomId }, { token: ctx.token() });
      say(err, '');
      input.value = '';
      await ctx.addRoom(r.room ?? { roomId });
    } catch (e) {
      if (e.code === 'unauthenticated') return ctx.sessionEnded();
      say(err, e.code === 'not_found' ? `There is no room ${roomId}.` : describe(e, `Could not join ${roomId}`));
    }
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      input.value = '';
      say(err, '');
    }
  });
}

// ---- direct messages -------------------------------------------------------------------

function setupDirect(ctx) {
  const form = $('dm-form');
  const input = $('dm-user');
  const err = $('dm-error');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const userId = input.value.trim();
    const problem = userIdProblem(userId);
    if (problem || userId === ctx.me()) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return say(err, problem || 'That is you: pick someone else.');
    }
    input.removeAttribute('aria-invalid');
    try {
      const r = await call('Rooms/OpenDirect', { userId }, { token: ctx.token() });
      say(err, '');
      input.value = '';
      await ctx.addRoom(r.room);
    } catch (e) {
      if (e.code === 'unauthenticated') return ctx.sessionEnded();
      say(err, e.code === 'not_found' ? `There is no user ${userId}.` : describe(e, 'Could not open the conversation'));
    }
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      input.value = '';
      say(err, '');
    }
  });
}
