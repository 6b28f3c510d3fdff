// Streams & events: search with filters (paged by next_cursor), a stream's
// events (paged by version), and one event with its chain neighbours,
// causation chain up to the command and correlated events.
import { get, query } from './api.js';
import { h, replace, table, facts, pre, time, eventLink, streamLink, notice, badge, field, button, formValues, link } from './dom.js';

const FILTERS = ['type', 'domain', 'stream', 'from', 'to', 'correlation'];

/** Filters from the page's query (what the hash holds). */
function filtersFrom(q) {
  const f = {};
  for (const name of FILTERS) {
    const all = q.getAll(name).filter(Boolean);
    if (all.length) f[name] = all;
  }
  for (const [k, v] of q.entries()) if (k.startsWith('payload.')) (f[k] = f[k] || []).push(v);
  return f;
}

function split(text) {
  return (text || '').split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

/** The columns every event list shows. */
export function eventColumns() {
  return [
    { label: 'Position', render: (e) => String(e.position) },
    { label: 'Type', render: (e) => eventLink(e.id, e.type) },
    { label: 'Stream', render: (e) => [streamLink(e.stream), ` v${e.stream_version}`] },
    { label: 'Recorded', render: (e) => time(e.recorded_at) },
    { label: 'Producer', render: (e) => e.producer },
  ];
}

export async function renderSearch(ctx) {
  const { root } = ctx;
  const filters = filtersFrom(ctx.query);
  const payloadLines = Object.entries(filters)
    .filter(([k]) => k.startsWith('payload.'))
    .flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`))
    .join('\n');
  const val = (name) => (filters[name] || []).join(', ');
  const fields = {
    type: field('Event types', { name: 'type', value: val('type'), placeholder: 'tickets.*' }, 'Patterns with *, separated by commas.'),
    domain: field('Domains', { name: 'domain', value: val('domain'), placeholder: 'tickets' }),
    stream: field('Streams', { name: 'stream', value: val('stream'), placeholder: 'tickets/T-1001' }),
    from: field('Recorded from', { name: 'from', value: val('from'), placeholder: '2026-12-01T00:00:00Z' }, 'RFC 3339, inclusive.'),
    to: field('Recorded before', { name: 'to', value: val('to'), placeholder: '2026-12-31T00:00:00Z' }, 'RFC 3339, exclusive.'),
    correlation: field('Correlation id', { name: 'correlation', value: val('correlation') }),
    payload: field('Payload filters', { tag: 'textarea', name: 'payload', rows: 2, value: payloadLines, placeholder: 'payload.edge=E-17', 'data-testid': 'search-payload' },
      'One per line: payload.<path>=<value> (the value is JSON when it parses).'),
  };
  fields.type.input.dataset.testid = 'search-type';
  const form = h('form', { class: 'filters', 'data-testid': 'search-form' },
    h('fieldset', {}, h('legend', {}, 'Filters'), Object.values(fields).map((f) => f.wrap)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'search-submit' }, 'Search'),
      ' ', link('#/events', 'Clear filters', { class: 'button-link' })));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(form);
    const params = {};
    for (const name of FILTERS) {
      const parts = ['from', 'to', 'correlation'].includes(name) ? [v[name]].filter(Boolean) : split(v[name]);
      if (parts.length) params[name] = parts;
    }
    for (const line of (v.payload || '').split('\n').map((l) => l.trim()).filter(Boolean)) {
      const eq = line.indexOf('=');
      if (eq < 1) continue;
      let path = line.slice(0, eq).trim();
      if (!path.startsWith('payload.')) path = `payload.${path}`;
      (params[path] = params[path] || []).push(line.slice(eq + 1).trim());
    }
    const hash = `#/events${query(params)}`;
    if (location.hash === hash) ctx.go(`${hash}&`); else ctx.go(hash);
  });

  const results = h('div', { 'data-testid': 'search-results', 'aria-live': 'polite' });
  const exportLinks = h('p', { class: 'export' }, 'Export these filters: ',
    h('a', { href: `/v1/events/export${query({ ...filters, format: 'jsonl' })}`, download: '', 'data-testid': 'export-jsonl' }, 'JSON lines'), ' · ',
    h('a', { href: `/v1/events/export${query({ ...filters, format: 'csv' })}`, download: '', 'data-testid': 'export-csv' }, 'CSV'));
  root.append(h('h1', {}, 'Streams & events'), form, exportLinks, results);

  const pages = [];
  async function load(cursor) {
    replace(results, h('p', {}, 'Searching…'));
    try {
      // A page of the embedded store reads a bounded stretch of the log and
      // may come back short with a cursor: follow it for up to a second to
      // fill the page, then let the reader go on.
      const started = Date.now();
      const answer = await get('/v1/events/search', { ...filters, cursor, limit: 50 });
      while (answer.next_cursor && answer.events.length < 50 && Date.now() - started < 1000) {
        const more = await get('/v1/events/search', { ...filters, cursor: answer.next_cursor, limit: 50 - answer.events.length });
        answer.events.push(...more.events);
        answer.next_cursor = more.next_cursor;
      }
      const pageNo = pages.length + 1;
      const empty = answer.next_cursor
        ? 'No event matches these filters in the part of the log searched so far: go on with Next page.'
        : 'No event matches these filters.';
      replace(results,
        table({ caption: `Matching events, page ${pageNo}`, testid: 'search-table', columns: eventColumns(), rows: answer.events, empty }),
        h('div', { class: 'pager' },
          pages.length ? button('Previous page', () => load(pages.pop()), { 'data-testid': 'prev-page' }) : null,
          answer.next_cursor ? button('Next page', () => {
            pages.push(cursor);
            load(answer.next_cursor);
          }, { 'data-testid': 'next-page' }) : h('span', { class: 'hint' }, 'No more events.')));
    } catch (e) {
      if (e.status !== 401) replace(results, notice('error', e.message, 'search-error'));
    }
  }
  await load(undefined);
}

