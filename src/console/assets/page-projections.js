// Projections: status and lag of each read model, its parked events with
// their errors and a retry button, and a blue-green rebuild with progress.
import { get, post } from './api.js';
import { h, replace, table, facts, time, notice, badge, button, eventLink, link, announce } from './dom.js';

function stateOf(p) {
  if (p.rebuild) return badge('info', `rebuilding (generation ${p.rebuild.generation})`);
  if (p.parked) return badge('warn', `live, ${p.parked} parked`);
  if (p.lag_events > 0) return badge('info', `catching up, ${p.lag_events} behind`);
  return badge('ok', 'live, caught up');
}

export async function render(ctx) {
  const name = ctx.parts[1];
  return name ? renderOne(ctx, name) : renderList(ctx);
}

async function renderList(ctx) {
  const { root } = ctx;
  root.append(h('h1', {}, 'Projections'));
  const body = h('div', {});
  root.append(body);
  let timer = null;
  ctx.onLeave(() => clearTimeout(timer));
  async function load() {
    try {
      const list = await get('/v1/projections');
      replace(body, table({
        caption: 'Read models and how far behind the log each is',
        testid: 'projection-list',
        columns: [
          { label: 'Name', render: (p) => link(`#/projections/${encodeURIComponent(p.name)}`, p.name, { 'data-testid': 'projection-link' }) },
          { label: 'State', render: stateOf },
          { label: 'Position / head', render: (p) => `${p.position} / ${p.head}` },
          { label: 'Lag', render: (p) => `${p.lag_events} events, ${p.lag_seconds.toFixed(1)} s` },
          { label: 'Last progress', render: (p) => time(p.last_progress_at) },
          { label: 'Parked', render: (p) => String(p.parked) },
          { label: 'Version', render: (p) => `v${p.version} (serving v${p.serving_version ?? '—'}, generation ${p.generation ?? '—'})` },
        ],
        rows: list.projections,
      }));
    } catch (e) {
      if (e.status !== 401) replace(body, notice('error', e.message));
      return;
    }
    timer = setTimeout(load, 3000);
  }
  await load();
}

async function renderOne(ctx, name) {
  const { root } = ctx;
  root.append(h('h1', {}, `Projection ${name}`), h('p', {}, link('#/projections', 'All projections')));
  const status = h('div', { 'data-testid': 'projection-status' });
  const message = h('div', { 'data-testid': 'projection-message', 'aria-live': 'polite' });
  const parked = h('div', {});
  const rebuildButton = button('Rebuild', rebuild, { 'data-testid': 'rebuild' });
  const progress = h('div', { 'data-testid': 'rebuild-progress', 'aria-live': 'polite' });
  root.append(status, message,
    h('section', { 'aria-labelledby': 'parked-h' }, h('h2', { id: 'parked-h' }, 'Parked events'), parked),
    h('section', { 'aria-labelledby': 'rebuild-h' }, h('h2', { id: 'rebuild-h' }, 'Rebuild'),
      h('p', {}, 'A rebuild builds a new generation from the start of the log beside the serving one, which keeps answering until the new one has caught up.'),
      rebuildButton, progress));
  let timer = null;
  ctx.onLeave(() => clearTimeout(timer));

  async function retry(position) {
    replace(message, h('p', {}, `Retrying the event at position ${position}…`));
    try {
      await post(`/v1/projections/${encodeURIComponent(name)}/parked/${position}/retry`);
      replace(message, notice('ok', `The event at position ${position} was applied and is no longer parked.`, 'retry-result'));
    } catch (e) {
      if (e.status === 401) return;
      replace(message, notice('error', `Retry failed: ${e.message}`, 'retry-result'));
    }
    await load();
  }

  async function rebuild() {
    rebuildButton.disabled = true;
    try {
      const started = await post(`/v1/projections/${encodeURIComponent(name)}/rebuild`);
      replace(progress, notice('info', `Rebuild of generation ${started.generation} started.`));
    } catch (e) {
      rebuildButton.disabled = false;
      if (e.status !== 401) replace(progress, notice('error', e.message));
      return;
    }
    await load();
  }

  async function load() {
    clearTimeout(timer);
    let detail;
    try {
      detail = await get(`/v1/projections/${encodeURIComponent(name)}`);
    } catch (e) {
      if (e.status !== 401) replace(status, notice('error', e.message));
      return;
    }
    const s = detail.status;
    replace(status, facts([
      ['State', stateOf(s)],
      ['Position', `${s.position} of head ${s.head}`],
      ['Lag', `${s.lag_events} events, ${s.lag_seconds.toFixed(1)} s`],
      ['Last progress', time(s.last_progress_at)],
      ['Version', `v${s.version}, serving v${s.serving_version ?? '—'}, generation ${s.generation ?? '—'}`],
    ], 'projection-facts'));
    replace(parked, table({
      caption: `Events ${name} could not apply (${detail.parked_events.length})`,
      testid: 'parked-table',
      empty: 'No parked event.',
      columns: [
        { label: 'Position', render: (p) => h('span', { 'data-testid': 'parked-position' }, String(p.position)) },
        { label: 'Event', render: (p) => eventLink(p.event_id) },
        { label: 'Error', render: (p) => h('span', { class: 'error-text' }, p.error) },
        { label: 'Parked', render: (p) => time(p.parked_at) },
        { label: 'Action', render: (p) => button(`Retry position ${p.position}`, () => retry(p.position), { 'data-testid': 'retry-parked', 'data-position': p.position }) },
      ],
      rows: detail.parked_events,
    }));
    if (s.rebuild) {
      const r = s.rebuild;
      const done = Math.max(0, s.head - r.lag_events);
      replace(progress, h('p', {}, `Rebuilding generation ${r.generation} (v${r.version}): position ${r.position}, ${r.lag_events} events to go. `),
        h('progress', { max: Math.max(1, s.head), value: done, 'aria-label': 'Rebuild progress' }, `${done} of ${s.head}`));
      rebuildButton.disabled = true;
      timer = setTimeout(load, 1000);
    } else {
      if (rebuildButton.disabled) {
        replace(progress, notice('ok', `Rebuilt: generation ${s.generation} serves.`, 'rebuild-done'));
        announce('Rebuild finished');
      }
      rebuildButton.disabled = false;
      timer = setTimeout(load, 5000);
    }
  }
  await load();
}
