// Audit: verify the hash chain with progress and a clear verdict, download
// an anchor, export events with filters.
import { get, post, query } from './api.js';
import { h, replace, facts, notice, field, formValues, announce } from './dom.js';

/** The verdict in words: "intact" or "BROKEN at position 42 (edited)". */
export function verdict(report) {
  if (report.intact) {
    return `intact: positions ${report.from} to ${report.to} chain (${report.checked} events checked)`;
  }
  const b = report.first_break;
  if (!b) return 'BROKEN (no break described)';
  return `BROKEN at position ${b.position} (${b.kind})`;
}

export function render(ctx) {
  const { root } = ctx;
  root.append(h('h1', {}, 'Audit'));

  // Verify.
  const from = field('From position (optional)', { name: 'from', inputmode: 'numeric', 'data-testid': 'verify-from' });
  const ap = field('Anchor position (optional)', { name: 'anchor_position', inputmode: 'numeric' });
  const ah = field('Anchor hash (optional)', { name: 'anchor_hash', spellcheck: 'false' }, 'From an anchor downloaded earlier: catches a tail cut off with the head record.');
  const run = h('button', { type: 'submit', 'data-testid': 'verify-run' }, 'Run verify');
  const progress = h('div', { 'data-testid': 'verify-progress', 'aria-live': 'polite' });
  const result = h('div', { 'data-testid': 'verify-result' });
  const form = h('form', { class: 'filters', 'data-testid': 'verify-form' },
    h('fieldset', {}, h('legend', {}, 'Verify the hash chain'), from.wrap, ap.wrap, ah.wrap),
    h('div', { class: 'actions' }, run));
  let timer = null;
  ctx.onLeave(() => clearTimeout(timer));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(form);
    const body = {};
    if (v.from) body.from = Number(v.from);
    if (v.anchor_position) body.anchor_position = Number(v.anchor_position);
    if (v.anchor_hash) body.anchor_hash = v.anchor_hash;
    run.disabled = true;
    replace(result);
    replace(progress, h('p', {}, 'Starting…'));
    try {
      let state = await post('/v1/audit/verify/runs', body);
      const poll = async () => {
        showProgress(state);
        if (state.state === 'running') {
          timer = setTimeout(async () => {
            try {
              state = await get(`/v1/audit/verify/runs/${encodeURIComponent(state.id)}`);
            } catch (err) {
              run.disabled = false;
              if (err.status !== 401) replace(result, notice('error', err.message, 'verify-verdict'));
              return;
            }
            poll();
          }, 250);
          return;
        }
        run.disabled = false;
        showResult(state);
      };
      poll();
    } catch (err) {
      run.disabled = false;
      replace(progress);
      if (err.status !== 401) replace(result, notice('error', err.message, 'verify-verdict'));
    }
  });
  function showProgress(s) {
    if (s.state !== 'running') {
      const r = s.report;
      replace(progress, h('p', {}, r && !r.intact
        ? `Verify done: it stopped at the first break, after ${r.checked} intact events.`
        : `Verify ${s.state}: ${s.checked} of ${s.total} events checked.`));
      return;
    }
    const total = Math.max(1, s.total || 0);
    replace(progress, h('p', {}, `Verify ${s.state}: ${s.checked} of ${s.total} events checked. `),
      h('progress', { max: total, value: Math.min(s.checked, total), 'aria-label': 'Verify progress' }, `${s.checked} of ${s.total}`));
  }
  function showResult(s) {
    if (s.state === 'failed' || !s.report) {
      replace(result, notice('error', `Verify failed: ${s.error || 'no report'}`, 'verify-verdict'));
      return;
    }
    const r = s.report;
    const b = r.first_break;
    const text = verdict(r);
    announce(`Verify finished: ${text}`);
    replace(result,
      h('p', { class: `verdict ${r.intact ? 'verdict-ok' : 'verdict-broken'}`, role: 'status', 'data-testid': 'verify-verdict', 'data-intact': String(r.intact) },
        h('strong', {}, text)),
      b ? h('p', { 'data-testid': 'verify-detail' }, b.detail) : null,
      facts([
        ['Checked', `${r.checked} events, positions ${r.from} to ${r.to}`],
        ['Head when started', r.head ? `position ${r.head.position}, hash ${r.head.hash}` : '—'],
        b && b.count != null ? ['Rows involved', String(b.count)] : null,
        b && b.related_position != null ? ['Related position', String(b.related_position)] : null,
        ['Took', `${Number(r.elapsed_seconds).toFixed(3)} s`],
      ], 'verify-facts'));
  }
  root.append(h('section', { 'aria-labelledby': 'verify-h' }, h('h2', { id: 'verify-h' }, 'Verify'),
    form, progress, result));

  // Anchor.
  root.append(h('section', { 'aria-labelledby': 'anchor-h' }, h('h2', { id: 'anchor-h' }, 'Anchor'),
    h('p', {}, 'An anchor is the head position and hash now; keep it outside Herald and give it to a later verify.'),
    h('p', {}, h('a', { href: '/v1/audit/anchor', download: '', class: 'button-link', 'data-testid': 'anchor-download' }, 'Download the anchor'))));

  // Export.
  const ef = {
    type: field('Event types', { name: 'type', placeholder: 'tickets.*' }),
    domain: field('Domains', { name: 'domain' }),
    stream: field('Streams', { name: 'stream' }),
    from: field('Recorded from', { name: 'from', placeholder: '2026-12-01T00:00:00Z' }),
    to: field('Recorded before', { name: 'to' }),
    payload: field('Payload filter', { name: 'payload', placeholder: 'payload.customer=acme' }),
    format: field('Format', { tag: 'select', name: 'format', options: [['jsonl', 'JSON lines'], ['csv', 'CSV']] }),
  };
  const exportLink = h('a', { href: '/v1/events/export?format=jsonl', download: '', class: 'button-link', 'data-testid': 'export-link' }, 'Download the export');
  const exportForm = h('form', { class: 'filters', 'data-testid': 'export-form' },
    h('fieldset', {}, h('legend', {}, 'Export events'), Object.values(ef).map((f) => f.wrap)), h('p', {}, exportLink));
  const update = () => {
    const v = formValues(exportForm);
    const params = { format: v.format };
    for (const name of ['type', 'domain', 'stream']) {
      const parts = (v[name] || '').split(/[\s,]+/).filter(Boolean);
      if (parts.length) params[name] = parts;
    }
    if (v.from) params.from = v.from;
    if (v.to) params.to = v.to;
    const eq = (v.payload || '').indexOf('=');
    if (eq > 0) {
      let path = v.payload.slice(0, eq).trim();
      if (!path.startsWith('payload.')) path = `payload.${path}`;
      params[path] = v.payload.slice(eq + 1).trim();
    }
    exportLink.href = `/v1/events/export${query(params)}`;
  };
  exportForm.addEventListener('input', update);
  exportForm.addEventListener('change', update);
  exportForm.addEventListener('submit', (e) => e.preventDefault());
  root.append(h('section', { 'aria-labelledby': 'export-h' }, h('h2', { id: 'export-h' }, 'Export'), exportForm));
}