export async function renderStream(ctx) {
  const { root } = ctx;
  const [, domain, id] = ctx.parts;
  if (!domain || !id) {
    root.append(h('h1', {}, 'Stream'), notice('error', 'Name a stream: #/streams/<domain>/<id>.'));
    return;
  }
  const stream = `${domain}/${id}`;
  const body = h('div', { 'data-testid': 'stream-events' });
  root.append(h('h1', {}, `Stream ${stream}`),
    h('p', {}, link(`#/aggregates/${encodeURIComponent(domain)}/${encodeURIComponent(id)}`, 'Time travel this aggregate'), ' · ',
      link(`#/events${query({ stream })}`, 'Search its events')),
    body);
  async function load(fromVersion) {
    try {
      const page = await get(`/v1/streams/${encodeURIComponent(domain)}/${encodeURIComponent(id)}/events`, { from_version: fromVersion, limit: 50 });
      replace(body,
        h('p', {}, `Stream version ${page.stream_version}.`),
        table({ caption: `Events of ${stream} from version ${fromVersion}`, testid: 'stream-table', columns: eventColumns(), rows: page.events }),
        h('div', { class: 'pager' },
          fromVersion > 1 ? button('First page', () => load(1)) : null,
          page.next_version <= page.stream_version ? button('Next page', () => load(page.next_version), { 'data-testid': 'next-page' }) : h('span', { class: 'hint' }, 'No more events.')));
    } catch (e) {
      if (e.status !== 401) replace(body, notice('error', e.message));
    }
  }
  await load(1);
}

function neighbour(label, n) {
  if (!n) return [label, 'none'];
  return [label, h('span', {}, `position ${n.position}, hash `, h('code', {}, n.hash))];
}

