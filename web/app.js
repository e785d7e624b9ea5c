// app.js — the chat page: who is logged in, the room lists, the open
// room, and the live feed that ties them together.
//
// Unread counts come from Messaging.GetUnread at start (and for each room
// joined), then grow with the feed; reading a room moves its read marker
// on the server (MarkRead, at most once a second per room). Display names
// come from Auth.GetUsers, asked in batches for the ids the page shows.

import { call, describe } from './api.js';
import { clearSession, loadSession, setupAuth } from './auth.js';
import { $, h, say } from './dom.js';
import { Live } from './live.js';
import { setupJoin } from './join.js';
import { setupManage } from './manage.js';
import { Timeline } from './room.js';

const UNREAD_SCAN = 100; // messages counted per room at start; more shows "100+"
const ROOM_PAGES = 10;	 // pages of ListRooms fetched at most per "show more"
// Rooms created elsewhere show up this often (and whenever the page comes
// back into view); member counts of the person's rooms follow the feed.
const ROOMS_REFRESH_MS = 60000;
// Rooms the person joined or left elsewhere come with the feed: the
// server's session follows the person's memberships, so their own JOINED
// of a room the page does not hold arrives (Live's onForeign) and so does
// the LEFT/KICKED/BANNED that ends a room. Other tabs of this browser say
// so too (a BroadcastChannel). What the feed cannot bring (a removal while
// it was away: the next subscription is refused; a room beyond a stream's
// 64) the page finds by asking ListMyRooms this often while it is in view.
const MY_ROOMS_POLL_MS = 30000;
const tabs = 'BroadcastChannel' in window ? new BroadcastChannel('parley.rooms') : null;

let authForms = null; // setupAuth's handle
let manage = null;    // setupManage's handle

const state = {
  session: null,
  myRooms: new Map(),	// roomId -> Room
  otherRooms: [],
  nextPage: '',
  active: null,		// roomId on screen
  timelines: new Map(),	// roomId -> Timeline
  unread: new Map(),	// roomId -> count
  unreadMore: new Set(), // rooms with more unread than counted
  read: {},		// roomId -> last seq read
  live: null,
  refreshTimer: 0,
  roomsTimer: 0,
  myRoomsTimer: 0,
  leaving: new Set(),	// rooms this page is leaving (a LeaveRoom on its way)
  refusals: 0,		// feed refusals in a row
  connNoteTimer: 0,
};

// ---- small helpers ------------------------------------------------------------

const token = () => state.session?.token ?? '';
const me = () => state.session?.userId ?? '';

// The banner over the page. A failure is taken back when the rooms next
// load; news (the person was removed from a room) stays until the next
// news or action.
let bannerNews = false;
function pageError(text, news = false) {
  bannerNews = news && text !== '';
  say($('page-error'), text);
}

function roomError(text) {
  say($('room-error'), text);
}

function announce(text) {
  const box = $('announce');
  box.append(h('p', { text }));
  while (box.childElementCount > 5) box.firstElementChild.remove();
}

const MARK_READ_EVERY_MS = 1000;
const readTimers = new Map(); // roomId -> timer of a MarkRead not sent yet

// The person has seen roomId up to seq: remembered here at once, told to
// the server a moment later (one MarkRead for a burst of messages).
function markRead(roomId, seq) {
  if (!(seq > (state.read[roomId] ?? 0))) return;
  state.read[roomId] = seq;
  if (readTimers.has(roomId)) return;
  readTimers.set(roomId, setTimeout(async () => {
    readTimers.delete(roomId);
    if (!state.myRooms.has(roomId)) return;
    try {
      await call('Messaging/MarkRead', { roomId, seq: String(state.read[roomId]) }, { token: token() });
    } catch (e) {
      if (e.code === 'unauthenticated') sessionEnded();
      // Otherwise the next read moves it on; the marker never moves back.
    }
  }, MARK_READ_EVERY_MS));
}

// ---- display names ----------------------------------------------------------------

const names = new Map();   // userId -> display name ('' while asked)
let namesWanted = new Set();
let namesTimer = 0;

