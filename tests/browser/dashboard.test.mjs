// The dashboard in real Chromium against `infermesh dev --nodes 3`: what it shows, how fast it follows a
// failure, its actions, its refusals, and that no page logs an error. Run: node --test tests/browser/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { devMesh, controlAgent, start, freePorts, waitFor, sleep, api, pidOnPort, artifactsDir, browser, recordingPage, HOST }
  from './mesh.mjs';

const MODEL = 'meta-llama/Llama-3.1-8B-Instruct';
let mesh, b, art;
const guard = setTimeout(() => { console.error('browser tests: over 5 minutes, giving up'); process.exit(1); }, 300000);
guard.unref();

before(async () => {
  art = artifactsDir();
  [mesh, b] = await Promise.all([devMesh(3), browser()]);
});

after(async () => {
  await b?.close();
  await mesh?.stop();
});

const shot = (page, name, full = false) => page.screenshot({ path: path.join(art, name + '.png'), fullPage: full });

async function chat(base, i) {
  const r = await fetch(base + '/v1/chat/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: MODEL, max_tokens: 4,
      messages: [{ role: 'user', content: `request ${i} ${Math.random().toString(36).repeat(8)}` }] }),
  });
  await r.arrayBuffer();
  assert.equal(r.status, 200);
  return r.headers.get('x-infermesh-node');
}

async function useToken(page, tok) {
  await page.fill('#token', tok);
  await page.click('#token-form button[type=submit]');
}

function assertClean(rec, port = mesh.port) {
  assert.deepEqual(rec.problems, [], 'the page logged errors or had failed requests');
  assert.deepEqual([...rec.hosts], [`${HOST}:${port}`], 'the page asked another host');
}

test('the mesh page shows the 3 nodes and their targets', { timeout: 60000 }, async () => {
  const rec = await recordingPage(b);
  const { page } = rec;
  await page.goto(mesh.url(0) + '/');
  assert.equal(new URL(page.url()).pathname, '/ui/');
  await page.waitForFunction(() => document.querySelectorAll('#mesh-svg g.node[data-state=alive]').length === 3);
  const names = await page.$$eval('#mesh-svg g.node', (gs) => gs.map((g) => g.dataset.node).sort());
  assert.deepEqual(names, ['node-0', 'node-1', 'node-2']);
  // one target dot per node, healthy
  await page.waitForFunction(() => document.querySelectorAll('#mesh-svg circle.tgt-ok').length === 3);
  await page.waitForFunction(() => document.querySelectorAll('#members tbody tr[data-node]').length === 3);
  await shot(page, 'mesh');
  // What the first load transferred (the page, its styles and modules; gzip-encoded), API calls aside.
  const bytes = await page.evaluate(() => [...performance.getEntriesByType('navigation'),
    ...performance.getEntriesByType('resource')].filter((e) => new URL(e.name).pathname.startsWith('/ui/'))
    .reduce((n, e) => n + e.transferSize, 0));
  console.log(`# first load: ${bytes} bytes transferred`);
  assert.ok(bytes > 10000 && bytes < 300 * 1024, `first load ${bytes} bytes`);
  await page.click('a[data-tab=targets]');
  await page.waitForFunction(() => document.querySelectorAll('#targets tr[data-health=healthy]').length === 3);
  const targets = await page.$$eval('#targets tr[data-target]', (rs) => rs.map((r) => r.dataset.target).sort());
  assert.deepEqual(targets, ['engine-0', 'node-1/engine-1', 'node-2/engine-2']);
  await page.waitForSelector('#target-charts .uplot');
  await shot(page, 'targets', true);
  assertClean(rec);
  await rec.close();
});

test('a killed engine shows unhealthy within 3 s, and healthy after dev restarts it', { timeout: 60000 }, async () => {
  const rec = await recordingPage(b);
  const { page } = rec;
  await page.goto(mesh.url(0) + '/ui/#targets');
  const row = '#targets tr[data-target="engine-0"]';
  await page.waitForSelector(`${row}[data-health=healthy]`);
  const t = (await api(mesh.url(0), '/v1/cluster/targets')).body.targets.find((x) => x.name === 'engine-0');
  const port = Number(new URL(t.url).port);
  const t0 = Date.now();
  process.kill(pidOnPort(port), 'SIGKILL');
  await page.waitForSelector(`${row}[data-health=unhealthy]`, { timeout: 3000 });
  const took = Date.now() - t0;
  assert.ok(took <= 3000, `unhealthy shown after ${took} ms`);
  await page.click('a[data-tab=mesh]');
  await page.waitForSelector('#mesh-svg circle.tgt-bad[data-target="engine-0"]', { timeout: 3000 });
  await shot(page, 'engine-down');
  // the event stream (read with fetch, carrying the token) shows the change
  await page.click('a[data-tab=events]');
  await page.waitForFunction(() => [...document.querySelectorAll('#events td')].some((td) =>
    td.textContent.includes('name=engine-0') && td.textContent.includes('healthy=false')), null, { timeout: 5000 });
  await page.click('a[data-tab=targets]');
  await page.waitForSelector(`${row}[data-health=healthy]`, { timeout: 20000 });
  assertClean(rec);
  await rec.close();
});

