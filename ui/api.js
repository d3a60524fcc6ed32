// The agent's API as the dashboard uses it: the token (sessionStorage, never a URL), JSON calls, writes with a
// command id, and the event stream read through fetch() so that it can carry the Authorization header.
const KEY = 'infermesh.token';

export function token() { return sessionStorage.getItem(KEY) || ''; }
export function setToken(t) { t ? sessionStorage.setItem(KEY, t) : sessionStorage.removeItem(KEY); }

// An API answer that was not 2xx: status, the agent's message (OpenAI error format) and code.
export class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
  get auth() { return this.status === 401 || this.status === 403; }
}

function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  const t = token();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

async function answer(r) {
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!r.ok) {
    const e = body && body.error;
    throw new ApiError(r.status, (e && e.message) || text.trim() || r.statusText, e && e.code);
  }
  return body;
}

export async function get(path) {
  return answer(await fetch(path, { headers: headers(), cache: 'no-store' }));
}

function commandId() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return 'ui-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// A change: POST/PUT/DELETE with the admin token and a fresh x-infermesh-command-id (so that a retried
// control-plane write applies once).
export async function write(method, path, body) {
  const h = headers({ 'x-infermesh-command-id': commandId() });
  const init = { method, headers: h };
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return answer(await fetch(path, init));
}

export const seg = (s) => encodeURIComponent(s);

// Reads the SSE stream at path until signal aborts; onEvent(kind, data, id) per event, onState(text) on
// (re)connection. Replays what the agent keeps first; reconnects with a growing delay after the last id seen.
export async function events(path, signal, onEvent, onState) {
  let last = '', delay = 500;
  while (!signal.aborted) {
    try {
      // since=N replays the agent's recent events after N (0: all it keeps), then the stream goes live.
      const h = headers({ Accept: 'text/event-stream' });
      const r = await fetch(`${path}?since=${last || 0}`, { headers: h, signal, cache: 'no-store' });
      if (!r.ok) throw await answer(r).catch((e) => e);
      onState('live');
      delay = 500;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let kind = 'message', data = [], id = '';
          for (const line of frame.split('\n')) {
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const f = c < 0 ? line : line.slice(0, c);
            const v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (f === 'event') kind = v;
            else if (f === 'data') data.push(v);
            else if (f === 'id') id = v;
          }
          if (id) last = id;
          if (data.length) onEvent(kind, data.join('\n'), id);
        }
      }
      onState('reconnecting');
    } catch (e) {
      if (signal.aborted) return;
      onState(e instanceof ApiError ? e : 'reconnecting');
      if (e instanceof ApiError && e.auth) return; // a new token restarts it
    }
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 8000);
  }
}
