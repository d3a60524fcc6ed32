// infermesh dashboard: polls this agent's API every second, reads its event stream, and sends the changes
// an operator makes with the admin token. Plain ES modules, no framework; everything is served by the agent.
import * as api from './api.js';
import { h, table, dl, num, pct, ms, ago, pill } from './dom.js';
import { meshSvg } from './mesh.js';
import { Chart } from './charts.js';

const $ = (id) => document.getElementById(id);
const st = { status: null, members: [], raft: null, targets: [], hist: null, authError: null, tab: 'mesh' };
const HISTORY_MAX = 900;

// ---- access: the token box, and the prompt on 401/403 ----
function showAuth(err) {
  const box = $('auth-prompt');
  if (!err) { box.hidden = true; st.authError = null; return; }
  if (st.authError === err.message) return;
  st.authError = err.message;
  const had = api.token() ? 'The token in use was refused' : 'This agent needs a token to show its views';
  box.replaceChildren(h('strong', {}, `${had} (${err.status}). `), err.message,
    h('div', {}, 'Type the admin or the read token in the box above and press “use”.'));
  box.hidden = false;
}

function notice(text, ok) {
  const n = $('notice');
  n.className = 'banner ' + (ok ? 'ok' : 'error');
  n.textContent = text;
  n.hidden = false;
  clearTimeout(notice.t);
  notice.t = setTimeout(() => { n.hidden = true; }, ok ? 5000 : 15000);
}

function tokenState() {
  $('token-state').textContent = api.token() ? 'token set for this tab' : 'no token';
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  api.setToken($('token').value.trim());
  $('token').value = '';
  tokenState();
  showAuth(null);
  restartEvents();
  refresh(true);
});
$('token-forget').addEventListener('click', () => { api.setToken(''); tokenState(); restartEvents(); refresh(true); });

// A change from the page: refuses clearly without the admin token, reports the agent's answer.
async function act(what, method, path, body) {
  try {
    const r = await api.write(method, path, body);
    notice(`${what}: done`, true);
    refresh(true);
    return r;
  } catch (e) {
    const hint = e.auth ? ' — nothing was changed; type the admin token above' : e.status === 409 ? ' — nothing was changed' : '';
    notice(`${what}: refused (${e.status || 'network'}): ${e.message}${hint}`, false);
    return null;
  }
}

// ---- tabs ----
function showTab() {
  const t = (location.hash || '#mesh').slice(1);
  st.tab = document.getElementById('view-' + t) ? t : 'mesh';
  for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== 'view-' + st.tab;
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.tab === st.tab);
  refresh(true);
}
window.addEventListener('hashchange', showTab);

