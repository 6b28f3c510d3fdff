// Automations: the list, enable/disable, a dry run on history, and webhook
// deliveries (dead letters can be retried).
import { get, post } from './api.js';
import { h, replace, table, facts, pre, time, notice, badge, button, field, link, eventLink, formValues } from './dom.js';

export async function render(ctx) {
  const name = ctx.parts[1];
  return name ? renderOne(ctx, name) : renderList(ctx);
}

function enabledBadge(a) {
  return a.enabled ? badge('ok', 'enabled', 'automation-state') : badge('warn', 'disabled', 'automation-state');
}

function switchButton(a, after, message) {
  const verb = a.enabled ? 'disable' : 'enable';
  return button(a.enabled ? `Disable ${a.name}` : `Enable ${a.name}`, async () => {
    try {
      await post(`/v1/automations/${encodeURIComponent(a.name)}/${verb}`, {});
      replace(message, notice('ok', `${a.name} is now ${verb}d.`, 'automation-message'));
    } catch (e) {
      if (e.status !== 401) replace(message, notice('error', e.message, 'automation-message'));
    }
    await after();
  }, { 'data-testid': `automation-${verb}` });
}

function decisionsTable(report) {
  return [
    h('p', { 'data-testid': 'dry-run-summary' }, `${report.decisions.length} decision(s), ${report.scanned} event(s) scanned`,
      report.pending && report.pending.length ? `, ${report.pending.length} absence(s) still waiting` : '',
      report.next_after ? `; stopped by the limit, continue after position ${report.next_after}` : '', '.'),
    table({
      caption: 'What it would have done, in log order',
      testid: 'dry-run-table',
      empty: 'No event matched the trigger.',
      columns: [
        { label: 'Trigger', render: (d) => [eventLink(d.trigger.event, d.trigger.type), ` on ${d.trigger.stream} at position ${d.trigger.position}`] },
        { label: 'Condition', render: (d) => (d.error ? badge('error', `error: ${d.error}`) : d.condition ? badge('ok', 'true') : badge('info', 'false')) },
        {
          label: 'Actions',
          render: (d) => (d.actions.length
            ? h('ul', {}, d.actions.map((a) => h('li', {}, h('code', {}, a.path), ' ',
              a.error ? `error: ${a.error}` : a.action ? pre(a.action) : 'skipped (its condition is false)')))
            : 'none'),
        },
      ],
      rows: report.decisions,
    }),
  ];
}

async function renderList(ctx) {
  const { root } = ctx;
  const message = h('div', { 'aria-live': 'polite' });
  const list = h('div', {});
  root.append(h('h1', {}, 'Automations'), message, list);
  async function load() {
    try {
      const answer = await get('/v1/automations');
      replace(list, table({
        caption: `Automations of the tenant (${answer.automations.length})`,
        testid: 'automation-list',
        empty: 'No automation yet.',
        columns: [
          { label: 'Name', render: (a) => link(`#/automations/${encodeURIComponent(a.name)}`, a.name, { 'data-testid': 'automation-link' }) },
          { label: 'State', render: (a) => [enabledBadge(a), a.runnable ? '' : [' ', badge('error', `cannot run: ${a.problem || 'unknown'}`)]] },
          { label: 'Version', render: (a) => String(a.version) },
          { label: 'Trigger', render: (a) => a.trigger },
          { label: 'Counters', render: (a) => (a.stats ? `${a.stats.matched} matched, ${a.stats.acted} acted, ${a.stats.failed} failed` : '—') },
          { label: 'Saved', render: (a) => time(a.applied_at) },
          { label: 'Action', render: (a) => switchButton(a, load, message) },
        ],
        rows: answer.automations,
      }));
    } catch (e) {
      if (e.status !== 401) replace(list, notice('error', e.message));
    }
  }
  await load();

  const def = field('Definition (JSON)', { tag: 'textarea', name: 'definition', rows: 8, spellcheck: 'false', 'data-testid': 'dry-run-definition' },
    'An automation document as JSON (the schema is at /v1/automations/schema).');
  const after = field('After position (optional)', { name: 'after', inputmode: 'numeric' });
  const out = h('div', { 'data-testid': 'dry-run-result', 'aria-live': 'polite' });
  const form = h('form', { class: 'filters' },
    h('fieldset', {}, h('legend', {}, 'Dry run a definition on history'), def.wrap, after.wrap),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Dry run')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(form);
    let definition;
    try {
      definition = JSON.parse(v.definition);
    } catch (err) {
      replace(out, notice('error', `The definition is not JSON: ${err.message}`));
      return;
    }
    await dryRun({ definition, after: v.after ? Number(v.after) : undefined, limit: 200 }, out);
  });
  root.append(h('section', { 'aria-labelledby': 'dry-h' }, h('h2', { id: 'dry-h' }, 'Try before switching on'), form, out));
}

