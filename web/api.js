// api.js — Parley's HTTP face from the browser: unary calls by the Connect
// protocol (POST /parley.v1.<Service>/<Method>, JSON), the
// Messaging/Subscribe server stream read from fetch()'s ReadableStream
// (Connect envelopes: 1 flag byte, 4 bytes big-endian length, the JSON;
// flag 0x02 marks the end-of-stream message that carries the error, if
// any), and the words shown to people for each kind of failure.

const UNARY_TIMEOUT_MS = 15000;
// A stream message is a SubscribeResponse; the server caps requests at
// 64 KiB and a Poll's batch stays far below this.
const MAX_STREAM_MESSAGE = 16 * 1024 * 1024;

export class ApiError extends Error {
  // code: a Connect code name ("unavailable", ...); message: the server's
  // words (or ours when the server could not be reached).
  constructor(code, message, retryAfterMs = 0) {
    super(message);
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

// Connect's mapping of HTTP statuses for answers that carry no Connect
// error body (a proxy's page, an empty 502).
function codeOfHttp(status) {
  switch (status) {
    case 400: return 'invalid_argument';
    case 401: return 'unauthenticated';
    case 403: return 'permission_denied';
    case 404: return 'unimplemented';
    case 408: return 'deadline_exceeded';
    case 413: return 'resource_exhausted';
    case 429: case 502: case 503: case 504: return 'unavailable';
    default: return 'unknown';
  }
}

function retryAfter(resp) {
  const v = resp.headers.get('Retry-After');
  const s = v === null ? NaN : Number(v);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 0;
}

function headers(token, timeoutMs, contentType) {
  const hd = {
    'Content-Type': contentType,
    'Connect-Protocol-Version': '1',
  };
  if (timeoutMs) hd['Connect-Timeout-Ms'] = String(timeoutMs);
  if (token) hd.Authorization = `Bearer ${token}`;
  return hd;
}

function unreachable() {
  return new ApiError('unavailable', 'the server cannot be reached');
}

// call('Auth/Login', {userId, password}, {token}) -> the response message.
// Throws ApiError; an AbortError when opts.signal aborts.
export async function call(method, body, opts = {}) {
  const timeoutMs = opts.timeoutMs ?? UNARY_TIMEOUT_MS;
  const signals = [AbortSignal.timeout(timeoutMs + 2000)];
  if (opts.signal) signals.push(opts.signal);
  let resp;
  try {
    resp = await fetch(`/parley.v1.${method}`, {
      method: 'POST',
      headers: headers(opts.token, timeoutMs, 'application/json'),
      body: JSON.stringify(body ?? {}),
      cache: 'no-store',
      credentials: 'omit',
      signal: anySignal(signals),
    });
  } catch (e) {
    if (opts.signal?.aborted) throw e;
    if (e.name === 'TimeoutError') throw new ApiError('deadline_exceeded', 'no answer in time');
    throw unreachable();
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // not JSON: the status alone tells
  }
  if (resp.ok) return data ?? {};
  if (data && typeof data.code === 'string')
    throw new ApiError(data.code, String(data.message ?? ''), retryAfter(resp));
  throw new ApiError(codeOfHttp(resp.status), `HTTP ${resp.status}`, retryAfter(resp));
}

function anySignal(signals) {
  if (signals.length === 1) return signals[0];
  if (AbortSignal.any) return AbortSignal.any(signals);
  const ctl = new AbortController();
  for (const s of signals) {
    if (s.aborted) ctl.abort(s.reason);
    else s.addEventListener('abort', () => ctl.abort(s.reason), { once: true });
  }
  return ctl.signal;
}

function concat(a, b) {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// Reads Messaging/Subscribe: calls onMessage(SubscribeResponse) for each
// message, resolves when the server ends the stream cleanly, throws
// ApiError when it ends with an error or the connection breaks, and an
// AbortError when signal aborts. onActivity() runs on every chunk, even a
// partial one, so the caller can tell a live line from a dead one.
export async function subscribe(request, { token, signal, onMessage, onActivity }) {
  let resp;
  try {
    resp = await fetch('/parley.v1.Messaging/Subscribe', {
      method: 'POST',
      headers: headers(token, 0, 'application/connect+json'),
      body: envelope(JSON.stringify(request)),
      cache: 'no-store',
      credentials: 'omit',
      signal,
    });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw unreachable();
  }
  if (!resp.ok) {
    let data = null;
    try {
      data = await resp.json();
    } catch {
      // the status alone tells
    }
    if (data && typeof data.code === 'string')
      throw new ApiError(data.code, String(data.message ?? ''), retryAfter(resp));
    throw new ApiError(codeOfHttp(resp.status), `HTTP ${resp.status}`, retryAfter(resp));
  }
  const reader = resp.body.getReader();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let buf = new Uint8Array(0);
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        if (signal?.aborted) throw e;
        throw unreachable();
      }
      if (chunk.done) break;
      onActivity?.();
      buf = concat(buf, chunk.value);
      while (buf.length >= 5) {
        const flags = buf[0];
        const len = new DataView(buf.buffer, buf.byteOffset + 1, 4).getUint32(0);
        if (len > MAX_STREAM_MESSAGE)
          throw new ApiError('internal', 'the server sent a message too large to read');
        if (buf.length < 5 + len) break;
        let msg;
        try {
          msg = JSON.parse(utf8.decode(buf.subarray(5, 5 + len)));
        } catch {
          throw new ApiError('internal', 'the server sent a message that cannot be read');
        }
        buf = buf.slice(5 + len);
        if (flags & 0x02) {
          if (msg && msg.error)
            throw new ApiError(String(msg.error.code ?? 'unknown'), String(msg.error.message ?? ''));
          return;
        }
        onMessage(msg);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  // The connection ended without an end-of-stream message.
  throw unreachable();
}

function envelope(json) {
  const payload = new TextEncoder().encode(json);
  const out = new Uint8Array(5 + payload.length);
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

// Errors worth trying again unchanged: the server was away, busy or slow.
export function isTransient(err) {
  return err instanceof ApiError &&
    ['unavailable', 'deadline_exceeded', 'resource_exhausted', 'aborted'].includes(err.code);
}

function sentence(s) {
  s = String(s).trim();
  if (s === '') return '';
  s = s[0].toUpperCase() + s.slice(1);
  return /[.!?]$/.test(s) ? s : `${s}.`;
}

// The words a person reads for err, never a status name. `doing` says
// what failed ("Could not join the room").
export function describe(err, doing = '') {
  const lead = doing ? `${doing}: ` : '';
  if (!(err instanceof ApiError)) return `${lead}something went wrong in this page (${err?.message ?? err}).`;
  const server = sentence(err.message);
  switch (err.code) {
    case 'unavailable':
      return `${lead}the server cannot be reached right now. Check your connection; Parley keeps trying.`;
    case 'deadline_exceeded':
      return `${lead}the server took too long to answer. Please try again.`;
    case 'resource_exhausted': {
      const secs = Math.ceil(err.retryAfterMs / 1000);
      return `${lead}too many attempts or the server is busy.` +
        (secs > 0 ? ` Please wait ${secs} second${secs === 1 ? '' : 's'} and try again.` : ' Please try again in a moment.');
    }
    case 'unauthenticated':
      return `${lead}${server || 'You need to log in again.'}`;
    case 'permission_denied':
      return `${lead}you are not allowed to do that. ${server}`.trim();
    case 'internal':
    case 'unknown':
    case 'data_loss':
      return `${lead}something went wrong on the server. Please try again later.` +
        (server ? ` (${server})` : '');
    case 'unimplemented':
      return `${lead}this server does not offer that.`;
    default:
      // invalid_argument, not_found, already_exists, failed_precondition,
      // out_of_range, cancelled: the server's own words say what is wrong.
      return `${lead}${server || 'the request was refused.'}`;
  }
}
