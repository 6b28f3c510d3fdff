// Overview: the process, readiness, the head, totals and live charts of
// rates and lags, polled every 2 s.
import { get } from './api.js';
import { h, replace, facts, table, time, badge, notice } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const POINTS = 60;

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

/** A small line chart of one or more series; returns {el, update(seriesValues)}. */
function chart(title, series, testid) {
  const width = 320;
  const height = 120;
  const pad = 4;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', class: 'chart', 'data-testid': testid });
  const titleEl = svg('title');
  titleEl.textContent = title;
  root.append(titleEl);
  root.append(svg('line', { x1: 0, y1: height - pad, x2: width, y2: height - pad, class: 'axis' }));
  const lines = series.map((s, i) => {
    const line = svg('polyline', { class: `series series-${i}`, fill: 'none', points: '' });
    root.append(line);
    return line;
  });
  const data = series.map(() => []);
  const maxLabel = h('span', { class: 'chart-max' });
  const legend = h('ul', { class: 'legend' },
    series.map((s, i) => h('li', { class: `legend-${i}` }, h('span', { class: `swatch swatch-${i}`, 'aria-hidden': 'true' }), ` ${s}: `,
      h('strong', { 'data-testid': `${testid}-${i}` }, '—'))));
  const figure = h('figure', { class: 'chart-box' }, h('figcaption', {}, title, ' ', maxLabel), root, legend);
  function update(values) {
    values.forEach((v, i) => {
      data[i].push(v);
      if (data[i].length > POINTS) data[i].shift();
      legend.children[i].querySelector('strong').textContent = Number.isFinite(v) ? (Math.round(v * 10) / 10).toString() : '—';
    });
    const max = Math.max(1, ...data.flat().filter(Number.isFinite));
    maxLabel.textContent = `(scale 0 to ${Math.round(max * 10) / 10})`;
    data.forEach((points, i) => {
      const step = width / (POINTS - 1);
      const offset = POINTS - points.length;
      const coords = points.map((v, j) => {
        const x = (offset + j) * step;
        const y = height - pad - ((Number.isFinite(v) ? v : 0) / max) * (height - 2 * pad);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      lines[i].setAttribute('points', coords.join(' '));
    });
  }
  return { el: figure, update };
}

/** The overview's projection rows name the lag `lag_events` (the spec said `lag`). */
function lagOf(p) {
  return Number(p.lag_events ?? p.lag ?? 0);
}

function projectionState(p) {
  if (p.state) return p.state;
  if (p.rebuilding) return badge('info', 'rebuilding');
  return lagOf(p) > 0 ? badge('info', `catching up, ${lagOf(p)} behind`) : badge('ok', 'live, caught up');
}

export async function render(ctx) {
  const { root } = ctx;
  const status = h('div', { 'data-testid': 'overview-status' });
  const rates = chart('Events per second', ['appended/s', 'delivered/s'], 'chart-rates');
  const lags = chart('Lag (events behind)', ['relay lag', 'largest projection lag'], 'chart-lags');
  const detail = h('div', {});
  root.append(
    h('h1', {}, 'Overview'),
    h('p', { class: 'hint' }, 'Refreshed every 2 seconds.'),
    status,
    h('section', { 'aria-labelledby': 'charts-h' }, h('h2', { id: 'charts-h' }, 'Live charts'),
      h('div', { class: 'charts' }, rates.el, lags.el)),
    detail,
  );
  let previous = null;
  let timer = null;
  let stopped = false;
  ctx.onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });

  async function tick() {
    try {
      const o = await get('/v1/console/overview');
      const now = performance.now();
      if (previous) {
        const secs = Math.max(0.001, (now - previous.at) / 1000);
        rates.update([
          (o.totals.events_appended - previous.o.totals.events_appended) / secs,
          (o.totals.events_delivered - previous.o.totals.events_delivered) / secs,
        ]);
      } else {
        rates.update([NaN, NaN]);
      }
      const projectionLag = Math.max(0, ...(o.projections || []).map(lagOf));
      lags.update([o.relay ? o.relay.lag : NaN, projectionLag]);
      previous = { at: now, o };
      draw(o);
    } catch (e) {
      if (e.status === 401) return;
      replace(status, notice('error', `The overview could not be read: ${e.message}`));
    }
    if (!stopped) timer = setTimeout(tick, 2000);
  }

  function draw(o) {
    const ready = o.ready || {};
    replace(status,
      ready.ready
        ? badge('ok', 'Ready', 'ready-state')
        : badge('error', 'Not ready', 'ready-state'),
      (ready.problems || []).length
        ? h('ul', { class: 'problems' }, ready.problems.map((p) => h('li', {}, h('strong', {}, p.component), `: ${p.reason}`)))
        : null);
    replace(detail,
      h('section', { 'aria-labelledby': 'process-h' }, h('h2', { id: 'process-h' }, 'Process'),
        facts([
          o.process && o.process.id ? ['Process', o.process.id] : null,
          ['Version', o.process && o.process.version],
          ['Started', time(o.process && o.process.started_at)],
          ['Store', o.store],
          ['Broker', o.broker],
          ['Head position', h('span', { 'data-testid': 'head-position' }, String(o.head ? o.head.position : '—'))],
          o.head && o.head.recorded_at ? ['Head recorded', time(o.head.recorded_at)] : null,
          ['Events appended', String(o.totals ? o.totals.events_appended : '—')],
          ['Events delivered', String(o.totals ? o.totals.events_delivered : '—')],
          ['Subscribers', String(o.subscribers ?? '—')],
          ['Relay', o.relay ? `checkpoint ${o.relay.checkpoint}, lag ${o.relay.lag}${o.relay.active_here === false ? ' (runs in another process)' : ''}` : 'not running'],
          o.totals && o.totals.http_requests != null ? ['HTTP requests', String(o.totals.http_requests)] : null,
        ], 'process-facts')),
      table({
        caption: 'Projections',
        testid: 'overview-projections',
        columns: [
          { label: 'Name', render: (p) => h('a', { href: `#/projections/${encodeURIComponent(p.name)}` }, p.name) },
          { label: 'State', render: projectionState },
          { label: 'Position', render: (p) => String(p.position) },
          { label: 'Lag', render: (p) => `${lagOf(p)} events${p.lag_seconds != null ? `, ${Number(p.lag_seconds).toFixed(1)} s` : ''}` },
          { label: 'Parked', render: (p) => (p.parked ? badge('warn', `${p.parked} parked`) : 'none') },
        ],
        rows: o.projections || [],
        empty: 'This Herald runs no projections.',
      }),
      table({
        caption: 'Recent warnings and errors',
        testid: 'recent-errors',
        columns: [
          { label: 'At', render: (e) => time(e.at) },
          { label: 'Level', render: (e) => badge(e.level === 'ERROR' ? 'error' : 'warn', e.level) },
          { label: 'Target', render: (e) => e.target },
          { label: 'Message', render: (e) => e.message },
        ],
        rows: o.recent_errors || [],
        empty: 'No warnings or errors lately.',
      }));
  }
  await tick();
}
