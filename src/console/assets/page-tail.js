// Live tail: server-sent events with filters; pause closes the stream and
// remembers the last cursor, resume continues exactly after it.
import { get, query } from './api.js';
import { h, field, button, eventLink, streamLink, time, formValues, announce } from './dom.js';

const KEEP = 200;

export function render(ctx) {
  const { root } = ctx;
  const q = ctx.query;
  const fields = {
    type: field('Event types', { name: 'type', value: q.getAll('type').join(', '), placeholder: 'tickets.*' }, 'Patterns with *, separated by commas.'),
    domain: field('Domains', { name: 'domain', value: q.getAll('domain').join(', ') }),
    stream: field('Streams', { name: 'stream', value: q.getAll('stream').join(', ') }),
    from: field('Start from', { tag: 'select', name: 'from', value: q.get('from') || 'now', options: [['now', 'now (new events only)'], ['start', 'the start of the log']] }),
  };
  const form = h('form', { class: 'filters', 'data-testid': 'tail-form' },
    h('fieldset', {}, h('legend', {}, 'Filters'), Object.values(fields).map((f) => f.wrap)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'tail-start' }, 'Start tail')));
  const stateText = h('span', { 'data-testid': 'tail-state' }, 'Stopped');
  const cursorText = h('code', { 'data-testid': 'tail-cursor' }, '—');
  const countText = h('span', { 'data-testid': 'tail-count' }, '0');
  const pause = button('Pause', () => stop('Paused'), { 'data-testid': 'tail-pause', disabled: true });
  const resume = button('Resume', () => start(lastCursor), { 'data-testid': 'tail-resume', disabled: true });
  const body = h('tbody', { 'data-testid': 'tail-rows' });
  const waiting = h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'Waiting for events…'));
  const tbl = h('div', { class: 'table-wrap' }, h('table', { 'data-testid': 'tail-table' },
    h('caption', {}, `Events as they arrive, newest first (the last ${KEEP})`),
    h('thead', {}, h('tr', {}, ['Position', 'Type', 'Stream', 'Recorded', 'Producer'].map((l) => h('th', { scope: 'col' }, l)))),
    body));
  root.append(h('h1', {}, 'Live tail'), form,
    h('div', { class: 'tail-controls' },
      h('p', { role: 'status' }, 'State: ', h('strong', {}, stateText), ' · received ', countText, ' · cursor ', cursorText),
      pause, ' ', resume),
    tbl);

  let source = null;
  let filtersFrom = 'now';
  let lastCursor = null;
  let count = 0;
  let filters = {};

  function setState(text) {
    stateText.textContent = text;
    announce(`Live tail: ${text}`);
  }

  function stop(word) {
    if (source) source.close();
    source = null;
    setState(lastCursor ? `${word} after cursor ${lastCursor}` : word);
    pause.disabled = true;
    resume.disabled = !lastCursor && word !== 'Paused';
  }

  function start(from) {
    if (source) source.close();
    setState('Connecting…');
    source = new EventSource(`/v1/events/stream${query({ ...filters, from: from || filtersFrom })}`);
    pause.disabled = false;
    resume.disabled = true;
    source.addEventListener('open', () => setState(from ? 'Catching up' : 'Connected'));
    source.addEventListener('live', () => setState('Live'));
    source.addEventListener('event', (m) => {
      let e;
      try {
        e = JSON.parse(m.data);
      } catch {
        return;
      }
      lastCursor = m.lastEventId || lastCursor;
      cursorText.textContent = lastCursor || '—';
      count += 1;
      countText.textContent = String(count);
      waiting.remove();
      body.prepend(h('tr', { 'data-testid': 'tail-row' },
        h('td', { 'data-label': 'Position' }, String(e.position)),
        h('td', { 'data-label': 'Type' }, eventLink(e.id, e.type)),
        h('td', { 'data-label': 'Stream' }, streamLink(e.stream)),
        h('td', { 'data-label': 'Recorded' }, time(e.recorded_at)),
        h('td', { 'data-label': 'Producer' }, e.producer)));
      while (body.children.length > KEEP) body.lastChild.remove();
    });
    source.addEventListener('closing', (m) => {
      lastCursor = m.lastEventId || lastCursor;
      stop('Server closed the stream');
    });
    source.addEventListener('error', () => {
      if (!source) return;
      if (source.readyState === EventSource.CLOSED) {
        stop('Disconnected');
        // A refused stream says nothing to EventSource: ask why (a 401 shows the sign-in form).
        get('/v1/console/session').catch(() => {});
      } else {
        setState('Reconnecting…');
      }
    });
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = formValues(form);
    filters = {};
    for (const name of ['type', 'domain', 'stream']) {
      const parts = (v[name] || '').split(/[\s,]+/).filter(Boolean);
      if (parts.length) filters[name] = parts;
    }
    filtersFrom = v.from || 'now';
    lastCursor = null;
    count = 0;
    countText.textContent = '0';
    cursorText.textContent = '—';
    body.replaceChildren(waiting);
    start(null);
  });
  ctx.onLeave(() => {
    if (source) source.close();
    source = null;
  });
  // Start at once with the filters the page was opened with.
  form.requestSubmit();
}