async function dryRun(body, out) {
  replace(out, h('p', {}, 'Running on history…'));
  try {
    const report = await post('/v1/automations/dry-run', body);
    replace(out, decisionsTable(report));
  } catch (e) {
    if (e.status === 401) return;
    const problems = e.problem.problems || [];
    replace(out, notice('error', e.message, 'dry-run-error'),
      problems.length ? h('ul', {}, problems.map((p) => h('li', {}, h('code', {}, p.at), `: ${p.message}`))) : null);
  }
}

async function renderOne(ctx, name) {
  const { root } = ctx;
  const message = h('div', { 'aria-live': 'polite' });
  const top = h('div', {});
  const deliveries = h('div', {});
  const dry = h('div', { 'data-testid': 'dry-run-result', 'aria-live': 'polite' });
  root.append(h('h1', {}, `Automation ${name}`), h('p', {}, link('#/automations', 'All automations')), message, top,
    h('section', { 'aria-labelledby': 'dry-h' }, h('h2', { id: 'dry-h' }, 'Dry run on history'),
      button('Dry run the saved version', () => dryRun({ name, limit: 200 }, dry), { 'data-testid': 'dry-run' }), dry),
    h('section', { 'aria-labelledby': 'del-h' }, h('h2', { id: 'del-h' }, 'Webhook deliveries'), deliveries));

  async function load() {
    const a = await get(`/v1/automations/${encodeURIComponent(name)}`, { limit: 20 });
    replace(top,
      facts([
        ['State', [enabledBadge(a), ' ', switchButton(a, load, message)]],
        ['Runnable', a.runnable ? 'yes' : `no: ${a.problem || 'unknown'}`],
        ['Version', String(a.version)],
        ['Trigger', a.trigger],
        ['Saved', [time(a.applied_at), ` at position ${a.applied_position}`]],
        ['Counters', a.stats ? `${a.stats.matched} matched, ${a.stats.acted} acted, ${a.stats.failed} failed, ${a.stats.cancelled} cancelled (as of position ${a.stats.as_of_position})` : '—'],
        ['Last error', a.stats && a.stats.last_error ? [a.stats.last_error, ' ', time(a.stats.last_error_at)] : 'none'],
      ], 'automation-facts'),
      h('h2', {}, 'Definition'), pre(a.definition, 'automation-definition'),
      table({
        caption: 'Latest failures',
        testid: 'automation-failures',
        empty: 'No failure.',
        columns: [
          { label: 'At', render: (f) => time(f.recorded_at) },
          { label: 'Trigger', render: (f) => eventLink(f.trigger_event) },
          { label: 'Action', render: (f) => h('code', {}, f.action) },
          { label: 'Error', render: (f) => f.error },
        ],
        rows: a.failures || [],
      }));
  }

  async function loadDeliveries() {
    try {
      const list = await get(`/v1/automations/${encodeURIComponent(name)}/deliveries`, { limit: 50 });
      replace(deliveries, table({
        caption: 'Latest webhook deliveries and dead letters',
        testid: 'delivery-table',
        empty: 'No webhook delivery.',
        columns: [
          { label: 'Requested', render: (d) => time(d.requested_at) },
          { label: 'URL', render: (d) => h('code', {}, d.url) },
          { label: 'Status', render: (d) => badge(d.status === 'delivered' ? 'ok' : d.status === 'pending' ? 'info' : 'error', d.status.replace('_', ' ')) },
          { label: 'Answer', render: (d) => (d.status_code ? `HTTP ${d.status_code}` : '—') },
          { label: 'Attempts', render: (d) => String(d.attempts ?? '—') },
          { label: 'Latency', render: (d) => (d.latency_ms != null ? `${d.latency_ms} ms` : '—') },
          { label: 'Error', render: (d) => d.error || '—' },
          {
            label: 'Action',
            render: (d) => (d.status === 'dead_lettered' ? button('Retry', async () => {
              try {
                await post(`/v1/automations/${encodeURIComponent(name)}/deliveries/${d.delivery_id}/retry`);
                replace(message, notice('ok', `Delivery ${d.delivery_id} queued again.`));
              } catch (e) {
                if (e.status !== 401) replace(message, notice('error', e.message));
              }
              await loadDeliveries();
            }, { 'data-testid': 'retry-delivery' }) : '—'),
          },
        ],
        rows: list.deliveries,
      }));
    } catch (e) {
      if (e.status !== 401) replace(deliveries, notice('error', e.message));
    }
  }
  await load();
  await loadDeliveries();
}