function nameOf(userId) {
  if (userId === me()) return state.session.displayName || userId;
  const n = names.get(userId);
  if (n === undefined) wantName(userId);
  return n || userId;
}

function wantName(userId) {
  if (!userId || names.has(userId)) return;
  names.set(userId, '');
  namesWanted.add(userId);
  clearTimeout(namesTimer);
  namesTimer = setTimeout(fetchNames, 50);
}

// Asks GetUsers for the names wanted (100 at a time) and puts them in
// every .who shown for those users.
async function fetchNames() {
  const ids = [...namesWanted];
  namesWanted = new Set();
  for (let i = 0; i < ids.length; i += 100) {
    let r;
    try {
      r = await call('Auth/GetUsers', { userIds: ids.slice(i, i + 100) }, { token: token() });
    } catch {
      for (const id of ids.slice(i, i + 100)) names.delete(id); // asked again when next shown
      continue;
    }
    for (const u of r.users ?? []) {
      if (!u.displayName) continue;
      names.set(u.userId, u.displayName);
      for (const tl of state.timelines.values())
        for (const el of tl.list.querySelectorAll('.who[data-user]'))
          if (el.dataset.user === u.userId) el.textContent = u.displayName;
    }
  }
  renderRooms();
}

function isNarrow() {
  return window.matchMedia('(max-width: 700px)').matches;
}

// ---- connection note ------------------------------------------------------------

function onLiveState(s, err) {
  const conn = $('conn');
  clearTimeout(state.connNoteTimer);
  if (s === 'reconnecting') {
    conn.className = 'conn down';
    say(conn, err && err.code !== 'unavailable'
      ? `Reconnecting… (${describe(err)})`
      : 'Connection lost: reconnecting…');
  } else if (s === 'live' && !conn.hidden && conn.classList.contains('down')) {
    conn.className = 'conn up';
    say(conn, 'Connected again.');
    state.connNoteTimer = setTimeout(() => say(conn, ''), 4000);
  } else if (s === 'live') {
    conn.className = 'conn up';
  }
  if (s === 'live') {
    state.refusals = 0;
    // Presence is news of changes only: whatever happened while the feed
    // was away is unknown, so the next change is shown whatever it is.
    for (const tl of state.timelines.values()) tl.presence.clear();
  }
  conn.dataset.state = s;
}

// ---- screens ----------------------------------------------------------------------

// The log-in form, focused, with message above it.
function showAuth(message = '') {
  $('chat-screen').hidden = true;
  $('me').hidden = true;
  $('auth-screen').hidden = false;
  say($('conn'), '');
  pageError(message);
  authForms.show('login');
}

function sessionEnded() {
  if (!state.session) return;
  leaveChat();
  showAuth('Your session has ended. Please log in again.');
}

function leaveChat() {
  state.live?.stop();
  clearInterval(state.roomsTimer);
  clearInterval(state.myRoomsTimer);
  for (const tl of state.timelines.values()) tl.drop();
  Object.assign(state, {
    session: null, myRooms: new Map(), otherRooms: [], nextPage: '', active: null,
    timelines: new Map(), unread: new Map(), unreadMore: new Set(), read: {}, live: null,
    leaving: new Set(),
  });
  $('my-rooms').replaceChildren();
  $('other-rooms').replaceChildren();
  showRoomPanel(false);
  sessionStorage.removeItem('parley.room');
}

// Forgets the token here at once, revokes it on the server (a few seconds
// at most: a server that cannot be reached leaves it to expire), then
// shows the log-in form.
async function logout() {
  const t = token();
  leaveChat();
  clearSession();
  $('logout').disabled = true;
  try {
    await call('Auth/Logout', {}, { token: t, timeoutMs: 5000 });
  } catch {
    // the token is forgotten here either way
  } finally {
    $('logout').disabled = false;
  }
  showAuth('');
}