test('draining a node from the page sends requests elsewhere; undraining brings them back', { timeout: 90000 }, async () => {
  const rec = await recordingPage(b);
  const { page } = rec;
  await page.goto(mesh.url(0) + '/ui/');
  await useToken(page, mesh.token);
  const stored = await page.evaluate(() => sessionStorage.getItem('infermesh.token'));
  assert.equal(stored, mesh.token);
  assert.ok(!page.url().includes(mesh.token), 'the token must never be in a URL');
  await page.click('button[data-action=drain][data-node=node-1]');
  await page.waitForSelector('#notice.ok');
  await page.waitForSelector('#members tr[data-node=node-1][data-draining=true]', { timeout: 5000 });
  await page.waitForSelector('#mesh-svg g.node[data-node=node-1][data-state=draining]');
  await shot(page, 'drained');
  await waitFor(async () => (await api(mesh.url(0), '/v1/cluster/targets')).body.targets
    .find((t) => t.node === 'node-1').draining, 3000, "node-0's router to know node-1 drains");
  const during = [];
  for (let i = 0; i < 30; i++) during.push(await chat(mesh.url(0), i));
  assert.ok(!during.includes('node-1'), `a drained node served: ${during}`);
  assert.ok(during.length === 30 && during.every((n) => n === 'node-0' || n === 'node-2'), String(during));

  await page.click('button[data-action=undrain][data-node=node-1]');
  await page.waitForSelector('#members tr[data-node=node-1][data-draining=false]', { timeout: 5000 });
  const back = await waitFor(async () => {
    for (let i = 0; i < 30; i++) if ((await chat(mesh.url(0), 100 + i)) === 'node-1') return true;
    return false;
  }, 20000, 'node-1 to serve again');
  assert.ok(back);
  // the traffic view has something to show now
  await page.click('a[data-tab=traffic]');
  await page.waitForFunction(() => document.querySelectorAll('#routed tbody tr').length === 3);
  await sleep(1500);
  await shot(page, 'traffic', true);
  assertClean(rec);
  await rec.close();
});

test('a wrong token shows a clear error and changes nothing', { timeout: 60000 }, async () => {
  const rec = await recordingPage(b);
  const { page } = rec;
  await page.goto(mesh.url(0) + '/ui/');
  await useToken(page, 'not-the-admin-token');
  await page.click('button[data-action=drain][data-node=node-2]');
  await page.waitForSelector('#notice.error');
  const text = await page.textContent('#notice');
  assert.match(text, /drain node-2: refused \(401\)/);
  assert.match(text, /nothing was changed/);
  assert.match(text, /admin token/i);
  await shot(page, 'wrong-token');
  await sleep(1500);
  const m = (await api(mesh.url(0), '/v1/cluster/members')).body.members.find((x) => x.name === 'node-2');
  assert.equal(m.draining, false);
  assert.equal(await page.getAttribute('#members tr[data-node=node-2]', 'data-draining'), 'false');
  // the only problems: the refused POST (the browser logs it)
  assert.ok(rec.problems.length > 0 && rec.problems.every((p) => /401/.test(p) && /drain|Failed to load/.test(p)), rec.problems.join('\n'));
  await rec.close();
});