// ---- mesh ----
function renderMesh() {
  const s = st.status;
  $('node-name').textContent = s ? '· ' + s.node : '';
  if (s) document.title = `infermesh · ${s.node}`;
  const members = st.members.length ? st.members
    : s ? [{ name: s.node, self: true, state: 'alive', roles: [], zone: '', draining: false, gpus: 0 }] : [];
  $('mesh-svg').replaceChildren(meshSvg(members, st.targets, st.raft, $('mesh-svg').clientWidth < 600));
  if (s) {
    dl($('node-status'), [['node', s.node], ['version', s.version], ['listen', s.listen], ['uptime', ago(s.uptime_s)],
      ['in flight', s.inflight], ['requests', s.requests_total], ['targets', `${s.targets.healthy} healthy of ${s.targets.total}`],
      ['GPUs', s.gpus ? (s.gpus.available ? `${s.gpus.gpus.length}` : 'no telemetry') : '—']]);
  }
  const g = s && s.gpus;
  const gib = (b) => (b == null ? '—' : (b / 2 ** 30).toFixed(1));
  table($('gpus'), [['GPU', (x) => `${x.index} ${x.name || ''}`], ['health', (x) => pill(x.health || '—',
    x.health === 'ok' ? 'ok' : x.health ? 'bad' : 'muted')],
  ['°C', (x) => x.temperature_c, 'num'], ['use', (x) => (x.utilization_gpu_pct == null ? '—' : x.utilization_gpu_pct + '%'), 'num'],
  ['memory GiB', (x) => `${gib(x.memory_used_bytes)} / ${gib(x.memory_total_bytes)}`, 'num']],
  (g && g.available && g.gpus) || [], g && !g.available ? 'no GPU telemetry' : 'none');
  const r = st.raft;
  dl($('raft-status'), !r ? [['state', 'no control plane']] : r.server
    ? [['state', r.state], ['term', r.term], ['leader', r.leader ? r.leader.address : 'none'], ['voters', r.voters],
      ['applied', r.applied_index]]
    : [['state', r.state || 'replica'], ['config index', r.fsm_index]]);
  table($('members'), [
    ['node', (m) => m.name + (m.self ? ' (this)' : '')],
    ['state', (m) => pill(m.state === 'alive' && m.draining ? 'draining' : m.state)],
    ['roles', (m) => (m.roles || []).join(', ')],
    ['zone', (m) => m.zone || '—'],
    ['address', (m) => m.api || m.addr],
    ['models', (m) => (m.models || []).map((x) => x.name).join(', ')],
    ['GPUs', (m) => `${m.gpus || 0}${m.gpus_degraded ? ` (${m.gpus_degraded} degraded)` : ''}`, 'num'],
    ['load age', (m) => (m.self ? '—' : m.load_age_ms == null ? '—' : ago(m.load_age_ms / 1000)), 'num'],
    ['', (m) => m.state === 'alive' || m.draining
      ? h('button', { class: 'secondary', 'data-action': m.draining ? 'undrain' : 'drain', 'data-node': m.name,
        onclick: () => act(`${m.draining ? 'undrain' : 'drain'} ${m.name}`, 'POST',
          `/v1/cluster/nodes/${api.seg(m.name)}/${m.draining ? 'undrain' : 'drain'}`) }, m.draining ? 'undrain' : 'drain')
      : ''],
  ], [...members].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
  for (const tr of $('members').querySelectorAll('tbody tr')) {
    const b = tr.querySelector('button');
    if (b) { tr.dataset.node = b.dataset.node; tr.dataset.draining = b.dataset.action === 'undrain'; }
  }
}

// ---- targets ----
function health(t) { return t.gone ? 'gone' : !t.healthy ? 'unhealthy' : t.draining ? 'draining' : 'healthy'; }
let targetCharts = null;

function renderTargets() {
  const rows = st.targets;
  table($('targets'), [
    ['target', (t) => t.name], ['node', (t) => t.node || st.status?.node || '—'], ['kind', (t) => t.kind],
    ['state', (t) => pill(health(t))],
    ['waiting', (t) => num(t.waiting, 0), 'num'], ['running', (t) => num(t.running, 0), 'num'],
    ['KV use', (t) => pct(t.kv_usage), 'num'], ['prefix hits', (t) => pct(t.prefix_hit_rate), 'num'],
    ['TTFT p50', (t) => ms(t.ttft_p50_ms), 'num'], ['TTFT p95', (t) => ms(t.ttft_p95_ms), 'num'],
    ['tokens/s', (t) => num(t.gen_tps, 0), 'num'], ['in flight', (t) => t.inflight, 'num'],
    ['age', (t) => (t.age_ms == null ? '—' : ago(t.age_ms / 1000)), 'num'],
    ['process', (t) => (t.process ? pill(t.process.state) : '—')],
    ['restarts', (t) => (t.process ? t.process.restarts : '—'), 'num'],
    ['last error', (t) => t.last_error || ''],
  ], rows, 'no targets');
  $('targets').querySelectorAll('tbody tr').forEach((tr, i) => {
    if (!rows[i]) return;
    tr.dataset.target = rows[i].name;
    tr.dataset.health = health(rows[i]);
  });
  if (!st.hist) return;
  if (!targetCharts) {
    const g = $('target-charts');
    const count = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
    const secs = (v) => (v < 1 ? (v * 1000).toFixed(0) + ' ms' : v.toFixed(2) + ' s');
    targetCharts = {
      healthy: new Chart(g, 'healthy', (v) => (v === 1 ? 'up' : v === 0 ? 'down' : ''), [0, 1.05]),
      waiting: new Chart(g, 'waiting requests', count),
      running: new Chart(g, 'running requests', count),
      kv: new Chart(g, 'KV-cache use', (v) => (v * 100).toFixed(0) + '%', [0, 1]),
      ttft_p95: new Chart(g, 'TTFT p95 (runtime)', secs),
      gen_tps: new Chart(g, 'generated tokens/s', count),
      prefix_hit: new Chart(g, 'prefix-cache hits', (v) => (v * 100).toFixed(0) + '%', [0, 1]),
    };
  }
  const ts = st.hist.targets.filter((t) => !t.gone);
  const xs = xAxis(Math.max(0, ...ts.map((t) => t.n)));
  for (const [col, chart] of Object.entries(targetCharts))
    chart.set(ts.map((t) => t.name), [xs, ...ts.map((t) => pad(t[col], xs.length))]);
}

// ---- history: fetched whole once, then only the newer samples ----
function xAxis(n) {
  const end = st.hist.end_ms / 1000;
  return Array.from({ length: n }, (_, i) => end - (n - 1 - i));
}
const pad = (a, n) => (a.length >= n ? a.slice(a.length - n) : [...Array(n - a.length).fill(null), ...a]);

function mergeSeries(into, add) {
  for (const [k, v] of Object.entries(add)) {
    if (!Array.isArray(v)) continue;
    into[k] = (into[k] || []).concat(v).slice(-HISTORY_MAX);
  }
  into.n = Math.min(into.n + add.n, HISTORY_MAX);
}

async function loadHistory() {
  const old = st.hist;
  const since = old ? old.end_ms : 0;
  const d = await api.get('/v1/cluster/history' + (since ? `?since=${since}` : ''));
  const key = (t) => `${t.id}:${t.node}/${t.name}`;
  if (!old || d.targets.some((t) => !old.targets.find((o) => key(o) === key(t)))
      || d.targets.length !== old.targets.length) {
    st.hist = since ? null : d; // a target appeared or went: take everything again next time
    if (since) return loadHistory();
    return;
  }
  mergeSeries(old.node, d.node);
  for (const t of d.targets) mergeSeries(old.targets.find((o) => key(o) === key(t)), t);
  old.end_ms = d.end_ms;
}

// ---- traffic ----
let trafficCharts = null;
function renderTraffic() {
  if (!st.hist) return;
  const nd = st.hist.node, last = (a) => (a && a.length ? a[a.length - 1] : null);
  const sum = (a) => (a || []).reduce((x, y) => x + (y || 0), 0);
  const sec = (v) => (v == null ? '—' : ms(v * 1000));
  dl($('traffic-now'), [['requests/s', num(last(nd.reqs_s), 0)], ['5xx/s', num(last(nd.errors_s), 0)],
    ['4xx/s', num(last(nd.rejected_s), 0)], ['in flight', num(last(nd.inflight), 0)],
    ['TTFT p50 / p95 (5 s)', `${sec(last(nd.ttft_p50))} / ${sec(last(nd.ttft_p95))}`],
    ['latency p50 / p95 (5 s)', `${sec(last(nd.lat_p50))} / ${sec(last(nd.lat_p95))}`],
    ['requests (15 min)', sum(nd.reqs_s).toFixed(0)]].map(([k, v]) => [k, v]));
  if (!trafficCharts) {
    const g = $('traffic-charts'), s = (v) => (v < 1 ? (v * 1000).toFixed(0) + ' ms' : v.toFixed(2) + ' s');
    const count = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
    trafficCharts = { reqs: new Chart(g, 'requests/s', count), ttft: new Chart(g, 'time to first token', s),
      lat: new Chart(g, 'latency', s), routed: new Chart(g, 'requests/s by target', count) };
  }
  const xs = xAxis(nd.n), p = (a) => pad(a || [], xs.length);
  trafficCharts.reqs.set(['requests', '5xx', '4xx'], [xs, p(nd.reqs_s), p(nd.errors_s), p(nd.rejected_s)]);
  trafficCharts.ttft.set(['p50', 'p95'], [xs, p(nd.ttft_p50), p(nd.ttft_p95)]);
  trafficCharts.lat.set(['p50', 'p95'], [xs, p(nd.lat_p50), p(nd.lat_p95)]);
  const ts = st.hist.targets;
  trafficCharts.routed.set(ts.map((t) => t.name), [xs, ...ts.map((t) => p(t.routed_s))]);
  const total = ts.reduce((x, t) => x + sum(t.routed_s), 0);
  table($('routed'), [['target', (t) => t.name], ['node', (t) => t.node || st.status?.node || '—'],
    ['requests', (t) => sum(t.routed_s).toFixed(0), 'num'],
    ['share', (t) => (total ? ((100 * sum(t.routed_s)) / total).toFixed(1) + '%' : '—'), 'num']], ts, 'no targets');
}

// ---- events ----
let evAbort = null;
const evRows = [];
function restartEvents() {
  if (evAbort) evAbort.abort();
  evAbort = new AbortController();
  evRows.length = 0;
  renderEvents();
  api.events('/v1/cluster/events', evAbort.signal, (kind, data) => {
    let d = {};
    try { d = JSON.parse(data); } catch { d = { data }; }
    evRows.unshift({ kind, d });
    if (evRows.length > 500) evRows.pop();
    if (kind === 'target' || kind === 'member' || kind === 'drain') refresh(false);
    renderEvents();
  }, (state) => {
    if (state instanceof api.ApiError) { $('events-state').textContent = `(refused: ${state.status})`; if (state.auth) showAuth(state); }
    else $('events-state').textContent = `(${state})`;
  });
}
function renderEvents() {
  const t = (d) => (d.ts ? new Date(d.ts).toLocaleTimeString() : '');
  const what = (d) => Object.entries(d).filter(([k, v]) => k !== 'ts' && v !== '').map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join('  ');
  table($('events'), [['time', (e) => t(e.d)], ['kind', (e) => pill(e.kind, 'muted')], ['what', (e) => what(e.d)]],
    evRows, 'no events yet (membership, health and configuration changes appear here)');
}

// ---- models: where each is served, pins and policies ----
async function renderModels() {
  const none = Promise.resolve(new api.ApiError(409, 'no control plane'));
  const [pins, pols] = st.standalone ? [await none, await none]
    : await Promise.all([api.get('/v1/cluster/pins').catch((e) => e), api.get('/v1/cluster/policies').catch((e) => e)]);
  const nocp = (x) => x instanceof api.ApiError && x.status === 409;
  for (const x of [pins, pols]) if (x instanceof api.ApiError && x.auth) throw x;
  const pinOf = (m) => (pins.items || []).find((p) => p.model === m);
  const polOf = (m) => (pols.items || []).find((p) => p.model === m);
  const models = new Map();
  for (const t of st.targets) for (const m of t.models || []) {
    if (!models.has(m)) models.set(m, []);
    models.get(m).push(t);
  }
  for (const p of [...(pins.items || []), ...(pols.items || [])]) if (!models.has(p.model)) models.set(p.model, []);
  const names = [...models.keys()].sort();
  table($('models'), [
    ['model', (m) => m],
    ['served on', (m) => [...new Set(models.get(m).map((t) => `${t.node || st.status?.node}${t.healthy ? '' : ' (unhealthy)'}`))].join(', ') || 'nowhere'],
    ['targets healthy', (m) => `${models.get(m).filter((t) => t.healthy).length} / ${models.get(m).length}`, 'num'],
    ['pinned to', (m) => (nocp(pins) ? 'no control plane' : pinOf(m) ? [...pinOf(m).nodes, ...pinOf(m).zones.map((z) => 'zone ' + z)].join(', ') : 'anywhere')],
    ['policy', (m) => {
      if (nocp(pols)) return 'no control plane';
      const p = polOf(m);
      if (!p) return 'default';
      return [p.strategy && `strategy ${p.strategy}`, p.slo_class && `SLO ${p.slo_class}`, p.max_queue && `max queue ${p.max_queue}`,
        p.hedge != null && `hedge ${p.hedge}`, p.fallbacks && p.fallbacks.length && `fallback ${p.fallbacks.join(' → ')}`].filter(Boolean).join(', ') || 'set (defaults)';
    }],
  ], names, 'no models');
  for (const sel of document.querySelectorAll('.model-select')) {
    const cur = sel.value;
    if (sel.options.length !== names.length || names.some((n, i) => sel.options[i].value !== n)) {
      sel.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
      if (names.includes(cur)) sel.value = cur;
    }
  }
}

function formValues(form) { return Object.fromEntries(new FormData(form).entries()); }
$('pin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const v = formValues(e.target);
  const nodes = v.nodes.split(/[\s,]+/).filter(Boolean);
  act(`pin ${v.model}`, 'PUT', `/v1/cluster/pins/${api.seg(v.model)}`, { nodes });
});
$('unpin').addEventListener('click', () => {
  const m = $('pin-form').elements.model.value;
  if (m) act(`unpin ${m}`, 'DELETE', `/v1/cluster/pins/${api.seg(m)}`);
});
$('policy-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const v = formValues(e.target), body = {};
  if (v.strategy) body.strategy = v.strategy;
  if (v.slo_class) body.slo_class = v.slo_class;
  if (v.max_queue) body.max_queue = Number(v.max_queue);
  if (v.hedge) body.hedge = v.hedge === 'true';
  act(`policy for ${v.model}`, 'PUT', `/v1/cluster/policies/${api.seg(v.model)}`, body);
});
$('policy-delete').addEventListener('click', () => {
  const m = $('policy-form').elements.model.value;
  if (m) act(`delete the policy of ${m}`, 'DELETE', `/v1/cluster/policies/${api.seg(m)}`);
});