async function enterChat(session) {
  state.session = session;
  state.read = {};
  $('auth-screen').hidden = true;
  $('chat-screen').hidden = false;
  $('me').hidden = false;
  $('me-name').textContent = session.displayName && session.displayName !== session.userId
    ? `${session.displayName} (${session.userId})` : session.userId;
  pageError('');
  state.live = new Live(session.token, {
    onEvents: onLiveEvents,
    onState: onLiveState,
    onRefused: onLiveRefused,
    onForeign: (ev) => {
      if (ev.membership?.kind === 'JOINED' && ev.sender === me()) joinedElsewhere(ev.roomId, Number(ev.seq ?? 0));
      else if (ev.membership && ev.sender === me()) refreshSoon();
    },
  });
  if (!(await refreshRooms())) return;
  state.roomsTimer = setInterval(() => {
    if (!document.hidden) syncRooms();
  }, ROOMS_REFRESH_MS);
  state.myRoomsTimer = setInterval(() => {
    if (!document.hidden) checkMyRooms();
  }, MY_ROOMS_POLL_MS);
  const cursors = await prime([...state.myRooms.keys()]);
  if (state.session !== session) return;
  state.live.setRooms(cursors);
  renderRooms();
  const last = sessionStorage.getItem('parley.room');
  if (last && state.myRooms.has(last)) openRoom(last, false);
  else if (!isNarrow() && state.myRooms.size > 0) openRoom([...state.myRooms.keys()][0], false);
  else $('new-room').focus();
}

// ---- rooms ---------------------------------------------------------------------------

// Fetches the person's rooms and the others; false when the session ended.
async function refreshRooms() {
  try {
    const mine = await call('Rooms/ListMyRooms', {}, { token: token() });
    state.myRooms = new Map((mine.rooms ?? []).map((r) => [r.roomId, r]));
    const others = [];
    let pageToken = '';
    for (let i = 0; i < ROOM_PAGES; i++) {
      const r = await call('Rooms/ListRooms', { pageSize: 100, pageToken }, { token: token() });
      others.push(...(r.rooms ?? []));
      pageToken = r.nextPageToken ?? '';
      if (!pageToken) break;
    }
    state.otherRooms = others.filter((r) => !state.myRooms.has(r.roomId));
    state.nextPage = pageToken;
  } catch (e) {
    if (e.code === 'unauthenticated') {
      sessionEnded();
      return false;
    }
    pageError(describe(e, 'Could not load the rooms'));
    return true;
  }
  if (!bannerNews) pageError('');
  renderRooms();
  return true;
}

async function moreRooms() {
  try {
    const r = await call('Rooms/ListRooms', { pageSize: 100, pageToken: state.nextPage },
      { token: token() });
    state.otherRooms.push(...(r.rooms ?? []).filter((x) => !state.myRooms.has(x.roomId)));
    state.nextPage = r.nextPageToken ?? '';
    renderRooms();
  } catch (e) {
    pageError(describe(e, 'Could not load more rooms'));
  }
}

// Member counts change with every join and leave: refetched, at most
// every half second.
function refreshSoon() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(syncRooms, 500);
}

// Fetches the rooms again and makes the feed follow: rooms joined
// elsewhere join it, rooms left elsewhere leave it (and the screen).
async function syncRooms() {
  const session = state.session;
  const before = new Map(state.myRooms);
  if (!session || !state.live || !(await refreshRooms()) || state.session !== session) return;
  const had = new Set(state.live.cursors.keys());
  const gone = [...had].filter((id) => !state.myRooms.has(id));
  const added = [...state.myRooms.keys()].filter((id) => !had.has(id));
  renderRoomHead();
  if (gone.length === 0 && added.length === 0) return;
  for (const id of gone) dropRoom(id);
  // Removals the feed brought were said precisely (onLiveEvents) and are
  // no longer in it; these it did not bring (one while it was away):
  // say what is known.
  if (gone.length > 0) {
    const which = gone.map((id) => (before.has(id) ? roomName(before.get(id)) : id)).join(', ');
    pageError(`You are no longer in ${which}: you left elsewhere, or a moderator removed you.`, true);
  }
  const cursors = await prime(added);
  for (const id of state.myRooms.keys())
    if (had.has(id)) cursors.set(id, state.live.cursor(id));
  if (state.session !== session) return;
  state.live.setRooms(cursors);
  renderRooms();
}

