// manage.js — the open room's panel of members and settings: who is in
// the room (role, online), and for moderators and admins the tools of
// rooms.proto: Kick and Ban with a reason, SetRole, Unban, Invite (the
// way into a PRIVATE room) and UpdateRoom (name and topic).
//
// The panel only offers what the person's role allows (the server checks
// again); every failure is said in words next to the control that failed.
// The list is drawn again on each membership change while it is open; a
// reason being typed survives that.

import { call, describe } from './api.js';
import { userIdProblem } from './auth.js';
import { $, h, say } from './dom.js';

const ROLE_RANK = { MEMBER: 1, MODERATOR: 2, ADMIN: 3 };
const REASON_MAX = 500; // characters, rooms.proto
const NAME_MAX = 100;
const TOPIC_MAX = 500;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const chars = (s) => [...s].length;

// ctx: token(), me(), active() (the open room id), room(id) (its Room),
// names (Map userId -> display name, filled from the list), onRoom(Room)
// (the room changed here), sessionEnded(), announce(text).
export function setupManage(ctx) {
  const panel = $('members');
  const toggle = $('show-members');
  const list = $('member-list');
  const note = $('members-note');
  const done = $('manage-status');
  let myRank = ROLE_RANK.MEMBER;

  // The call of a control: its error said in errEl, or the session ended.
  async function act(method, body, errEl, doing) {
    say(errEl, '');
    try {
      return await call(method, body, { token: ctx.token() });
    } catch (e) {
      if (e.code === 'unauthenticated') ctx.sessionEnded();
      else say(errEl, describe(e, doing));
      return null;
    }
  }

  const label = (m) => (m.displayName && m.displayName !== m.userId
    ? `${m.displayName} (${m.userId})` : m.userId);

  // Remove (Kick) or Ban: asks for the reason first, inside the member's row.
  function askReason(li, m, method) {
    list.querySelector('form.reason')?.remove(); // one question at a time
    const verb = method === 'Rooms/Kick' ? 'Remove' : 'Ban';
    const id = `reason-${m.userId}`;
    const input = h('input', { id, name: 'reason', maxlength: String(REASON_MAX),
      'aria-describedby': `${id}-rule` });
    const err = h('p', { class: 'error', role: 'alert', hidden: true });
    // Back to the button that opened it (in the row drawn last).
    const close = () => {
      const row = form.closest('li');
      form.remove();
      const opener = row && [...row.querySelectorAll('button')].find((b) => b.textContent === verb);
      (opener ?? toggle).focus();
    };
    const form = h('form', { class: 'reason', novalidate: true, dataset: { verb } },
      h('label', { for: id, text: `Why ${verb === 'Remove' ? 'remove' : 'ban'} ${label(m)}?` }),
      input,
      h('p', { id: `${id}-rule`, class: 'rule',
        text: `Optional, at most ${REASON_MAX} characters: everyone in the room sees it.` }),
      err,
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'primary', text: `${verb} ${m.userId}` }),
        h('button', { type: 'button', class: 'quiet', text: 'Cancel', onclick: close })));
    form.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Escape') return;
      ev.stopPropagation(); // the panel stays open
      close();
    });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const reason = input.value.trim();
      if (chars(reason) > REASON_MAX) {
        input.setAttribute('aria-invalid', 'true');
        return say(err, `The reason is ${chars(reason)} characters long: at most ${REASON_MAX}.`);
      }
      const roomId = ctx.active();
      const ok = await act(method, { roomId, userId: m.userId, reason }, err,
        `Could not ${verb === 'Remove' ? 'remove' : 'ban'} ${m.userId}`);
      if (!ok || roomId !== ctx.active()) return;
      say(done, verb === 'Remove' ? `${label(m)} was removed.` : `${label(m)} was banned.`);
      show();
    });
    li.append(form);
    input.focus();
  }

  function memberRow(m, roomId, direct) {
    const theirs = ROLE_RANK[m.role] ?? 1;
    const who = label(m);
    const tools = [];
    const li = h('li', { dataset: { user: m.userId } });
    const mine = m.userId === ctx.me();
    if (!direct && !mine && myRank > theirs && myRank >= ROLE_RANK.MODERATOR) {
      for (const [text, method, aria] of [['Remove', 'Rooms/Kick', `Remove ${who} from the room`],
        ['Ban', 'Rooms/Ban', `Ban ${who} from the room`]])
        tools.push(h('button', { type: 'button', class: 'quiet', text, 'aria-label': aria,
          onclick: () => askReason(li, m, method) }));
    }
    if (!direct && !mine && myRank === ROLE_RANK.ADMIN) {
      const up = m.role !== 'MODERATOR';
      tools.push(h('button', { type: 'button', class: 'quiet', text: up ? 'Make moderator' : 'Make member',
        'aria-label': `${up ? 'Make' : 'Stop making'} ${who} a moderator`,
        onclick: async () => {
          if (await act('Rooms/SetRole', { roomId, userId: m.userId, role: up ? 'MODERATOR' : 'MEMBER' },
            note, `Could not change the role of ${m.userId}`)) show();
        } }));
    }
    li.append(...[
      h('span', { class: 'member-name', text: who }),
      m.role && m.role !== 'MEMBER' ? h('span', { class: 'role', text: m.role.toLowerCase() }) : null,
      h('span', { class: m.online ? 'online yes' : 'online', text: m.online ? 'online' : 'away' }),
      tools.length ? h('span', { class: 'actions-m' }, tools) : null,
    ].filter(Boolean));
    return li;
  }

  // Draws the list (and the tools the person's role allows) again.
  async function show() {
    const roomId = ctx.active();
    if (!roomId) return;
    const r = await act('Rooms/ListMembers', { roomId, pageSize: 100 }, note, 'Could not list the members');
    if (!r || roomId !== ctx.active()) return;
    const members = r.members ?? [];
    for (const m of members) if (m.displayName) ctx.names.set(m.userId, m.displayName);
    myRank = ROLE_RANK[members.find((m) => m.userId === ctx.me())?.role] ?? 1;
    const room = ctx.room(roomId) ?? { roomId };
    const direct = room.visibility === 'DIRECT';

    // A reason being typed stays, with its focus.
    const open = list.querySelector('form.reason');
    const openUser = open?.closest('li')?.dataset.user;
    const focused = open?.contains(document.activeElement) ? document.activeElement : null;
    list.replaceChildren(...members.map((m) => memberRow(m, roomId, direct)));
    const row = open && [...list.children].find((x) => x.dataset.user === openUser);
    // Only where the same tool is still offered (the role may have changed).
    if (row && [...row.querySelectorAll('button')].some((b) => b.textContent === open.dataset.verb)) {
      row.append(open);
      focused?.focus();
    }
    say(note, r.nextPageToken ? 'Showing the first 100 members.' : '');
    showTools(room, direct);
  }

  // The forms of the panel, for moderators and admins of a room that is
  // not a direct one; Invite only where it is needed (PRIVATE).
  function showTools(room, direct) {
    const can = !direct && myRank >= ROLE_RANK.MODERATOR;
    $('manage').hidden = !can;
    if (!can) return;
    $('invite-form').hidden = room.visibility !== 'PRIVATE';
    $('invite-room').textContent = room.roomId;
    const name = $('settings-name');
    const topic = $('settings-topic');
    // Not over what the person is typing.
    if (!$('settings-form').contains(document.activeElement)) {
      name.value = room.name || room.roomId;
      topic.value = room.topic ?? '';
    }
  }

  // A user id form: checks it, calls method, says what happened.
  function userForm(formId, inputId, errId, method, doing, said) {
    const form = $(formId);
    const input = $(inputId);
    const err = $(errId);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const userId = input.value.trim();
      const problem = userIdProblem(userId);
      if (problem) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return say(err, problem);
      }
      input.removeAttribute('aria-invalid');
      const roomId = ctx.active();
      if (!(await act(method, { roomId, userId }, err, `${doing} ${userId}`))) return;
      input.value = '';
      say(done, said(userId, roomId));
      ctx.announce(said(userId, roomId));
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Escape' || input.value === '') return;
      ev.stopPropagation(); // a first Escape clears, a second closes the panel
      input.value = '';
      say(err, '');
    });
  }

  userForm('invite-form', 'invite-user', 'invite-error', 'Rooms/Invite', 'Could not invite',
    (u, room) => `${u} is invited: they can now join with the room id ${room}.`);
  userForm('unban-form', 'unban-user', 'unban-error', 'Rooms/Unban', 'Could not unban',
    (u) => `${u} is no longer banned and may join again.`);

  $('settings-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('settings-error');
    const name = $('settings-name').value.trim();
    const topic = $('settings-topic').value.trim();
    let problem = '';
    if (chars(name) > NAME_MAX || CONTROL.test(name))
      problem = `The name must be at most ${NAME_MAX} characters, without control characters.`;
    else if (chars(topic) > TOPIC_MAX || CONTROL.test(topic))
      problem = `The topic must be at most ${TOPIC_MAX} characters, without control characters.`;
    if (problem) return say(err, problem);
    const roomId = ctx.active();
    const r = await act('Rooms/UpdateRoom', { roomId, name, topic }, err, 'Could not change the room');
    if (!r) return;
    if (r.room) ctx.onRoom(r.room);
    say(done, 'The room is changed.');
  });

  toggle.addEventListener('click', () => {
    const opening = panel.hidden;
    panel.hidden = !opening;
    toggle.setAttribute('aria-expanded', String(opening));
    say(done, '');
    if (opening) show();
  });
  panel.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      panel.hidden = true;
      toggle.setAttribute('aria-expanded', 'false');
      toggle.focus();
    }
  });

  return {
    show,
    // Another room opens: the panel closes and forgets what was typed.
    reset() {
      panel.hidden = true;
      toggle.setAttribute('aria-expanded', 'false');
      for (const id of ['invite-error', 'unban-error', 'settings-error', 'manage-status']) say($(id), '');
      $('invite-user').value = '';
      $('unban-user').value = '';
      list.replaceChildren();
      $('manage').hidden = true;
    },
  };
}