// n clients sending chat requests back to back (long enough to queue and run) until stop().
function load(base, n) {
  let on = true;
  const loops = Array.from({ length: n }, async (_, k) => {
    for (let i = 0; on; i++) {
      const r = await fetch(base + '/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: MODEL, max_tokens: 120, messages: [{ role: 'user', content: `load ${k} ${i} `.repeat(40) }] }) })
        .catch(() => null);
      await r?.arrayBuffer();
    }
  });
  return async () => { on = false; await Promise.all(loops); };
}

test('every view loads without a console error or a failed request, at desktop and phone width', { timeout: 90000 }, async () => {
  const stopLoad = load(mesh.url(0), 8); // so that the charts and tables have something to show
  await sleep(4000);
  for (const [vp, tag] of [[{ width: 1280, height: 800 }, ''], [{ width: 390, height: 844 }, '-phone']]) {
    const rec = await recordingPage(b, vp);
    const { page } = rec;
    await page.goto(mesh.url(0) + '/ui/');
    await useToken(page, mesh.token);
    for (const tab of ['mesh', 'targets', 'traffic', 'events', 'models', 'tenants']) {
      await page.click(`a[data-tab=${tab}]`);
      await page.waitForSelector(`#view-${tab}:not([hidden])`);
      await sleep(1200);
      if (tab === 'models') {
        const served = await page.textContent('#models tbody');
        assert.match(served, /Llama-3\.1-8B-Instruct/);
      }
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${tab}${tag}: the page is ${overflow} px wider than the window`);
      await shot(page, tab + tag, tab !== 'mesh');
    }
    assertClean(rec);
    await rec.close();
  }
  await stopLoad();
});

test('with tenants, the page asks for a token and shows the views with the read token', { timeout: 60000 }, async () => {
  const port = await freePorts(1);
  const ag = start(['agent', '--listen', `${HOST}:${port}`, '--tenant', 'name=team,key=sk-ui-browser',
    '--admin-token', 'ui-admin', '--read-token', 'ui-read', '--ledger', 'false']);
  try {
    await waitFor(async () => (await fetch(`http://${HOST}:${port}/healthz`)).ok, 15000, 'the agent');
    const rec = await recordingPage(b);
    const { page } = rec;
    await page.goto(`http://${HOST}:${port}/ui/`);
    await page.waitForSelector('#auth-prompt:not([hidden])');
    assert.match(await page.textContent('#auth-prompt'), /needs a token.*\(401\)/s);
    await useToken(page, 'sk-ui-browser'); // a tenant's key is the wrong kind
    await page.waitForFunction(() => /refused \(403\)/.test(document.querySelector('#auth-prompt').textContent));
    await shot(page, 'token-needed');
    await useToken(page, 'ui-read');
    await page.waitForSelector('#auth-prompt', { state: 'hidden' });
    await page.waitForFunction(() => document.querySelectorAll('#mesh-svg g.node').length === 1);
    assert.ok(rec.problems.every((p) => /40[13]/.test(p)), rec.problems.join('\n'));
    await rec.close();
  } finally {
    await ag.stop();
  }
});

test('with a control plane: pin, policy, tenant add (its key shown once) and revoke from the page', { timeout: 90000 }, async () => {
  const cp = await controlAgent();
  try {
    const rec = await recordingPage(b);
    const { page } = rec;
    page.on('dialog', (d) => d.accept()); // the revoke asks for confirmation
    await page.goto(cp.url + '/ui/');
    await useToken(page, cp.token);
    await page.waitForFunction(() => /leader/.test(document.querySelector('#raft-status').textContent));
    await page.waitForSelector('#mesh-svg circle.leader');
    await page.waitForFunction(() => /A100/.test(document.querySelector('#gpus tbody').textContent));
    await shot(page, 'mesh-control-plane');
    await page.click('a[data-tab=models]');
    await page.waitForFunction((m) => [...document.querySelectorAll('#pin-form select option')].some((o) => o.value === m), MODEL);
    await page.fill('#pin-form input[name=nodes]', 's1');
    await page.click('#pin-form button[type=submit]');
    const pinnedTo = (want) => page.waitForFunction((w) =>
      document.querySelector('#models tbody tr td:nth-child(4)')?.textContent === w, want);
    await pinnedTo('s1');
    const pins = await api(cp.url, '/v1/cluster/pins', { headers: { Authorization: `Bearer ${cp.token}` } });
    assert.deepEqual(pins.body.items.map((p) => [p.model, p.nodes]), [[MODEL, ['s1']]]);
    await page.selectOption('#policy-form select[name=strategy]', 'least-request');
    await page.selectOption('#policy-form select[name=slo_class]', 'latency');
    await page.click('#policy-form button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#models tbody').textContent.includes('strategy least-request'));
    await shot(page, 'models-control-plane', true);
    await page.click('#unpin');
    await pinnedTo('anywhere');

    await page.click('a[data-tab=tenants]');
    await page.fill('#tenant-form input[name=name]', 'team-ui');
    await page.click('#tenant-form button[type=submit]');
    await page.waitForSelector('#tenant-key:not([hidden]) code');
    const key = (await page.textContent('#tenant-key code')).trim();
    assert.ok(key.length >= 20, key);
    await page.waitForSelector('#tenants tr button[data-tenant=team-ui]');
    await shot(page, 'tenant-added', true);
    const chat = (tok) => fetch(cp.url + '/v1/chat/completions', { method: 'POST', headers: {
      'Content-Type': 'application/json', Authorization: `Bearer ${tok}` },
    body: JSON.stringify({ model: MODEL, max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] }) });
    await waitFor(async () => (await chat(key)).status === 200, 5000, "the new tenant's key to work");
    await page.click('#tenants button[data-action=revoke][data-tenant=team-ui]');
    await page.waitForFunction(() => document.querySelector('#tenants tbody').textContent.includes('revoked'));
    await waitFor(async () => (await chat(key)).status === 401, 5000, 'the revoked key to stop working');
    assertClean(rec, cp.port);
    await rec.close();
  } finally {
    await cp.stop();
  }
  assert.doesNotMatch(cp.out(), /AddressSanitizer|LeakSanitizer|runtime error:/, cp.out().slice(-3000));
});

test('the agents stop cleanly, without a sanitizer report', { timeout: 30000 }, async () => {
  await mesh.stop(); // SIGTERM: dev drains the agents and stops the engines
  assert.doesNotMatch(mesh.out, /AddressSanitizer|LeakSanitizer|runtime error:/, mesh.out.slice(-3000));
  assert.equal(mesh.proc.exitCode, 0, mesh.out.slice(-2000));
});