// Looks whether the person's rooms are still those on the page (joined
// or left elsewhere), and syncs when not.
async function checkMyRooms() {
  const session = state.session;
  let mine;
  try {
    mine = await call('Rooms/ListMyRooms', {}, { token: token() });
  } catch {
    return; // the next look, or syncRooms, says what is wrong
  }
  if (state.session !== session) return;
  const ids = new Set((mine.rooms ?? []).map((r) => r.roomId));
  if (ids.size !== state.myRooms.size || [...ids].some((id) => !state.myRooms.has(id))) refreshSoon();
}

// Tells the other tabs of this browser that the person's rooms changed.
function tellTabs() {
  tabs?.postMessage({ userId: me() });
}

tabs?.addEventListener('message', (ev) => {
  if (state.session && ev.data?.userId === me()) refreshSoon();
});

// Where the feed starts for each of roomIds (its head now) and their
// unread counts and read markers, from GetUnread: a Map roomId -> seq
// (rooms that cannot be read are left out).
async function prime(roomIds) {
  const cursors = new Map();
  for (let i = 0; i < roomIds.length; i += 100) {
    try {
      const r = await call('Messaging/GetUnread', { roomIds: roomIds.slice(i, i + 100) },
        { token: token() });
      for (const u of r.rooms ?? []) {
        cursors.set(u.roomId, Number(u.headSeq ?? 0));
        state.read[u.roomId] = Number(u.readSeq ?? 0);
        state.unread.set(u.roomId, Number(u.unreadCount ?? 0));
      }
    } catch (e) {
      if (e.code === 'unauthenticated') {
        sessionEnded();
        break;
      }
      pageError(describe(e, 'Could not read the state of your rooms'));
    }
  }
  return cursors;
}

function unreadText(roomId) {
  const n = state.unread.get(roomId) ?? 0;
  if (n === 0) return '';
  return state.unreadMore.has(roomId) ? `${n}+` : String(n);
}

function membersText(n) {
  n = Number(n ?? 0);
  return `${n} member${n === 1 ? '' : 's'}`;
}

// "3 members", "3 members, private" or "direct messages".
function roomKind(r) {
  if (r.visibility === 'DIRECT') return 'direct messages';
  return membersText(r.memberCount) + (r.visibility === 'PRIVATE' ? ', private' : '');
}

// A room's name as shown: a direct room by the other person's name.
function roomName(r) {
  if (r.visibility === 'DIRECT') {
    const other = (r.name ?? '').split(', ').find((id) => id !== me());
    return other ? `@ ${nameOf(other)}` : (r.name || r.roomId);
  }
  return r.name || r.roomId;
}

// Makes ul hold one li per item, in order, reusing the li of each key
// (so a focused button keeps its focus while counts change).
function syncList(ul, items, key, build, update) {
  const old = new Map([...ul.children].map((li) => [li.dataset.room, li]));
  items.forEach((item, i) => {
    let li = old.get(key(item));
    if (li) update(li, item);
    else li = build(item);
    if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] ?? null);
  });
  while (ul.children.length > items.length) ul.lastElementChild.remove();
}

function myRoomParts(r) {
  const unread = unreadText(r.roomId);
  return [
    h('span', { class: 'room-name', text: roomName(r) }),
    h('span', { class: 'room-count', text: roomKind(r) }),
    unread ? h('span', { class: 'badge', text: unread }) : null,
  ];
}

function myRoomLabel(r) {
  const unread = unreadText(r.roomId);
  return `${roomName(r)}, ${roomKind(r)}` +
    (unread ? `, ${unread} unread` : '');
}

