// Parley from the reference Connect client for TypeScript, in Node.js:
// @connectrpc/connect + @connectrpc/connect-node over HTTP/1.1, with code
// that @bufbuild/protoc-gen-es generated from proto/ at test time (run by
// tests/clients/connect_node_test.sh). One client speaks JSON, the other the
// binary format; both read Messaging.Subscribe streams while both send.
//
// usage: node connect_test.mjs BASE_URL GENERATED_DIR
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

const [base, gen] = process.argv.slice(2);
const { Auth } = await import(`${gen}/parley/v1/auth_pb.js`);
const { Rooms } = await import(`${gen}/parley/v1/rooms_pb.js`);
const { Messaging } = await import(`${gen}/parley/v1/messaging_pb.js`);
const { History } = await import(`${gen}/parley/v1/history_pb.js`);

const ROOM = "stream";
const PER_SENDER = 30;
let passed = 0;

function fail(what) {
  console.error(`FAIL: ${what}`);
  process.exit(1);
}
function check(cond, what) {
  if (!cond) fail(typeof what === "function" ? what() : what);
}
function ok(what) {
  passed++;
  console.log(`ok ${what}`);
}
const show = (v) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x));

// A person: a transport (JSON or binary), clients, a token after login.
function person(name, useBinaryFormat) {
  const transport = createConnectTransport({ baseUrl: base, httpVersion: "1.1", useBinaryFormat });
  const p = {
    name,
    auth: createClient(Auth, transport),
    rooms: createClient(Rooms, transport),
    messaging: createClient(Messaging, transport),
    history: createClient(History, transport),
    opts: {},
  };
  return p;
}

async function signup(p) {
  const password = `pw-${p.name}-secret`;
  const r = await p.auth.register({ userId: p.name, password, displayName: p.name });
  check(r.user?.userId === p.name && r.user.createdAtMs > 0n, () => `register: ${show(r)}`);
  const l = await p.auth.login({ userId: p.name, password });
  check(l.token.length >= 40 && l.expiresAtMs > 0n, () => `login: ${show(l)}`);
  p.opts = { headers: { Authorization: `Bearer ${l.token}` } };
}

async function expectCode(code, what, promise) {
  try {
    await promise;
  } catch (e) {
    const err = ConnectError.from(e);
    check(err.code === code, () => `${what}: got ${Code[err.code]} (${err.rawMessage}), want ${Code[code]}`);
    check(err.rawMessage.length > 0, `${what}: error without a message`);
    return err;
  }
  fail(`${what}: succeeded, want ${Code[code]}`);
}

// Reads a Subscribe stream from sinceSeq until `want` chat messages have
// arrived; calls onReady once the first message (the heads) is in.
async function subscribe(p, sinceSeq, want, onReady = () => {}) {
  const events = [];
  const ac = new AbortController();
  let first = true, chats = 0;
  for await (const res of p.messaging.subscribe({ rooms: [{ roomId: ROOM, sinceSeq }] }, { ...p.opts, signal: ac.signal })) {
    if (first) {
      check(res.heads.length === 1 && res.heads[0].roomId === ROOM, () => `first message has no head: ${show(res)}`);
      first = false;
      onReady();
    }
    for (const ev of res.events) {
      events.push(ev);
      if (ev.body.case === "message") chats++;
    }
    if (chats >= want) break;
  }
  // Leaving the loop stops reading; aborting closes the connection (else
  // it stays open, with the server's keep-alives, and Node never exits).
  ac.abort();
  return events;
}

// Every event once, in seq order, from sinceSeq on; the chat messages are
// exactly those sent after sinceSeq, each at the seq its Send returned.
// Presence events are ephemeral (seq 0) and left out of the order.
function checkStream(who, events, sinceSeq, sent) {
  const presence = events.filter((e) => e.body.case === "presence");
  check(presence.every((e) => e.seq === 0n), () => `${who}: presence with a seq ${show(presence)}`);
  events = events.filter((e) => e.body.case !== "presence");
  for (let i = 0; i < events.length; i++) {
    check(events[i].roomId === ROOM, () => `${who}: event of another room ${show(events[i])}`);
    check(events[i].seq > sinceSeq, () => `${who}: seq ${events[i].seq} not after since_seq ${sinceSeq}`);
    check(i === 0 || events[i].seq > events[i - 1].seq,
      () => `${who}: seq ${events[i].seq} after ${events[i - 1].seq} (duplicate or out of order)`);
  }
  const got = events.filter((e) => e.body.case === "message").map((e) => `${e.seq} ${e.sender} ${e.body.value.text}`);
  const want = [...sent.entries()].filter(([seq]) => seq > sinceSeq).sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([seq, m]) => `${seq} ${m}`);
  check(show(got) === show(want), () => `${who}: messages\n  got  ${show(got)}\n  want ${show(want)}`);
}