// ---- tenants and providers ----
async function renderTenants() {
  const [tn, usage, contrib, payouts] = await Promise.all(['/v1/cluster/tenants', '/v1/ledger/usage?by=tenant',
    '/v1/ledger/contributions', '/v1/ledger/payouts'].map((p) => (st.standalone && p.startsWith('/v1/cluster/')
    ? Promise.resolve(new api.ApiError(409, 'no control plane')) : api.get(p).catch((e) => e))));
  for (const x of [tn, usage, contrib, payouts]) if (x instanceof api.ApiError && x.auth) throw x;
  const err = (x) => (x instanceof api.ApiError ? (x.status === 409 ? 'no control plane' : x.message) : null);
  table($('tenants'), [['tenant', (t) => t.name], ['state', (t) => pill(t.revoked ? 'revoked' : 'active', t.revoked ? 'bad' : 'ok')],
    ['models', (t) => (t.models && t.models.length ? t.models.join(', ') : 'all')],
    ['', (t) => (t.revoked ? '' : h('button', { class: 'secondary', 'data-action': 'revoke', 'data-tenant': t.name,
      onclick: () => { if (confirm(`Revoke ${t.name}? Its key stops working on every node.`)) act(`revoke ${t.name}`, 'PUT', `/v1/cluster/tenants/${api.seg(t.name)}`, { revoked: true }); } }, 'revoke'))]],
  tn.items || [], err(tn) || 'no tenants: while there are none, the API needs no key on loopback');
  const money = (v) => (v == null ? '—' : typeof v === 'number' ? v.toFixed(6) : String(v));
  const groups = usage.groups || [];
  table($('usage'), [['tenant', (g) => g.key || '(none)'], ['requests', (g) => g.requests, 'num'],
    ['prompt tokens', (g) => g.prompt_tokens, 'num'], ['cached', (g) => g.cached_tokens, 'num'],
    ['completion tokens', (g) => g.completion_tokens, 'num'], ['cost', (g) => `${money(g.cost)} ${g.currency || ''}`, 'num']],
  groups, err(usage) || 'no usage recorded yet');
  table($('contributions'), [['provider', (p) => p.provider || '(none)'], ['requests', (p) => p.records, 'num'],
    ['earned', (p) => money(p.earned), 'num'], ['paid', (p) => money(p.paid), 'num'], ['unpaid', (p) => money(p.unpaid), 'num'],
    ['currency', (p) => p.currency]],
  contrib.providers || [], err(contrib) || 'no contributions yet');
  table($('payouts'), [['batch', (b) => b.batch], ['created', (b) => new Date(b.created_ms).toLocaleString()],
    ['providers', (b) => b.providers, 'num'], ['records', (b) => b.records, 'num']],
  payouts.batches || [], err(payouts) || 'no payouts yet');
}
$('tenant-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const name = e.target.elements.name.value.trim();
  const r = await act(`add tenant ${name}`, 'POST', '/v1/cluster/tenants', { name });
  const box = $('tenant-key');
  if (r && r.api_key) {
    box.replaceChildren(`Tenant ${name} created. Its API key, shown only now — store it: `, h('code', {}, r.api_key));
    box.hidden = false;
    e.target.reset();
  }
});