function renderRooms() {
  const mine = [...state.myRooms.values()].sort((a, b) =>
    (a.visibility === 'DIRECT') - (b.visibility === 'DIRECT') || roomName(a).localeCompare(roomName(b)));
  syncList($('my-rooms'), mine, (r) => r.roomId, (r) => h('li', { dataset: { room: r.roomId } },
    h('button', {
      type: 'button', class: 'room-button', 'aria-label': myRoomLabel(r),
      'aria-current': r.roomId === state.active ? 'true' : null,
      onclick: () => openRoom(r.roomId, true),
    }, myRoomParts(r))), (li, r) => {
    const b = li.firstElementChild;
    b.setAttribute('aria-label', myRoomLabel(r));
    if (r.roomId === state.active) b.setAttribute('aria-current', 'true');
    else b.removeAttribute('aria-current');
    b.replaceChildren(...myRoomParts(r).filter(Boolean));
  });
  $('my-rooms-empty').hidden = mine.length > 0;
  const others = [...state.otherRooms].sort((a, b) => a.roomId.localeCompare(b.roomId));
  const otherText = (r) => [
    h('span', { class: 'room-name', text: r.name || r.roomId }),
    h('span', { class: 'room-count', text: membersText(r.memberCount) }),
    r.topic ? h('span', { class: 'room-topic', text: r.topic }) : null,
  ].filter(Boolean);
  syncList($('other-rooms'), others, (r) => r.roomId, (r) => h('li', { class: 'other', dataset: { room: r.roomId } },
    h('div', { class: 'other-text' }, otherText(r)),
    h('button', {
      type: 'button', class: 'quiet', text: 'Join',
      'aria-label': `Join ${r.name || r.roomId}`,
      onclick: (ev) => joinRoom(r.roomId, ev.currentTarget),
    })), (li, r) => li.firstElementChild.replaceChildren(...otherText(r)));
  $('other-rooms-empty').hidden = others.length > 0;
  $('more-rooms').hidden = !state.nextPage;
  document.title = totalUnread() > 0 ? `(${totalUnread()}) Parley` : 'Parley';
}

function totalUnread() {
  let n = 0;
  for (const v of state.unread.values()) n += v;
  return n;
}

async function joinRoom(roomId, button) {
  if (button) button.disabled = true;
  try {
    const r = await call('Rooms/JoinRoom', { roomId }, { token: token() });
    await addRoom(r.room ?? { roomId });
  } catch (e) {
    if (e.code === 'unauthenticated') return sessionEnded();
    pageError(describe(e, `Could not join ${roomId}`));
    if (button) button.disabled = false;
  }
}

// After joining: the room joins the feed (from its head) and opens.
async function addRoom(room) {
  state.myRooms.set(room.roomId, room);
  state.otherRooms = state.otherRooms.filter((r) => r.roomId !== room.roomId);
  const primed = await prime([room.roomId]);
  if (primed.has(room.roomId)) {
    const cursors = new Map([...state.myRooms.keys()].map((id) => [id, state.live.cursor(id)]));
    cursors.set(room.roomId, primed.get(room.roomId));
    state.live.setRooms(cursors);
  }
  pageError('');
  renderRooms();
  openRoom(room.roomId, true);
  refreshSoon();
  tellTabs();
}

async function leaveRoom() {
  const roomId = state.active;
  if (!roomId) return;
  // Its LEFT may come with the feed before the answer: not news to say.
  const leaving = state.leaving;
  leaving.add(roomId);
  try {
    await call('Rooms/LeaveRoom', { roomId }, { token: token() });
  } catch (e) {
    if (e.code === 'unauthenticated') return sessionEnded();
    return roomError(describe(e, 'Could not leave the room'));
  } finally {
    leaving.delete(roomId);
  }
  forgetRoom(roomId);
  tellTabs();
  announce(`You left ${roomId}.`);
  $('new-room').focus();
}

function forgetRoom(roomId) {
  dropRoom(roomId);
  const cursors = new Map([...state.myRooms.keys()].map((id) => [id, state.live.cursor(id)]));
  state.live.setRooms(cursors);
  renderRooms();
  refreshSoon();
}

// Forgets a room the person is no longer in (the feed is the caller's).
function dropRoom(roomId) {
  state.myRooms.delete(roomId);
  state.timelines.get(roomId)?.drop();
  state.timelines.delete(roomId);
  state.unread.delete(roomId);
  state.unreadMore.delete(roomId);
  if (state.active === roomId) {
    state.active = null;
    sessionStorage.removeItem('parley.room');
    showRoomPanel(false);
  }
}

