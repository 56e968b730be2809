// REST and WebSocket access for the console. The JWT lives in sessionStorage (per tab, gone with the tab).
const TOKEN_KEY = 'perf.jwt';

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) { value ? sessionStorage.setItem(TOKEN_KEY, value) : sessionStorage.removeItem(TOKEN_KEY); },
  get user() {
    const token = this.token;
    if (!token) return null;
    try { return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))); } catch { return null; }
  },
};

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function login(username, password) {
  const response = await fetch('/api/auth/login', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username, password }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.message || `login failed (${response.status})`);
  session.token = body.token;
  return body;
}

/** Calls the REST API with the session's JWT; resolves to the parsed JSON (or text), throws ApiError otherwise. */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { 'X-Authorization': `Bearer ${session.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let parsed = text;
  try { parsed = text ? JSON.parse(text) : null; } catch { /* plain text */ }
  if (response.status === 401) {
    session.token = null;
    location.hash = '#/login';
  }
  if (!response.ok) throw new ApiError(response.status, (parsed && parsed.message) || text || `HTTP ${response.status}`);
  return parsed;
}

/**
 * Live updates over /api/ws: authCmd first, then one command per subscription.
 * onUpdate(cmdId, data) gets {key: [[ts, value], ...]}; onState(text) gets 'open' / 'closed'.
 */
export function openLive(commands, onUpdate, onState) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}/api/ws`);
  socket.addEventListener('open', () => {
    socket.send(JSON.stringify({ authCmd: { cmdId: 0, token: session.token } }));
    socket.send(JSON.stringify({ cmds: commands }));
    onState('open');
  });
  socket.addEventListener('message', event => {
    const message = JSON.parse(event.data);
    if (message.errorCode) { onState(`error: ${message.errorMsg}`); return; }
    if (message.data) onUpdate(message.subscriptionId, message.data);
  });
  socket.addEventListener('close', () => onState('closed'));
  return () => socket.close();
}

/** Parses Prometheus text into [{name, labels, value}]. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}
