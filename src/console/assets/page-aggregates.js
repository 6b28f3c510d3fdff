// Aggregates: pick one, see its current state, travel through its versions
// with a slider (the state then, admin only) and diff any two versions.
import { get } from './api.js';
import { h, replace, table, field, pre, time, notice, button, link, streamLink, formValues, announce } from './dom.js';
import { renderDiff } from './diff.js';

const DOMAINS = ['tickets', 'edges', 'drafts', 'timers', 'statistics'];

export async function render(ctx) {
  const [, domain, id] = ctx.parts;
  if (domain && id) return renderOne(ctx, domain, id);
  return renderList(ctx);
}

async function renderList(ctx) {
  const { root } = ctx;
  const d = field('Domain', { tag: 'select', name: 'domain', options: DOMAINS, 'data-testid': 'aggregate-domain' });
  const i = field('Id', { name: 'id', required: true, placeholder: 'T-1001', 'data-testid': 'aggregate-id' });
  const form = h('form', { class: 'filters inline', 'data-testid': 'aggregate-form' },
    h('fieldset', {}, h('legend', {}, 'Open an aggregate'), d.wrap, i.wrap),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Open')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(form);
    if (v.id) ctx.go(`#/aggregates/${encodeURIComponent(v.domain)}/${encodeURIComponent(v.id)}`);
  });
  const list = h('div', {});
  root.append(h('h1', {}, 'Aggregates'), form, list);
  const pages = [];
  async function load(cursor) {
    try {
      const page = await get('/v1/views/streams', { sort: 'last_event_at', order: 'desc', limit: 25, cursor, domain: DOMAINS.join(',') });
      replace(list,
        table({
          caption: 'Aggregates, most recently changed first',
          testid: 'aggregate-list',
          columns: [
            { label: 'Aggregate', render: (s) => link(`#/aggregates/${encodeURIComponent(s.domain)}/${encodeURIComponent(s.id)}`, s.stream, { 'data-testid': 'aggregate-link' }) },
            { label: 'Version', render: (s) => String(s.version) },
            { label: 'Latest event', render: (s) => s.last_event_type },
            { label: 'Changed', render: (s) => time(s.last_event_at) },
          ],
          rows: page.items,
        }),
        h('div', { class: 'pager' },
          pages.length ? button('Previous page', () => load(pages.pop())) : null,
          page.next_cursor ? button('Next page', () => {
            pages.push(cursor);
            load(page.next_cursor);
          }, { 'data-testid': 'next-page' }) : null));
    } catch (e) {
      if (e.status !== 401) replace(list, notice('warn', `The list of aggregates is not available: ${e.message}`));
    }
  }
  await load(undefined);
}

/** Every event of the stream (type, version, position), up to 5000. */
async function versions(domain, id) {
  const out = [];
  let from = 1;
  for (;;) {
    const page = await get(`/v1/streams/${encodeURIComponent(domain)}/${encodeURIComponent(id)}/events`, { from_version: from, limit: 1000 });
    out.push(...page.events);
    if (!page.events.length || page.next_version > page.stream_version || out.length >= 5000) return out;
    from = page.next_version;
  }
}

/** A state; a draft's document first, its whole state folded away. */
function stateView(state, isDraft, testid) {
  if (isDraft && state && state.document) {
    return [h('h3', {}, 'Document'), pre(state.document, `${testid}-document`),
      h('details', {}, h('summary', {}, 'The whole state'), pre(state, `${testid}-state`))];
  }
  return pre(state, `${testid}-state`);
}

function stateAt(domain, id, position) {
  return get(`/v1/streams/${encodeURIComponent(domain)}/${encodeURIComponent(id)}`, { at: position, limit: 0 });
}