// The server refused the feed: the session ended, or a room can no longer
// be read (left or removed elsewhere). Rooms are fetched again and the
// feed restarted without the rooms that are gone.
async function onLiveRefused(err) {
  if (err.code === 'unauthenticated') return sessionEnded();
  onLiveState('reconnecting', err);
  // A refusal that persists is retried ever more slowly (up to 30 s).
  const wait = Math.min(1000 * 2 ** state.refusals, 30000);
  state.refusals++;
  await new Promise((r) => setTimeout(r, wait));
  const before = state.live?.cursors.size;
  await syncRooms();
  // Nothing changed in the rooms: try the same feed again.
  if (state.live && state.live.cursors.size === before) state.live.restart();
}

function onLiveEvents(byRoom) {
  let roomsChanged = false;
  for (const [roomId, events] of byRoom) {
    const visible = roomId === state.active && !document.hidden;
    state.timelines.get(roomId)?.take(events, roomId === state.active);
    for (const ev of events) {
      const seq = Number(ev.seq ?? 0);
      if (ev.membership) {
        roomsChanged = true;
        const kind = ev.membership.kind;
        if (ev.sender === me() && ['LEFT', 'KICKED', 'BANNED'].includes(kind) && state.myRooms.has(roomId)) {
          // The room's last event for this person: left from another
          // window or the CLI, or removed by a moderator.
          const name = roomName(state.myRooms.get(roomId));
          const quiet = state.leaving.has(roomId); // leaveRoom says it
          forgetRoom(roomId);
          if (!quiet) tellRemoved(kind, name, ev.membership);
          break;
        }
      }
      if (ev.roomUpdate && state.myRooms.has(roomId))
        updateRoom({ roomId, name: ev.roomUpdate.name || roomId, topic: ev.roomUpdate.topic ?? '' });
      // A message from someone ends their typing.
      if (ev.message) onTyping(roomId, ev.sender, false);
      if (seq === 0) continue;
      if (visible) markRead(roomId, seq);
      else if (ev.message && ev.sender !== me() && seq > (state.read[roomId] ?? 0))
        state.unread.set(roomId, (state.unread.get(roomId) ?? 0) + 1);
    }
  }
  renderRooms();
  if (roomsChanged) refreshSoon();
  if (roomsChanged && !$('members').hidden && byRoom.has(state.active)) manage.show();
}

// Says why the person is no longer in the room called name, from their
// own LEFT/KICKED/BANNED (m: its MembershipChange), e.g. "Alice removed
// you from The Lobby: spamming". The banner keeps it until the next news.
async function tellRemoved(kind, name, m) {
  const session = state.session;
  let text = `You left ${name} in another window.`;
  if (kind !== 'LEFT') {
    const verb = kind === 'KICKED' ? 'removed' : 'banned';
    const who = m.actor ? await nameNow(m.actor) : '';
    if (state.session !== session) return;
    text = (who ? `${who} ${verb} you` : `You were ${verb}`) + ` from ${name}` +
      (m.reason ? `: ${m.reason}` : '.');
  }
  pageError(text, true); // (role=alert: read out as it shows)
}

// userId's display name, asked for now when not known (the user id if
// the server cannot say).
async function nameNow(userId) {
  if (userId === me() || names.get(userId)) return nameOf(userId);
  try {
    const r = await call('Auth/GetUsers', { userIds: [userId] }, { token: token() });
    const u = (r.users ?? []).find((x) => x.userId === userId);
    if (u?.displayName) names.set(userId, u.displayName);
  } catch {
    // the user id says who it was
  }
  return names.get(userId) || userId;
}

// The person joined roomId elsewhere (another window, the CLI, an
// invitation accepted there): the feed brought their JOINED at seq. The
// room joins the list and the feed from that event on, without opening.
const adding = new Set(); // rooms asked for by joinedElsewhere
async function joinedElsewhere(roomId, seq) {
  if (state.myRooms.has(roomId) || adding.has(roomId)) return;
  const session = state.session;
  adding.add(roomId);
  let room;
  try {
    room = (await call('Rooms/GetRoom', { roomId }, { token: token() })).room;
  } catch (e) {
    if (e.code === 'unauthenticated') return sessionEnded();
    return refreshSoon(); // (left again already, or the server is away)
  } finally {
    adding.delete(roomId);
  }
  // This page's own join (addRoom) may have got there first.
  if (state.session !== session || !state.live || !room || state.myRooms.has(roomId)) return;
  state.myRooms.set(roomId, room);
  state.otherRooms = state.otherRooms.filter((r) => r.roomId !== roomId);
  const cursors = new Map([...state.myRooms.keys()].map((id) => [id, state.live.cursor(id)]));
  cursors.set(roomId, seq);
  state.live.setRooms(cursors);
  renderRooms();
  announce(`You joined ${roomName(room)} in another window.`);
}

