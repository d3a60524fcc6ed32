// Helpers for the dashboard's browser tests: free ports, an `infermesh dev` mesh or a lone agent in their own
// process group (killed whatever happens), Chromium through playwright-core, and a page that records errors.
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import dgram from 'node:dgram';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.INFERMESH_BIN || path.resolve(here, '../../build-asan/infermesh');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const HOST = '127.0.0.1';

const children = new Set();
function killAll() {
  for (const c of children) {
    try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  children.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { killAll(); process.exit(130); });

function bindable(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, HOST, () => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => { u.close(); srv.close(() => resolve(false)); });
      u.bind(port, HOST, () => u.close(() => srv.close(() => resolve(true))));
    });
  });
}

// The first of n consecutive ports, TCP and UDP, free a moment ago (outside the ephemeral range).
const handedOut = new Set();
export async function freePorts(n) {
  for (let i = 0; i < 500; i++) {
    const base = 20000 + Math.floor(Math.random() * 12000);
    const block = Array.from({ length: n }, (_, k) => base + k);
    if (block.some((p) => handedOut.has(p))) continue;
    let ok = true;
    for (const p of block) if (!(ok = await bindable(p))) break;
    if (!ok) continue;
    block.forEach((p) => handedOut.add(p));
    return base;
  }
  throw new Error(`no ${n} consecutive free ports`);
}

// Starts a process in its own group; out collects stdout+stderr. stop() asks it to end (SIGTERM: dev drains its
// agents and stops its engines), then kills whatever is left of the group.
export function start(args, env = {}) {
  const c = spawn(BIN, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.add(c);
  const p = { proc: c, out: '', exited: false };
  c.stdout.on('data', (d) => { p.out += d; });
  c.stderr.on('data', (d) => { p.out += d; });
  c.on('exit', () => { p.exited = true; children.delete(c); });
  p.stop = async () => {
    if (!p.exited) {
      try { process.kill(c.pid, 'SIGTERM'); } catch { /* gone */ }
      for (let i = 0; i < 150 && !p.exited; i++) await sleep(100);
    }
    try { process.kill(-c.pid, 'SIGKILL'); } catch { /* nothing left */ }
  };
  return p;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { const v = await cond(); if (v) return v; } catch (e) { last = e; }
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
}

// `infermesh dev --nodes 3` on free ports: {url(i), token, stop}.
export async function devMesh(nodes = 3) {
  const port = await freePorts(nodes), gossip = await freePorts(nodes);
  const p = start(['dev', '--nodes', String(nodes), '--port', String(port), '--gossip-port', String(gossip)]);
  await waitFor(() => p.exited ? Promise.reject(new Error('dev exited:\n' + p.out)) : /mesh ready/.test(p.out), 60000, 'the dev mesh');
  const token = /INFERMESH_ADMIN_TOKEN=(\S+)/.exec(p.out)[1];
  return { ...p, port, token, url: (i = 0) => `http://${HOST}:${port + i}` };
}

export async function api(base, path, init = {}) {
  const r = await fetch(base + path, init);
  return { status: r.status, headers: r.headers, body: await r.json().catch(() => null) };
}

// The pid listening on a TCP port of 127.0.0.1 (ss from iproute2).
export function pidOnPort(port) {
  const out = execFileSync('ss', ['-Htlnp', `sport = :${port}`], { encoding: 'utf8' });
  const m = /pid=(\d+)/.exec(out);
  if (!m) throw new Error(`nothing listens on ${port}: ${out}`);
  return Number(m[1]);
}

export function artifactsDir() {
  const d = process.env.INFERMESH_ARTIFACTS || mkdtempSync(path.join(os.tmpdir(), 'infermesh-ui-'));
  console.log(`# screenshots in ${d}`);
  return d;
}

export async function browser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
}

// A page that records console errors, page errors, failed requests and HTTP errors; allow(text) filters the
// ones a test provokes on purpose.
export async function recordingPage(b, viewport = { width: 1280, height: 800 }) {
  const ctx = await b.newContext({ viewport });
  const page = await ctx.newPage();
  const problems = [];
  const on = {
    console: (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); },
    pageerror: (e) => problems.push(`page error: ${e.message}`),
    // The page aborts its event stream itself to reconnect with a new token: not a failure.
    requestfailed: (r) => {
      const why = r.failure()?.errorText;
      if (!(why === 'net::ERR_ABORTED' && new URL(r.url()).pathname === '/v1/cluster/events')) problems.push(`request failed: ${r.url()} ${why}`);
    },
    response: (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`); },
  };
  for (const [k, f] of Object.entries(on)) page.on(k, f);
  const hosts = new Set();
  page.on('request', (r) => hosts.add(new URL(r.url()).host));
  return {
    page, problems, hosts,
    // Stops recording (closing the page aborts its event stream, which is no error), then closes.
    async close() { for (const [k, f] of Object.entries(on)) page.off(k, f); await ctx.close(); },
  };
}

// One agent that is also the only Raft server (a control plane of one), with one simulated engine and fake GPUs:
// {url, token, port, stop}. Its data dirs live in a temporary folder.
export async function controlAgent() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'infermesh-ui-cp-'));
  execFileSync(BIN, ['init', '--data-dir', path.join(dir, 'key')], { stdio: 'ignore', timeout: 20000 });
  mkdirSync(path.join(dir, 's1'), { mode: 0o700 });
  for (const f of ['cluster.key', 'cluster.id']) {
    copyFileSync(path.join(dir, 'key', f), path.join(dir, 's1', f));
    chmodSync(path.join(dir, 's1', f), 0o600);
  }
  const [ep, port, gossip, raft] = [await freePorts(1), await freePorts(1), await freePorts(1), await freePorts(1)];
  const engine = start(['sim-engine', '--host', HOST, '--port', String(ep), '--speed', '0']);
  const token = 'ui-cp-admin';
  const agent = start(['agent', '--listen', `${HOST}:${port}`, '--name', 's1', '--data-dir', path.join(dir, 's1'),
    '--gossip', `${HOST}:${gossip}`, '--admin-token', token, '--server', '--raft', `${HOST}:${raft}`,
    '--bootstrap-expect', '1', '--target', `http://${HOST}:${ep}`, '--scrape-interval-ms', '200'],
  // GPU telemetry from the unit tests' fake NVML (two A100s, one partitioned), when the build has it
  { INFERMESH_NVML_LIB: path.join(path.dirname(BIN), 'fake_nvml', 'libnvidia-ml.so.1') });
  const url = `http://${HOST}:${port}`;
  const auth = { headers: { Authorization: `Bearer ${token}` } };
  await waitFor(async () => {
    if (agent.exited) throw new Error('agent exited:\n' + agent.out);
    const r = await fetch(url + '/v1/cluster/raft', auth);
    return r.ok && (await r.json()).leader;
  }, 30000, 'the one-server control plane to elect itself');
  return { url, port, token, out: () => agent.out + engine.out,
    stop: async () => { await agent.stop(); await engine.stop(); rmSync(dir, { recursive: true, force: true }); } };
}
