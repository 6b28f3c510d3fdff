// Schemas: event types and their versions, one version's schema, and a
// compatibility check of a pasted schema (registers nothing).
import { get, post } from './api.js';
import { h, replace, table, facts, pre, notice, badge, field, link, formValues } from './dom.js';

export async function render(ctx) {
  const [, type, version] = ctx.parts;
  if (type) return renderVersion(ctx, type, version || 'latest');
  return renderList(ctx);
}

function checkForm(ctx, prefill = {}) {
  const t = field('Event type', { name: 'type', required: true, value: prefill.type || '', placeholder: 'orders.order_placed', 'data-testid': 'check-type' });
  const v = field('Version (optional)', { name: 'version', inputmode: 'numeric', value: prefill.version || '', 'data-testid': 'check-version' }, 'When given it must be the next version.');
  const c = field('Compatibility rule (optional)', { tag: 'select', name: 'compatibility', options: [['', 'the type\'s own rule'], 'backward', 'forward', 'full', 'none'] });
  const s = field('JSON Schema', { tag: 'textarea', name: 'schema', rows: 10, required: true, spellcheck: 'false', value: prefill.schema || '', 'data-testid': 'check-schema' });
  const out = h('div', { 'data-testid': 'check-result', 'aria-live': 'polite' });
  const form = h('form', { class: 'filters', 'data-testid': 'check-form' },
    h('fieldset', {}, h('legend', {}, 'Would this version be accepted?'), t.wrap, v.wrap, c.wrap, s.wrap),
    h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'check-submit' }, 'Check compatibility')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const values = formValues(form);
    let schema;
    try {
      schema = JSON.parse(values.schema);
    } catch (err) {
      replace(out, notice('error', `The schema is not JSON: ${err.message}`, 'check-verdict'));
      return;
    }
    const body = { type: values.type, schema };
    if (values.version) body.version = Number(values.version);
    if (values.compatibility) body.compatibility = values.compatibility;
    replace(out, h('p', {}, 'Checking…'));
    try {
      const answer = await post('/v1/schemas/check', body);
      replace(out, notice('ok', answer.new_version
        ? `it would be registered as ${answer.type} version ${answer.version}${answer.reads_previous ? ', reading the previous version unchanged' : ''}.`
        : `it is already version ${answer.version} of ${answer.type}, as sent.`, 'check-verdict', 'Accepted'));
    } catch (err) {
      if (err.status === 401) return;
      const list = err.problem.incompatibilities || err.problem.violations || [];
      replace(out, notice('error', `${err.problem.title || `HTTP ${err.status}`}. ${err.message}`, 'check-verdict', 'Refused'),
        list.length ? table({
          caption: 'What breaks the rule',
          testid: 'incompatibilities',
          columns: [
            { label: 'Path', render: (i) => h('code', {}, i.path || i.pointer || '') },
            { label: 'Reason', render: (i) => i.reason || i.message || JSON.stringify(i) },
          ],
          rows: list,
        }) : null);
    }
  });
  return h('section', { 'aria-labelledby': 'check-h' }, h('h2', { id: 'check-h' }, 'Compatibility check'),
    h('p', {}, 'Paste a schema to learn whether a new version would be accepted under its type\'s compatibility rule. Nothing is registered.'),
    form, out);
}

async function renderList(ctx) {
  const { root } = ctx;
  const domainFilter = ctx.query.get('domain') || '';
  const d = field('Domain', { name: 'domain', value: domainFilter, placeholder: 'tickets' });
  const filter = h('form', { class: 'filters inline' }, h('fieldset', {}, h('legend', {}, 'Filter'), d.wrap),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  filter.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = formValues(filter);
    ctx.go(v.domain ? `#/schemas?domain=${encodeURIComponent(v.domain)}` : '#/schemas');
  });
  root.append(h('h1', {}, 'Schemas'), checkForm(ctx, { type: ctx.query.get('check') || '' }), filter);
  const list = await get('/v1/schemas', domainFilter ? { domain: domainFilter } : undefined);
  root.append(table({
    caption: `Event types (${list.types.length})`,
    testid: 'schema-list',
    columns: [
      { label: 'Type', render: (t) => h('code', {}, t.type) },
      { label: 'Origin', render: (t) => t.origin },
      { label: 'Rule', render: (t) => t.compatibility || '—' },
      {
        label: 'Versions',
        render: (t) => t.versions.map((v, i) => [i ? ', ' : '',
          link(`#/schemas/${encodeURIComponent(t.type)}/${v.version}`, `v${v.version}`),
          v.deprecated ? ' (deprecated)' : '', v.upcaster ? ' (upcast)' : '']),
      },
    ],
    rows: list.types,
  }));
}

async function renderVersion(ctx, type, version) {
  const { root } = ctx;
  root.append(h('h1', {}, `Schema ${type} v${version}`), h('p', {}, link('#/schemas', 'All event types')));
  const doc = await get(`/v1/schemas/${encodeURIComponent(type)}/${encodeURIComponent(version)}`);
  root.querySelector('h1').textContent = `Schema ${doc.type} v${doc.version}`;
  root.append(facts([
    ['Origin', doc.origin],
    ['Latest version', String(doc.latest)],
    ['Compatibility rule', doc.compatibility || '—'],
    ['State', doc.deprecated ? badge('warn', `deprecated${doc.deprecation_reason ? `: ${doc.deprecation_reason}` : ''}`) : badge('ok', 'current')],
    ['Reads the previous version', doc.reads_previous ? 'yes' : 'no'],
  ], 'schema-facts'),
  h('h2', {}, 'JSON Schema'), pre(doc.schema, 'schema-json'),
  doc.upcaster ? [h('h2', {}, 'Upcaster'), pre(doc.upcaster)] : null,
  checkForm(ctx, { type: doc.type, version: String(doc.latest + 1), schema: JSON.stringify(doc.schema, null, 2) }));
}
