// Line charts of the last 15 minutes (uPlot): one chart per signal, one series per target or quantity.
import uPlot from './vendor/uPlot.esm.js';
import { h } from './dom.js';

const COLORS = ['#2f5fd0', '#e4572e', '#17a398', '#f3a712', '#7b4fd6', '#c62828', '#4c956c', '#a23b72', '#3d5a80', '#8d6e63'];

// A chart in a card: set(labels, data) redraws it, rebuilding only when its series change.
export class Chart {
  // range: [min, max] for a fraction or a flag; else the scale fits the data (from 0).
  constructor(parent, title, fmt = (v) => v, range = null) {
    this.range = range;
    this.el = h('div', { class: 'card chart' }, h('h3', {}, title));
    this.box = h('div');
    this.el.append(this.box);
    parent.append(this.el);
    this.fmt = fmt;
    this.plot = null;
    this.key = '';
    new ResizeObserver(() => this.plot && this.plot.setSize(this.size())).observe(this.box);
  }
  size() { return { width: Math.max(this.box.clientWidth, 200), height: 170 }; }
  // labels: series names; data: [xs (unix seconds), ys...] with null for unknown.
  set(labels, data) {
    const key = labels.join('\u0000');
    if (!this.plot || key !== this.key) {
      if (this.plot) this.plot.destroy();
      this.key = key;
      const fmt = this.fmt;
      this.plot = new uPlot({
        ...this.size(),
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        scales: { x: { time: true }, y: this.range ? { range: () => this.range } : { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.1 : 1] } },
        axes: [{ stroke: '#889' }, { stroke: '#889', size: 64, values: (u, vals) => vals.map((v) => fmt(v)) }],
        series: [{}, ...labels.map((l, i) => ({ label: l, stroke: COLORS[i % COLORS.length], width: 1.5,
          value: (u, v) => (v == null ? '—' : fmt(v)), spanGaps: false }))],
      }, data, this.box);
    } else {
      this.plot.setData(data);
    }
  }
}