// A page left for another stays alive in the back/forward cache, and so
// would its feed: the stream's socket stays open, the server keeps the
// session, and others see the person online until the server's idle cut
// (60 s). Leaving the page ends the feed (the server sees the socket
// close at once); coming back to it resumes from the cursors.
window.addEventListener('pagehide', () => state.live?.stop());
window.addEventListener('pageshow', (ev) => {
  if (!ev.persisted || !state.session || !state.live) return;
  state.live.restart();
  refreshSoon();
});

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && state.session) refreshSoon();
  if (!document.hidden && state.active) {
    markRead(state.active, state.live?.cursor(state.active) ?? 0);
    clearUnread(state.active);
  }
});

// A room's name or topic changed (here, or in the feed).
function updateRoom(room) {
  if (!state.myRooms.has(room.roomId)) return;
  state.myRooms.set(room.roomId, { ...state.myRooms.get(room.roomId), ...room, topic: room.topic ?? '' });
  renderRooms();
  if (room.roomId === state.active) renderRoomHead();
}

function clearUnread(roomId) {
  state.unread.set(roomId, 0);
  state.unreadMore.delete(roomId);
  renderRooms();
}

// ---- the open room -----------------------------------------------------------------

function showRoomPanel(on) {
  $('room-panel').hidden = !on;
  $('no-room').hidden = on;
  $('chat-screen').classList.toggle('in-room', on);
}

function renderRoomHead() {
  const r = state.myRooms.get(state.active);
  if (!r) return;
  $('room-title').textContent = roomName(r);
  const meta = [r.roomId !== (r.name || r.roomId) ? r.roomId : null, roomKind(r), r.topic || null];
  $('room-meta').textContent = meta.filter(Boolean).join(' · ');
}

function timelineCtx() {
  return {
    token,
    me: me(),
    nameOf,
    announce,
    onError: roomError,
    onSessionEnded: sessionEnded,
    onSent: (roomId, seq) => {
      if (roomId === state.active) markRead(roomId, seq);
    },
    focusComposer: () => $('composer-text').focus(),
    onTyping,
    mutate: (tl, fn, older) => {
      const wrap = $('log-wrap');
      if (tl.list !== $('log')) return fn();
      const atBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 48;
      const fromBottom = wrap.scrollHeight - wrap.scrollTop;
      fn();
      if (older && !atBottom) wrap.scrollTop = wrap.scrollHeight - fromBottom;
      else if (atBottom) wrap.scrollTop = wrap.scrollHeight;
      // The first pages may not fill the view: no scrolling could ask
      // for more, so ask now.
      if (wrap.scrollHeight <= wrap.clientHeight + 8) queueMicrotask(olderIfAtTop);
    },
  };
}

// ---- typing ------------------------------------------------------------------------------

const TYPING_LAPSE_MS = 6000;  // the server's: typing = true lapses by itself
const TYPING_RESEND_MS = 4000; // while typing, said again this often
const typers = new Map();      // roomId -> Map userId -> timer
let typingSentAt = 0;          // when this page last said it is typing
let typingRoom = null;

function onTyping(roomId, userId, typing) {
  if (!typers.has(roomId)) typers.set(roomId, new Map());
  const room = typers.get(roomId);
  clearTimeout(room.get(userId));
  room.delete(userId);
  if (typing) room.set(userId, setTimeout(() => onTyping(roomId, userId, false), TYPING_LAPSE_MS));
  if (roomId === state.active) renderTyping();
}

