// The mesh as a picture: one circle per member around this node (grouped by zone), its state as colour,
// Raft leader/voter rings, its roles, load age, GPUs, and a dot per target (green healthy, red not).
import { s } from './dom.js';


function memberState(m) {
  if (m.state === 'alive' && m.draining) return 'draining';
  return m.state;
}

// members: /v1/cluster/members' list; targets: /v1/cluster/targets' list; raft: /v1/cluster/raft (or null);
// narrow: a phone-width box (a square picture, so that its text stays readable).
export function meshSvg(members, targets, raft, narrow) {
  const W = narrow ? 420 : 760, H = 420;
  const voters = new Set(), leader = raft && raft.leader ? raft.leader.id : null;
  for (const sv of (raft && raft.servers) || []) if (sv.role === 'voter') voters.add(sv.id);
  const self = members.find((m) => m.self);
  const zones = [...new Set(members.map((m) => m.zone || ''))].sort();
  const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const ordered = zones.flatMap((z) => members.filter((m) => (m.zone || '') === z).sort(byName));
  const n = Math.max(ordered.length, 1);
  const cx = W / 2, cy = H / 2, R = n === 1 ? 0 : Math.min(W, H) / 2 - 80;
  const pos = new Map();
  ordered.forEach((m, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    pos.set(m.name, [cx + R * Math.cos(a) * (narrow ? 1 : 1.5), cy + R * Math.sin(a)]);
  });
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `mesh of ${members.length} nodes` });
  if (self) {
    const [sx, sy] = pos.get(self.name);
    for (const m of ordered) {
      if (m === self) continue;
      const [x, y] = pos.get(m.name);
      svg.append(s('line', { x1: sx, y1: sy, x2: x, y2: y, class: 'edge' }));
    }
  }
  if (zones.length > 1) {
    for (const z of zones) {
      const pts = ordered.filter((m) => (m.zone || '') === z).map((m) => pos.get(m.name));
      const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
      const x0 = Math.min(...xs) - 62, y0 = Math.min(...ys) - 52, x1 = Math.max(...xs) + 62, y1 = Math.max(...ys) + 70;
      svg.append(s('rect', { x: x0, y: y0, width: x1 - x0, height: y1 - y0, rx: 12, class: 'zone' }),
        s('text', { x: x0 + 6, y: y0 + 14, class: 'sub' }, z ? 'zone ' + z : 'no zone'));
    }
  }
  for (const m of ordered) {
    const [x, y] = pos.get(m.name);
    const st = memberState(m);
    const rid = (m.id || '').slice(0, 16);
    const g = s('g', { class: 'node', 'data-node': m.name, 'data-state': st, transform: `translate(${x},${y})` });
    g.append(s('title', {}, `${m.name} (${st})${m.self ? ' — this node' : ''}`));
    g.append(s('circle', { r: 30, class: 'node-bg' }));
    if (rid && rid === leader) g.append(s('circle', { r: 36, class: 'leader' }));
    else if (voters.has(rid)) g.append(s('circle', { r: 36, class: 'voter' }));
    g.append(s('circle', { r: 22, class: 'st-' + st }));
    const mine = targets.filter((t) => (m.self ? !t.remote : t.node === m.name));
    mine.forEach((t, i) => {
      const a = -Math.PI / 2 + (i - (mine.length - 1) / 2) * 0.45;
      g.append(s('circle', { cx: 30 * Math.cos(a), cy: 30 * Math.sin(a), r: 5,
        class: t.healthy ? 'tgt-ok' : 'tgt-bad', 'data-target': t.name },
      s('title', {}, `${t.name}: ${t.healthy ? 'healthy' : 'unhealthy'}`)));
    });
    const roles = (m.roles || []).join(' · ');
    const gpus = m.gpus ? `${m.gpus} GPU${m.gpus > 1 ? 's' : ''}${m.gpus_degraded ? `, ${m.gpus_degraded} degraded` : ''}` : 'no GPU telemetry';
    const age = m.self ? 'this node' : m.load_age_ms == null ? 'no load yet' : `load ${(m.load_age_ms / 1000).toFixed(1)} s ago`;
    g.append(s('text', { y: 5, 'text-anchor': 'middle', class: 'glyph' }, st === 'alive' ? '' : st[0].toUpperCase()),
      s('text', { y: 48, 'text-anchor': 'middle' }, m.name + (m.self ? ' ★' : '')),
      s('text', { y: 62, 'text-anchor': 'middle', class: 'sub' }, `${st} · ${roles}`),
      s('text', { y: 75, 'text-anchor': 'middle', class: 'sub' }, `${gpus} · ${age}`));
    svg.append(g);
  }
  return svg;
}