export async function renderEvent(ctx) {
  const { root } = ctx;
  const id = ctx.parts[1];
  root.append(h('h1', {}, 'Event'));
  const answer = await get(`/v1/events/${encodeURIComponent(id)}`);
  const e = answer.event;
  const [domain, ...rest] = (e.stream || '').split('/');
  const causedBy = answer.caused_by || [];
  const root0 = causedBy.length ? causedBy[causedBy.length - 1] : e;
  replace(root.querySelector('h1'), `Event ${e.type}`);
  const chain = h('ol', { class: 'chain', 'data-testid': 'causation-chain' },
    h('li', {}, h('strong', {}, 'This event: '), `${e.type} on ${e.stream} by ${e.producer}`),
    causedBy.map((c, i) => {
      const isRoot = i === causedBy.length - 1 && c.causation_id === c.id;
      return h('li', { 'data-testid': isRoot ? 'causation-root' : 'causation-step' },
        h('strong', {}, isRoot ? 'Root (what the command or publish made first): ' : 'caused by '),
        eventLink(c.id, c.type), ` on ${c.stream}, produced by `,
        h('code', { 'data-testid': isRoot ? 'root-producer' : undefined }, c.producer));
    }));
  const isOwnRoot = e.causation_id === e.id;
  root.append(
    h('p', {}, 'In ', streamLink(e.stream), ' · ',
      link(`#/aggregates/${encodeURIComponent(domain)}/${encodeURIComponent(rest.join('/'))}`, 'time travel its aggregate')),
    h('section', { 'aria-labelledby': 'meta-h' }, h('h2', { id: 'meta-h' }, 'Metadata'),
      facts([
        ['Id', h('code', { 'data-testid': 'event-id' }, e.id)],
        ['Type', h('span', { 'data-testid': 'event-type' }, `${e.type} (schema v${e.version})`)],
        ['Stream', [streamLink(e.stream), ` version ${e.stream_version}`]],
        ['Position', h('span', { 'data-testid': 'event-position' }, String(e.position))],
        ['Tenant', e.tenant],
        ['Occurred', time(e.occurred_at)],
        ['Recorded', time(e.recorded_at)],
        ['Producer', h('code', { 'data-testid': 'event-producer' }, e.producer)],
        ['Correlation id', h('code', {}, e.correlation_id)],
        ['Causation id', isOwnRoot ? [h('code', {}, e.causation_id), ' (itself: a root event)'] : eventLink(e.causation_id, e.causation_id)],
      ], 'event-meta')),
    h('section', { 'aria-labelledby': 'payload-h' }, h('h2', { id: 'payload-h' }, 'Payload'), pre(e.payload, 'event-payload')),
    h('section', { 'aria-labelledby': 'hash-h' }, h('h2', { id: 'hash-h' }, 'Hash chain'),
      facts([
        ['Hash', h('code', { 'data-testid': 'event-hash' }, e.hash)],
        neighbour('Previous in the log', answer.previous),
        neighbour('Next in the log', answer.next),
      ], 'event-chain')),
    h('section', { 'aria-labelledby': 'cause-h' }, h('h2', { id: 'cause-h' }, 'Causation, up to the command'),
      isOwnRoot && !causedBy.length
        ? h('p', { 'data-testid': 'causation-self' }, 'This event is a root: the first event its command or publish made, produced by ',
          h('code', {}, e.producer), '.')
        : chain,
      !isOwnRoot && root0 ? h('p', {}, 'The command that made it: ', badge('info', root0.producer, 'command-producer')) : null),
  );
  const related = h('div', {});
  root.append(related);
  // The chain one command or automation caused shares its correlation id;
  // the events this one caused directly are those among them whose cause it is.
  try {
    const answer = await get('/v1/events/search', { correlation: e.correlation_id, limit: 100 });
    const caused = answer.events.filter((c) => c.causation_id === e.id && c.id !== e.id);
    replace(related,
      table({ caption: 'Correlated events (what the same command or automation caused)', testid: 'correlated-table', columns: eventColumns(), rows: answer.events }),
      answer.next_cursor ? h('p', {}, link(`#/events${query({ correlation: e.correlation_id })}`, 'All correlated events')) : null,
      table({ caption: 'Events this event caused directly', testid: 'caused-table', columns: eventColumns(), rows: caused, empty: 'None.' }));
  } catch (err) {
    if (err.status === 401) throw err;
    replace(related, notice('warn', `Correlated events are not available: ${err.message}`));
  }
}