// ---- polling ----
let busy = false, lastHistory = 0, lastSlow = 0;
async function refresh(force) {
  if (busy) { refresh.again = true; return; }
  busy = true;
  try {
    const [status, members, targets] = await Promise.all([api.get('/v1/cluster/status'),
      api.get('/v1/cluster/members').catch((e) => (e.auth ? Promise.reject(e) : { members: [] })),
      api.get('/v1/cluster/targets')]);
    // A standalone agent (no cluster key) has no control plane: its endpoints would only answer 409.
    st.standalone = !!members.standalone;
    const raft = st.standalone ? null : await api.get('/v1/cluster/raft').catch((e) => (e.auth ? Promise.reject(e) : null));
    Object.assign(st, { status, members: members.members || [], raft, targets: targets.targets || [] });
    const now = Date.now();
    if (force || now - lastHistory > 1900) { lastHistory = now; await loadHistory(); }
    showAuth(null);
    renderMesh();
    renderTargets();
    if (st.tab === 'traffic') renderTraffic();
    if ((st.tab === 'models' || st.tab === 'tenants') && (force || now - lastSlow > 1900)) {
      lastSlow = now;
      await (st.tab === 'models' ? renderModels() : renderTenants());
    }
    $('footer').textContent = `updated ${new Date().toLocaleTimeString()} · data from this agent only`;
  } catch (e) {
    if (e instanceof api.ApiError && e.auth) showAuth(e);
    else $('footer').textContent = `cannot reach the agent: ${e.message}`;
  } finally {
    busy = false;
    if (refresh.again) { refresh.again = false; refresh(false); }
  }
}

tokenState();
showTab();
restartEvents();
setInterval(() => { if (!document.hidden) refresh(false); }, 1000);