function renderTyping() {
  const who = [...(typers.get(state.active)?.keys() ?? [])].map(nameOf);
  let text = '';
  if (who.length === 1) text = `${who[0]} is typing…`;
  else if (who.length === 2) text = `${who[0]} and ${who[1]} are typing…`;
  else if (who.length > 2) text = 'Several people are typing…';
  $('typing').textContent = text;
}

// Tells the room the person types (or stopped), without a call per key.
function sayTyping(typing) {
  const roomId = state.active;
  if (!roomId) return;
  const now = Date.now();
  if (typing && typingRoom === roomId && now - typingSentAt < TYPING_RESEND_MS) return;
  if (!typing && typingRoom === null) return;
  typingSentAt = typing ? now : 0;
  typingRoom = typing ? roomId : null;
  call('Messaging/SetTyping', { roomId, typing }, { token: token() }).catch(() => {});
}

function openRoom(roomId, focus) {
  if (!state.myRooms.has(roomId)) return;
  state.active = roomId;
  sessionStorage.setItem('parley.room', roomId);
  let tl = state.timelines.get(roomId);
  const fresh = !tl;
  if (fresh) {
    tl = new Timeline(roomId, timelineCtx());
    state.timelines.set(roomId, tl);
  }
  tl.onTop = (text) => {
    if (state.active === roomId) $('log-top').textContent = text;
  };
  $('log').replaceWith(tl.list);
  showRoomPanel(true);
  roomError('');
  renderRoomHead();
  renderTyping();
  manage.reset();
  tl.updateTop();
  const wrap = $('log-wrap');
  wrap.scrollTop = wrap.scrollHeight;
  if (fresh) tl.start();
  markRead(roomId, state.live.cursor(roomId));
  clearUnread(roomId);
  if (focus) $('composer-text').focus();
}

// Loads earlier messages while the top of the log is in view (or the log
// does not fill it), one page at a time.
async function olderIfAtTop() {
  const tl = state.timelines.get(state.active);
  const wrap = $('log-wrap');
  if (!tl || (wrap.scrollTop >= 120 && wrap.scrollHeight > wrap.clientHeight + 8)) return;
  if (await tl.loadOlder() && tl === state.timelines.get(state.active)) olderIfAtTop();
}

function setupRoom() {
  const text = $('composer-text');
  const fit = () => {
    text.rows = Math.min(6, Math.max(1, text.value.split('\n').length));
  };
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = text.value.trim();
    if (!value || !state.active) return;
    if (new TextEncoder().encode(value).length > 4096)
      return roomError('This message is too long: at most 4096 bytes.');
    roomError('');
    state.timelines.get(state.active)?.send(value);
    typingRoom = null; // the message itself tells the others
    text.value = '';
    fit();
    const wrap = $('log-wrap');
    wrap.scrollTop = wrap.scrollHeight;
  });
  text.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $('composer').requestSubmit();
    } else if (ev.key === 'Escape') {
      text.value = '';
      fit();
      roomError('');
      sayTyping(false);
    }
  });
  text.addEventListener('input', () => {
    fit();
    sayTyping(text.value.trim() !== '');
  });
  $('log-wrap').addEventListener('scroll', olderIfAtTop);
  $('leave').addEventListener('click', leaveRoom);
  $('back').addEventListener('click', () => {
    showRoomPanel(false);
    state.active = null;
    sessionStorage.removeItem('parley.room');
    renderRooms();
    $('my-rooms').querySelector('button')?.focus();
  });
}

// ---- start ------------------------------------------------------------------------------

function boot() {
  authForms = setupAuth((s) => enterChat(s));
  setupRoom();
  setupJoin({
    token, me, sessionEnded, addRoom,
    has: (id) => state.myRooms.has(id),
    open: (id) => openRoom(id, true),
  });
  manage = setupManage({
    token, me, names,
    active: () => state.active,
    room: (id) => state.myRooms.get(id),
    onRoom: updateRoom,
    sessionEnded,
    announce,
  });
  $('logout').addEventListener('click', logout);
  $('more-rooms').addEventListener('click', moreRooms);
  const s = loadSession();
  if (s) enterChat(s);
  else {
    showAuth('');
  }
}

boot();