async function renderOne(ctx, domain, id) {
  const { root } = ctx;
  const stream = `${domain}/${id}`;
  root.append(h('h1', {}, `Aggregate ${stream}`),
    h('p', {}, streamLink(stream), ' · ', link('#/aggregates', 'Other aggregates')));
  const current = await get(`/v1/${encodeURIComponent(domain)}/${encodeURIComponent(id)}`);
  const isDraft = domain === 'drafts';
  root.append(h('section', { 'aria-labelledby': 'now-h' }, h('h2', { id: 'now-h' }, `Current state (version ${current.version})`),
    stateView(current.state, isDraft, 'current')));
  if (!ctx.session.admin) {
    root.append(notice('info', 'Time travel shows past states to admins only.'));
    return;
  }
  const events = await versions(domain, id);
  const max = events.length;
  if (!max) return;
  const byVersion = (v) => events[v - 1];
  const wanted = Number(ctx.query.get('v')) || max;

  // The slider.
  const slider = h('input', { type: 'range', id: 'version-slider', min: 1, max, step: 1, value: Math.min(wanted, max), 'data-testid': 'version-slider' });
  const sliderText = h('output', { for: 'version-slider', 'data-testid': 'version-label' });
  const then = h('div', { 'data-testid': 'state-then', 'aria-live': 'polite' });
  const thenHeading = h('h3', {}, '');
  root.append(h('section', { 'aria-labelledby': 'travel-h', class: 'travel' },
    h('h2', { id: 'travel-h' }, 'Time travel'),
    h('div', { class: 'field' }, h('label', { for: 'version-slider' }, `Version (1 to ${max})`), slider, sliderText),
    h('div', { class: 'pager' },
      button('Earlier', () => step(-1), { 'data-testid': 'version-earlier' }),
      button('Later', () => step(1), { 'data-testid': 'version-later' })),
    thenHeading, then));
  function step(delta) {
    slider.value = String(Math.min(max, Math.max(1, Number(slider.value) + delta)));
    showThen();
  }
  function label(v) {
    const e = byVersion(v);
    return `version ${v} of ${max}: ${e.type} at position ${e.position}`;
  }
  let timer = null;
  let asked = 0;
  async function showThen() {
    const v = Number(slider.value);
    sliderText.textContent = label(v);
    const ticket = ++asked;
    try {
      const at = await stateAt(domain, id, byVersion(v).position);
      if (ticket !== asked) return;
      thenHeading.textContent = `State at version ${at.version} (position ${at.position}, recorded `;
      thenHeading.append(time(at.recorded_at), ')');
      then.dataset.version = String(at.version);
      replace(then, stateView(at.state, isDraft, 'then'));
      announce(`Showing the state at version ${at.version}`);
    } catch (e) {
      if (e.status !== 401 && ticket === asked) replace(then, notice('error', e.message));
    }
  }
  slider.addEventListener('input', () => {
    sliderText.textContent = label(Number(slider.value));
    clearTimeout(timer);
    timer = setTimeout(showThen, 150);
  });
  slider.addEventListener('change', () => {
    clearTimeout(timer);
    showThen();
  });
  ctx.onLeave(() => clearTimeout(timer));
  await showThen();

  // The diff.
  const options = events.map((e) => [String(e.stream_version), `v${e.stream_version} — ${e.type}`]);
  const a = field('From version', { tag: 'select', name: 'a', options, value: '1', 'data-testid': 'diff-from' });
  const b = field('To version', { tag: 'select', name: 'b', options, value: String(max), 'data-testid': 'diff-to' });
  const out = h('div', { 'data-testid': 'diff-result' });
  const form = h('form', { class: 'filters inline', 'data-testid': 'diff-form' },
    h('fieldset', {}, h('legend', {}, 'Compare two versions'), a.wrap, b.wrap),
    h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'diff-submit' }, 'Show the differences')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const va = Number(a.input.value);
    const vb = Number(b.input.value);
    replace(out, h('p', {}, 'Comparing…'));
    try {
      const [sa, sb] = await Promise.all([stateAt(domain, id, byVersion(va).position), stateAt(domain, id, byVersion(vb).position)]);
      replace(out, isDraft && sa.state.document && sb.state.document
        ? [renderDiff(sa.state.document, sb.state.document, `Changes to the document from version ${va} to version ${vb}`),
          h('details', {}, h('summary', {}, 'Changes to the whole state'), renderDiff(sa.state, sb.state, 'Changes to the whole state'))]
        : renderDiff(sa.state, sb.state, `Changes from version ${va} to version ${vb}`));
      out.dataset.compared = `${va}-${vb}`;
    } catch (err) {
      if (err.status !== 401) replace(out, notice('error', err.message));
    }
  });
  root.append(h('section', { 'aria-labelledby': 'diff-h' }, h('h2', { id: 'diff-h' }, 'Differences'), form, out),
    table({
      caption: 'Versions',
      testid: 'version-table',
      columns: [
        { label: 'Version', render: (e) => String(e.stream_version) },
        { label: 'Event', render: (e) => link(`#/events/${encodeURIComponent(e.id)}`, e.type) },
        { label: 'Position', render: (e) => String(e.position) },
        { label: 'Recorded', render: (e) => time(e.recorded_at) },
      ],
      rows: events,
    }));
  form.requestSubmit();
}
