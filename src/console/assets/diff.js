// A small structural JSON diff: the paths added, removed or changed
// between two values, with the old and new value of each.
import { h, table } from './dom.js';

function kind(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function escape(key) {
  return String(key).replace(/~/g, '~0').replace(/\//g, '~1');
}

/** [{op: 'added'|'removed'|'changed', path: '/a/0', old, new}] */
export function diff(a, b, path = '', out = []) {
  const ka = kind(a);
  const kb = kind(b);
  if (ka === 'object' && kb === 'object') {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const k of keys) {
      const p = `${path}/${escape(k)}`;
      if (!(k in b)) out.push({ op: 'removed', path: p, old: a[k] });
      else if (!(k in a)) out.push({ op: 'added', path: p, new: b[k] });
      else diff(a[k], b[k], p, out);
    }
  } else if (ka === 'array' && kb === 'array') {
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i += 1) {
      const p = `${path}/${i}`;
      if (i >= b.length) out.push({ op: 'removed', path: p, old: a[i] });
      else if (i >= a.length) out.push({ op: 'added', path: p, new: b[i] });
      else diff(a[i], b[i], p, out);
    }
  } else if (JSON.stringify(a) !== JSON.stringify(b)) {
    out.push({ op: 'changed', path: path || '/', old: a, new: b });
  }
  return out;
}

const MARK = { added: '+ added', removed: '− removed', changed: '~ changed' };

function show(v) {
  if (v === undefined) return '';
  const text = JSON.stringify(v);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** The diff as a table: one row per path, the change in words and colour. */
export function renderDiff(a, b, caption) {
  const changes = diff(a, b);
  return table({
    caption,
    testid: 'diff-table',
    empty: 'No difference: the two states are equal.',
    columns: [
      { label: 'Change', render: (c) => h('span', { class: `diff-${c.op}`, 'data-testid': `diff-${c.op}` }, MARK[c.op]) },
      { label: 'Path', render: (c) => h('code', { 'data-testid': 'diff-path' }, c.path) },
      {
        label: 'Old → new',
        render: (c) => {
          if (c.op === 'added') return h('ins', { class: 'diff-new' }, show(c.new));
          if (c.op === 'removed') return h('del', { class: 'diff-old' }, show(c.old));
          return h('span', {}, h('del', { class: 'diff-old' }, show(c.old)), ' → ', h('ins', { class: 'diff-new' }, show(c.new)));
        },
      },
    ],
    rows: changes,
  });
}