const carol = person("carol", false); // JSON
const dave = person("dave", true); // binary
await signup(carol);
await signup(dave);
ok("register and log in (JSON and binary)");

const created = await carol.rooms.createRoom({ roomId: ROOM, name: "Stream Room" }, carol.opts);
check(created.room?.roomId === ROOM && created.room.createdBy === "carol", () => `create: ${show(created)}`);
const joined = await dave.rooms.joinRoom({ roomId: ROOM }, dave.opts);
check(joined.room?.memberCount === 2, () => `join: ${show(joined)}`);
ok("create and join a room");

// Both read streams (one JSON, one binary); both send once both streams
// have started, concurrently. sent: seq -> "sender text".
const sent = new Map();
let ready = 0, go;
const started = new Promise((resolve) => (go = resolve));
const onReady = () => ++ready === 2 && go();
const streams = [subscribe(carol, 0n, 2 * PER_SENDER, onReady), subscribe(dave, 0n, 2 * PER_SENDER, onReady)];
await started;
await Promise.all([carol, dave].map(async (p) => {
  for (let i = 0; i < PER_SENDER; i++) {
    const text = `${p.name} says ${i} \u00e9\u2615`;
    const r = await p.messaging.send({ roomId: ROOM, text, clientMsgId: `${p.name}-${i}` }, p.opts);
    check(r.seq > 0n && !sent.has(r.seq), () => `send: ${show(r)}`);
    sent.set(r.seq, `${p.name} ${text}`);
  }
}));
const [carolEvents, daveEvents] = await Promise.all(streams);
checkStream("carol (JSON stream)", carolEvents, 0n, sent);
checkStream("dave (binary stream)", daveEvents, 0n, sent);
check(daveEvents.some((e) => e.body.case === "membership" && e.sender === "dave"), "dave's join is not in the stream");
ok(`Subscribe while two clients send: ${sent.size} messages, each once and in order, on a JSON and a binary stream`);

// Reconnect from a cursor in the middle: exactly the later events.
const seqs = [...sent.keys()].sort((a, b) => (a < b ? -1 : 1));
const cursor = seqs[PER_SENDER - 1];
const resumed = await subscribe(dave, cursor, PER_SENDER);
checkStream("dave (resumed)", resumed, cursor, sent);
ok(`resume from since_seq ${cursor}: the ${PER_SENDER} later messages, none before`);

const h = await carol.history.getHistory({ roomId: ROOM, limit: 500 }, carol.opts);
check(h.headSeq === seqs[seqs.length - 1], () => `head_seq ${h.headSeq}, last send ${seqs[seqs.length - 1]}`);
checkStream("history (JSON)", h.events, 0n, sent);
ok("history over JSON matches the streams");

await expectCode(Code.Unauthenticated, "login with a wrong password",
  carol.auth.login({ userId: "carol", password: "not-the-password" }));
await expectCode(Code.Unauthenticated, "send with a bad token",
  dave.messaging.send({ roomId: ROOM, text: "x", clientMsgId: "x" }, { headers: { Authorization: "Bearer nope" } }));
await expectCode(Code.PermissionDenied, "history of a room dave is not in", (async () => {
  await carol.rooms.createRoom({ roomId: "carols" }, carol.opts);
  await dave.history.getHistory({ roomId: "carols" }, dave.opts);
})());
await expectCode(Code.InvalidArgument, "an empty message", carol.messaging.send({ roomId: ROOM, text: "", clientMsgId: "e" }, carol.opts));
ok("errors arrive as Connect errors with their codes and messages");

console.log(`connect_test: ${passed} passed, 0 failed`);
