// The Perf web console: hash-routed pages over the REST API, live data over /api/ws, server stats from /metrics.
import { api, login, openLive, parseMetrics, session } from './api.js';
import { h, show, table, time } from './dom.js';
import { LiveChart } from './chart.js';

const view = document.getElementById('view');
let cleanup = [];

function onLeave(fn) { cleanup.push(fn); }

function render(...nodes) { view.replaceChildren(...nodes); }

function failure(error) { return h('p', { class: 'error', role: 'alert' }, error.message || String(error)); }

const routes = [
  [/^#\/login$/, loginPage],
  [/^#\/devices$/, devicesPage],
  [/^#\/device\/([0-9a-f-]{36})$/, devicePage],
  [/^#\/integrations$/, integrationsPage],
  [/^#\/edges$/, edgesPage],
  [/^#\/server$/, serverPage],
];

async function route() {
  cleanup.forEach(fn => fn());
  cleanup = [];
  const hash = location.hash || '#/devices';
  if (!session.token && hash !== '#/login') { location.hash = '#/login'; return; }
  const topbar = document.getElementById('topbar');
  topbar.hidden = !session.token;
  document.getElementById('whoami').textContent = session.user?.sub ?? '';
  for (const link of topbar.querySelectorAll('nav a')) link.classList.toggle('active', hash.startsWith(link.getAttribute('href')));
  for (const [pattern, page] of routes) {
    const match = pattern.exec(hash);
    if (match) {
      try { await page(...match.slice(1)); } catch (error) { render(failure(error)); }
      return;
    }
  }
  location.hash = '#/devices';
}

// ---- login -------------------------------------------------------------------------------------------
function loginPage() {
  const error = h('p', { id: 'login-error', class: 'error', role: 'alert' });
  const form = h('form', { id: 'login', class: 'card' },
    h('h1', {}, 'Perf console'),
    h('label', { for: 'login-username' }, 'User'),
    h('input', { id: 'login-username', name: 'username', autocomplete: 'username', value: 'tenant@example.com' }),
    h('label', { for: 'login-password' }, 'Password'),
    h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password' }),
    h('button', { id: 'login-submit', type: 'submit' }, 'Log in'),
    error);
  form.addEventListener('submit', async event => {
    event.preventDefault();
    error.textContent = '';
    try {
      await login(form.username.value, form.password.value);
      location.hash = '#/devices';
    } catch (e) { error.textContent = e.message; }
  });
  render(form);
}

// ---- devices ----------------------------------------------------------------------------------------
const deviceList = { page: 0, pageSize: 20, textSearch: '' };

async function devicesPage() {
  const search = h('input', { id: 'device-search', type: 'search', placeholder: 'Search by name', value: deviceList.textSearch });
  const body = h('div', { id: 'device-list' });
  const info = h('span', { id: 'devices-page-info', class: 'muted' });
  const prev = h('button', { id: 'devices-prev', class: 'secondary', type: 'button' }, '‹ Prev');
  const next = h('button', { id: 'devices-next', class: 'secondary', type: 'button' }, 'Next ›');

  async function load() {
    const query = new URLSearchParams({ pageSize: deviceList.pageSize, page: deviceList.page });
    if (deviceList.textSearch) query.set('textSearch', deviceList.textSearch);
    try {
      const result = await api(`/api/tenant/devices?${query}`);
      const rows = result.data.map(d => h('tr', { 'data-testid': 'device-row' },
        h('td', {}, h('a', { href: `#/device/${d.id.id}`, 'data-testid': `device-link-${d.name}` }, d.name)),
        h('td', {}, d.type ?? ''), h('td', {}, d.label ?? ''), h('td', {}, time(d.createdTime))));
      body.replaceChildren(table(['Name', 'Type', 'Label', 'Created'], rows, { id: 'devices-table' }));
      info.textContent = `page ${deviceList.page + 1} of ${Math.max(1, result.totalPages)} · ${result.totalElements} devices`;
      prev.disabled = deviceList.page === 0;
      next.disabled = !result.hasNext;
    } catch (e) { body.replaceChildren(failure(e)); }
  }

  let debounce;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { deviceList.textSearch = search.value.trim(); deviceList.page = 0; load(); }, 250);
  });
  prev.addEventListener('click', () => { deviceList.page = Math.max(0, deviceList.page - 1); load(); });
  next.addEventListener('click', () => { deviceList.page++; load(); });
  render(h('h1', {}, 'Devices'), h('div', { class: 'card' }, h('div', { class: 'row' }, search, prev, next, info), body));
  await load();
}

// ---- device -----------------------------------------------------------------------------------------
async function devicePage(id) {
  const device = await api(`/api/device/${id}`);
  const latest = new Map();
  const latestBody = h('tbody', { id: 'latest-telemetry' });
  const chartKey = h('select', { id: 'chart-key' });
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('id', 'chart');
  svg.setAttribute('data-testid', 'chart');
  const chart = new LiveChart(svg);
  const wsState = h('span', { id: 'ws-status', class: 'pill' }, 'connecting');
  const history = new Map();

  function drawLatest() {
    latestBody.replaceChildren(...[...latest.keys()].sort().map(key => {
      const [ts, value] = latest.get(key);
      return h('tr', {}, h('td', {}, key), h('td', { class: 'num', 'data-testid': `latest-${key}` }, show(value)), h('td', { class: 'muted' }, time(ts)));
    }));
    const keys = [...latest.keys()].sort();
    const chosen = chartKey.value;
    if (keys.join() !== [...chartKey.options].map(o => o.value).join()) {
      chartKey.replaceChildren(...keys.map(k => h('option', { value: k }, k)));
      chartKey.value = keys.includes(chosen) ? chosen : keys.find(k => Number.isFinite(Number(latest.get(k)[1]))) ?? keys[0] ?? '';
      chart.reset(history.get(chartKey.value) ?? []);
    }
  }

  chartKey.addEventListener('change', () => chart.reset(history.get(chartKey.value) ?? []));

  const attributes = h('div', { id: 'attributes' });
  async function loadAttributes() {
    const sections = [];
    for (const scope of ['CLIENT_SCOPE', 'SHARED_SCOPE', 'SERVER_SCOPE']) {
      const items = await api(`/api/plugins/telemetry/DEVICE/${id}/values/attributes/${scope}`);
      const rows = items.map(a => h('tr', {}, h('td', {}, a.key),
        h('td', { class: 'num', 'data-testid': `attr-${scope}-${a.key}` }, show(a.value)), h('td', { class: 'muted' }, time(a.lastUpdateTs))));
      sections.push(h('h2', {}, scope.replace('_SCOPE', '').toLowerCase()),
        rows.length ? table(['Key', 'Value', 'Updated'], rows, { 'data-testid': `attributes-${scope}` }) : h('p', { class: 'muted' }, 'none'));
    }
    attributes.replaceChildren(...sections);
  }

  const sharedKey = h('input', { id: 'shared-key', placeholder: 'key' });
  const sharedValue = h('input', { id: 'shared-value', placeholder: 'value (JSON or text)' });
  const sharedStatus = h('span', { id: 'shared-status', class: 'muted' });
  const sharedSave = h('button', { id: 'shared-save', type: 'button' }, 'Save shared');
  sharedSave.addEventListener('click', async () => {
    const key = sharedKey.value.trim();
    if (!key) { sharedStatus.textContent = 'key required'; return; }
    let value = sharedValue.value;
    try { value = JSON.parse(value); } catch { /* keep text */ }
    try {
      await api(`/api/plugins/telemetry/DEVICE/${id}/SHARED_SCOPE`, { method: 'POST', body: { [key]: value } });
      sharedStatus.textContent = `saved ${key}`;
      sharedStatus.className = 'ok';
      await loadAttributes();
    } catch (e) { sharedStatus.textContent = e.message; sharedStatus.className = 'error'; }
  });

  const rpcMethod = h('input', { id: 'rpc-method', placeholder: 'method', value: 'getState' });
  const rpcParams = h('textarea', { id: 'rpc-params', rows: 3 }, '{}');
  const rpcMode = h('select', { id: 'rpc-mode' },
    h('option', { value: 'twoway' }, 'two-way'), h('option', { value: 'oneway' }, 'one-way'), h('option', { value: 'persistent' }, 'persistent (two-way)'));
  const rpcTimeout = h('input', { id: 'rpc-timeout', type: 'number', min: 5000, step: 1000, value: 10000, title: 'timeout, ms' });
  const rpcResult = h('pre', { id: 'rpc-result', 'data-testid': 'rpc-result' }, '');
  const rpcSend = h('button', { id: 'rpc-send', type: 'button' }, 'Send');
  const persistentBody = h('div', { id: 'rpc-persistent' });
  async function loadPersistent() {
    const result = await api(`/api/rpc/persistent/device/${id}?pageSize=20&page=0&sortProperty=createdTime&sortOrder=DESC`);
    const rows = result.data.map(r => h('tr', { 'data-testid': 'rpc-persistent-row' },
      h('td', {}, time(r.createdTime)), h('td', {}, r.request?.body?.method ?? ''),
      h('td', {}, h('span', { class: 'pill', 'data-testid': `rpc-status-${r.id.id}` }, r.status)), h('td', {}, show(r.response))));
    persistentBody.replaceChildren(rows.length ? table(['Created', 'Method', 'Status', 'Response'], rows) : h('p', { class: 'muted' }, 'none'));
  }

  rpcSend.addEventListener('click', async () => {
    let params;
    try { params = JSON.parse(rpcParams.value || '{}'); } catch { rpcResult.textContent = 'params must be JSON'; return; }
    const mode = rpcMode.value;
    const body = { method: rpcMethod.value, params, timeout: Number(rpcTimeout.value) || 10000 };
    if (mode === 'persistent') body.persistent = true;
    rpcSend.disabled = true;
    rpcResult.className = 'muted';
    rpcResult.textContent = 'waiting…';
    try {
      const reply = await api(`/api/rpc/${mode === 'oneway' ? 'oneway' : 'twoway'}/${id}`, { method: 'POST', body });
      rpcResult.className = 'ok';
      rpcResult.textContent = mode === 'oneway' ? 'delivered' : JSON.stringify(reply ?? null, null, 2);
      if (mode === 'persistent') await loadPersistent();
    } catch (e) {
      rpcResult.className = 'error';
      rpcResult.textContent = `${e.status ?? ''} ${e.message}`.trim();
    } finally { rpcSend.disabled = false; }
  });

  const credentials = await api(`/api/device/${id}/credentials`).catch(() => null);
  render(
    h('h1', { id: 'device-title' }, device.name, ' ', h('span', { class: 'muted' }, device.type ?? '')),
    h('p', { class: 'muted' }, `id ${id}`, credentials ? ` · token ${credentials.credentialsId}` : '', ' · live ', wsState),
    h('div', { class: 'grid' },
      h('section', { class: 'card' }, h('h2', {}, 'Latest telemetry'), table(['Key', 'Value', 'Time'], latestBody, { id: 'latest-table' }), h('div', { class: 'row' }, 'Chart ', chartKey), svg),
      h('section', { class: 'card' }, h('h2', {}, 'Attributes'), attributes,
        h('h2', {}, 'Edit shared attribute'), h('div', { class: 'row' }, sharedKey, sharedValue, sharedSave), sharedStatus),
      h('section', { class: 'card' }, h('h2', {}, 'RPC'), h('div', { class: 'row' }, rpcMethod, rpcMode, rpcTimeout, rpcSend), rpcParams, rpcResult),
      h('section', { class: 'card' }, h('h2', {}, 'Persistent RPCs ', h('button', { id: 'rpc-persistent-refresh', class: 'secondary', type: 'button', onclick: () => loadPersistent() }, 'Refresh')), persistentBody)));

  await Promise.all([loadAttributes(), loadPersistent()]);
  const close = openLive([
    { type: 'TIMESERIES', entityType: 'DEVICE', entityId: id, scope: 'LATEST_TELEMETRY', cmdId: 1 },
    { type: 'ATTRIBUTES', entityType: 'DEVICE', entityId: id, cmdId: 2 },
  ], (cmdId, data) => {
    if (cmdId === 2) { loadAttributes().catch(() => {}); return; }
    for (const [key, points] of Object.entries(data)) {
      for (const [ts, value] of points) {
        const current = latest.get(key);
        if (!current || ts >= current[0]) latest.set(key, [ts, value]);
        const series = history.get(key) ?? [];
        if (Number.isFinite(Number(value))) series.push([Number(ts), Number(value)]);
        history.set(key, series.slice(-120));
        if (key === chartKey.value) chart.add(ts, value);
      }
    }
    drawLatest();
  }, state => { wsState.textContent = state; wsState.className = `pill ${state === 'open' ? 'on' : 'off'}`; });
  onLeave(close);
  const timer = setInterval(() => loadPersistent().catch(() => {}), 5000);
  onLeave(() => clearInterval(timer));
}

// ---- integrations -----------------------------------------------------------------------------------
async function integrationsPage() {
  const list = await api('/api/integrations?pageSize=100&page=0');
  const events = h('div', { id: 'converter-events' }, h('p', { class: 'muted' }, 'Choose an integration to see its converter events.'));
  async function showEvents(converterId, name) {
    try {
      const result = await api(`/api/converter/${converterId}/events?pageSize=50&page=0`);
      const rows = result.data.map(e => h('tr', {}, h('td', {}, time(e.createdTime)), h('td', {}, e.eventType ?? e.body?.type ?? ''),
        h('td', {}, h('pre', {}, show(e.body?.error ?? e.body?.out ?? e.body?.in)))));
      events.replaceChildren(h('h2', {}, `Converter events of ${name}`), rows.length ? table(['Time', 'Type', 'Data'], rows) : h('p', { class: 'muted' }, 'no events'));
    } catch (e) { events.replaceChildren(failure(e)); }
  }

  const rows = list.data.map(i => {
    const converterId = i.defaultConverterId?.id;
    const status = i.status ?? {};
    return h('tr', { 'data-testid': 'integration-row' },
      h('td', {}, i.name), h('td', {}, i.type),
      h('td', {}, h('span', { class: `pill ${i.enabled ? 'on' : 'off'}` }, i.enabled ? 'enabled' : 'disabled')),
      h('td', {}, status.listening ? `listening :${status.port}` : (status.error ?? '')),
      h('td', {}, converterId ? h('button', { class: 'secondary', type: 'button', onclick: () => showEvents(converterId, i.name) }, 'Events') : ''));
  });

  const payload = h('textarea', { id: 'decoder-payload', rows: 3 }, '{"temperature": 21.5}');
  const decoder = h('textarea', { id: 'decoder-script', rows: 8 },
    '// payload is an array of bytes\nvar data = JSON.parse(String.fromCharCode.apply(null, payload));\nreturn {\n  deviceName: "sensor-1",\n  deviceType: "default",\n  telemetry: data\n};');
  const output = h('pre', { id: 'decoder-output' });
  const run = h('button', { id: 'decoder-run', type: 'button' }, 'Test decoder');
  run.addEventListener('click', async () => {
    try {
      const bytes = new TextEncoder().encode(payload.value);
      const base64 = btoa(String.fromCharCode(...bytes));
      const result = await api('/api/converter/testUpLink?scriptLang=JS', { method: 'POST', body: { payload: base64, metadata: {}, decoder: decoder.value } });
      output.className = result.error ? 'error' : 'ok';
      output.textContent = result.error || result.output;
    } catch (e) { output.className = 'error'; output.textContent = e.message; }
  });

  render(h('h1', {}, 'Integrations'),
    h('div', { class: 'card' }, rows.length ? table(['Name', 'Type', 'State', 'Listener', ''], rows, { id: 'integrations-table' }) : h('p', { class: 'muted' }, 'No integrations.')),
    h('div', { class: 'card' }, events),
    h('div', { class: 'card' }, h('h2', {}, 'Test decoder'), h('label', {}, 'Payload (text)'), payload, h('label', {}, 'Decoder (JS)'), decoder,
      h('div', { class: 'row' }, run), output));
}

// ---- edges ------------------------------------------------------------------------------------------
async function edgesPage() {
  const list = await api('/api/tenant/edges?pageSize=100&page=0');
  const detail = h('div', { id: 'edge-detail' });
  async function showEdge(id) {
    const edge = await api(`/api/edge/${id}`);
    detail.replaceChildren(h('h2', {}, edge.name), h('pre', {}, JSON.stringify(edge.additionalInfo ?? edge, null, 2)));
  }

  const rows = list.data.map(e => {
    const info = e.additionalInfo ?? {};
    return h('tr', { 'data-testid': 'edge-row' },
      h('td', {}, h('a', { href: '#/edges', onclick: event => { event.preventDefault(); showEdge(e.id.id); } }, e.name)),
      h('td', {}, e.type ?? ''),
      h('td', {}, h('span', { class: `pill ${info.connected ? 'on' : 'off'}` }, info.connected ? 'connected' : 'offline')),
      h('td', {}, info.edgeVersion ?? ''), h('td', {}, time(info.lastConnectTime)),
      h('td', { class: 'num' }, info.pendingDownlinks ?? 0), h('td', { class: 'num' }, (info.failedDownlinks ?? []).length));
  });
  render(h('h1', {}, 'Edges'),
    h('div', { class: 'card' }, rows.length
      ? table(['Name', 'Type', 'Sync', 'Version', 'Last connect', 'Pending downlinks', 'Failed'], rows, { id: 'edges-table' })
      : h('p', { class: 'muted' }, 'No edges.')),
    h('div', { class: 'card' }, detail));
}

// ---- server -----------------------------------------------------------------------------------------
const DOORS = ['mqtt', 'http', 'coap', 'tcp', 'edge'];

async function serverPage() {
  const doors = h('tbody', { id: 'server-doors' });
  const process = h('tbody', { id: 'server-process' });
  const updated = h('span', { id: 'server-updated', class: 'muted' });
  let previous = null;

  const sum = (samples, name, filter = () => true) => samples.filter(s => s.name === name && filter(s.labels)).reduce((a, s) => a + s.value, 0);

  async function poll() {
    const response = await fetch('/metrics');
    const samples = parseMetrics(await response.text());
    const now = performance.now();
    const counters = Object.fromEntries(DOORS.map(d => [d, {
      in: sum(samples, `perf_${d}_messages_in`), out: sum(samples, `perf_${d}_messages_out`),
      bytesIn: sum(samples, `perf_${d}_bytes_in`), bytesOut: sum(samples, `perf_${d}_bytes_out`),
    }]));
    const seconds = previous ? (now - previous.at) / 1000 : 0;
    const rate = (d, k) => (previous && seconds > 0 ? Math.max(0, (counters[d][k] - previous.counters[d][k]) / seconds) : 0).toFixed(1);
    doors.replaceChildren(...DOORS.map(d => h('tr', {},
      h('td', {}, d),
      h('td', { class: 'num', 'data-testid': `door-${d}-connections` }, sum(samples, `perf_${d}_connections`)),
      h('td', { class: 'num', 'data-testid': `door-${d}-sessions` }, sum(samples, 'perf_core_sessions', l => l.transport === d)),
      h('td', { class: 'num', 'data-testid': `door-${d}-in-rate` }, rate(d, 'in')),
      h('td', { class: 'num', 'data-testid': `door-${d}-out-rate` }, rate(d, 'out')),
      h('td', { class: 'num' }, counters[d].in), h('td', { class: 'num' }, counters[d].bytesIn))));
    const commits = sum(samples, 'perf_core_commit_duration_count');
    const commitMs = commits ? (sum(samples, 'perf_core_commit_duration_sum') / commits).toFixed(2) : '–';
    const mb = v => `${(v / 1048576).toFixed(1)} MiB`;
    process.replaceChildren(
      h('tr', {}, h('td', {}, 'Working set'), h('td', { class: 'num', 'data-testid': 'working-set' }, mb(sum(samples, 'perf_host_process_working_set')))),
      h('tr', {}, h('td', {}, 'Allocated since start'), h('td', { class: 'num' }, mb(sum(samples, 'perf_host_process_allocated')))),
      h('tr', {}, h('td', {}, 'GC collections (gen0/1/2)'), h('td', { class: 'num' },
        ['gen0', 'gen1', 'gen2'].map(g => sum(samples, 'perf_host_process_gc_collections', l => l.generation === g)).join(' / '))),
      h('tr', {}, h('td', {}, 'Group commits (mean)'), h('td', { class: 'num' }, `${commits} (${commitMs} ms)`)),
      h('tr', {}, h('td', {}, 'Uplinks rejected'), h('td', { class: 'num' }, sum(samples, 'perf_core_uplinks', l => l.status !== 'ok'))),
      h('tr', {}, h('td', {}, 'Edge downlinks queued'), h('td', { class: 'num' }, sum(samples, 'perf_host_edge_queue_depth'))),
      h('tr', {}, h('td', {}, 'Converter errors'), h('td', { class: 'num' }, sum(samples, 'perf_tcp_converter_errors'))));
    previous = { at: now, counters };
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  render(h('h1', {}, 'Server'),
    h('div', { class: 'card' }, h('h2', {}, 'Doors ', updated),
      table(['Door', 'Connections', 'Sessions', 'In msg/s', 'Out msg/s', 'In total', 'Bytes in'], doors, { id: 'server-doors-table' })),
    h('div', { class: 'card' }, h('h2', {}, 'Process and core'), table(['', ''], process, { id: 'server-process-table' })),
    h('p', { class: 'muted' }, 'From ', h('a', { href: '/metrics' }, '/metrics'), ', polled every 2 s.'));
  await poll();
  const timer = setInterval(() => poll().catch(() => {}), 2000);
  onLeave(() => clearInterval(timer));
}

document.getElementById('logout').addEventListener('click', () => { session.token = null; location.hash = '#/login'; });
window.addEventListener('hashchange', route);
route();
