// Keys (admin): create with scopes (the key is shown once), list, revoke.
import { get, post } from './api.js';
import { h, replace, table, time, notice, badge, button, field, formValues } from './dom.js';

export async function render(ctx) {
  const { root } = ctx;
  const message = h('div', { 'aria-live': 'polite', 'data-testid': 'keys-message' });
  const list = h('div', {});
  const f = {
    tenant: field('Tenant (optional)', { name: 'tenant', placeholder: ctx.session.tenant, 'data-testid': 'key-tenant' }),
    scopes: field('Scopes', { name: 'scopes', required: true, placeholder: 'read:*, subscribe:tickets', 'data-testid': 'key-scopes' },
      'action:pattern, separated by commas: publish, subscribe, read or admin; e.g. read:tickets.*'),
    label: field('Label (optional)', { name: 'label', 'data-testid': 'key-label' }),
    rate: field('Requests per second (optional)', { name: 'rate_per_sec', inputmode: 'numeric' }),
  };
  const created = h('div', { 'data-testid': 'key-created', 'aria-live': 'polite' });
  const form = h('form', { class: 'filters', 'data-testid': 'key-form' },
    h('fieldset', {}, h('legend', {}, 'Create a key'), Object.values(f).map((x) => x.wrap)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', 'data-testid': 'key-create' }, 'Create key')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = formValues(form);
    const body = { scopes: v.scopes.split(/[\s,]+/).filter(Boolean) };
    if (v.tenant) body.tenant = v.tenant;
    if (v.label) body.label = v.label;
    if (v.rate_per_sec) body.rate_per_sec = Number(v.rate_per_sec);
    try {
      const answer = await post('/v1/keys', body);
      form.reset();
      replace(created, h('div', { class: 'notice notice-ok', role: 'status' },
        h('p', {}, h('strong', {}, 'OK: '), `Created key ${answer.record.key_id} for tenant ${answer.record.tenant} with scopes ${answer.record.scopes.join(', ')}. Copy it now: it is shown only this once.`),
        h('p', {}, h('label', { for: 'new-key' }, 'The new key'), ' ',
          h('input', { id: 'new-key', readonly: true, value: answer.key, class: 'secret', 'data-testid': 'new-key', spellcheck: 'false' }))));
      await load();
    } catch (err) {
      if (err.status !== 401) replace(created, notice('error', err.message, 'key-error'));
    }
  });
  root.append(h('h1', {}, 'Keys'), form, created, message, list);

  async function revoke(k) {
    replace(created);
    try {
      await post(`/v1/keys/${encodeURIComponent(k.key_id)}/revoke`);
      replace(message, notice('ok', `Key ${k.key_id} is revoked; it stops working at once.`, 'revoke-result'));
    } catch (e) {
      if (e.status !== 401) replace(message, notice('error', e.message, 'revoke-result'));
    }
    await load();
  }

  async function load() {
    try {
      const answer = await get('/v1/keys');
      replace(list, table({
        caption: `API keys (${answer.keys.length})`,
        testid: 'key-list',
        columns: [
          {
            label: 'Key id',
            render: (k) => [h('code', { 'data-testid': 'key-id' }, k.key_id),
              ctx.session.subject === `key:${k.key_id}` ? ' (this session\'s key)' : ''],
          },
          { label: 'Tenant', render: (k) => k.tenant },
          { label: 'Scopes', render: (k) => k.scopes.join(', ') },
          { label: 'Label', render: (k) => k.label || '—' },
          { label: 'Rate', render: (k) => (k.rate_per_sec ? `${k.rate_per_sec}/s` : 'default') },
          { label: 'Created', render: (k) => time(k.created_at) },
          { label: 'State', render: (k) => (k.revoked_at ? [badge('error', 'revoked', 'key-state'), ' ', time(k.revoked_at)] : badge('ok', 'active', 'key-state')) },
          {
            label: 'Action',
            render: (k) => (k.revoked_at ? '—' : button(`Revoke ${k.key_id}`, () => revoke(k), { 'data-testid': 'key-revoke', 'data-key-id': k.key_id })),
          },
        ],
        rows: answer.keys,
      }));
    } catch (e) {
      if (e.status !== 401) replace(list, notice('error', e.message));
    }
  }
  await load();
}
