// Small DOM helpers: elements built with textContent only (no HTML from data), and number formats.
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k in el && k !== 'list') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of kids.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

// table(el, columns, rows): columns are [title, (row) => cell, 'num'?]; a cell is text or a Node.
export function table(el, columns, rows, empty = 'none') {
  const head = h('tr', {}, columns.map(([t, , k]) => h('th', { class: k || '' }, t)));
  const body = rows.length
    ? rows.map((r) => h('tr', {}, columns.map(([, f, k]) => h('td', { class: k || '' }, f(r) ?? '—'))))
    : [h('tr', {}, h('td', { colSpan: columns.length, class: 'muted' }, empty))];
  el.replaceChildren(h('thead', {}, head), h('tbody', {}, body));
}

export function dl(el, pairs) {
  el.replaceChildren(...pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export const num = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? '—' : Number(v).toFixed(d));
export const pct = (v) => (v === null || v === undefined || v < 0 ? '—' : (v * 100).toFixed(1) + '%');
export const ms = (v) => (v === null || v === undefined ? '—' : v < 1000 ? v.toFixed(0) + ' ms' : (v / 1000).toFixed(2) + ' s');
export function ago(s) {
  if (s === null || s === undefined) return '—';
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  if (s < 3600) return (s / 60).toFixed(0) + ' min';
  return (s / 3600).toFixed(1) + ' h';
}
export const pill = (text, cls) => h('span', { class: 'pill ' + (cls || 'state-' + text) }, text);
