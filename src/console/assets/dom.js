// Small DOM helpers: build elements without innerHTML, inline styles or
// inline handlers (the console runs under a strict Content-Security-Policy).

/** h('p', {class: 'x', 'data-testid': 'y'}, 'text', child, ...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'on') {
      for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    } else if (name === 'text') {
      el.textContent = value;
    } else if (name === 'value') {
      el.value = value;
    } else if (name === 'checked' || name === 'disabled' || name === 'hidden' || name === 'selected') {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

/** A table with a caption; columns: [{label, render: row => node|string, className}]. */
export function table({ caption, columns, rows, testid, empty = 'Nothing to show.' }) {
  const head = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.label))));
  const body = h('tbody', {});
  for (const row of rows) {
    body.append(h('tr', { 'data-testid': testid ? `${testid}-row` : undefined },
      columns.map((c) => h('td', { 'data-label': c.label, class: c.className }, c.render(row)))));
  }
  if (!rows.length) {
    body.append(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty)));
  }
  return h('div', { class: 'table-wrap' },
    h('table', { 'data-testid': testid }, h('caption', {}, caption), head, body));
}

/** A definition list from [[term, value], ...]. */
export function facts(pairs, testid) {
  return h('dl', { class: 'facts', 'data-testid': testid },
    pairs.filter(Boolean).map(([term, value]) => [h('dt', {}, term), h('dd', {}, value ?? '—')]));
}

/** A labelled input: returns {wrap, input}. */
export function field(label, attrs = {}, hint) {
  const id = attrs.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  const tag = attrs.tag || 'input';
  const a = { ...attrs, id };
  delete a.tag;
  const input = h(tag, a);
  if (tag === 'select' && attrs.options) {
    input.removeAttribute('options');
    for (const o of attrs.options) {
      const [value, text] = Array.isArray(o) ? o : [o, o];
      input.append(h('option', { value, selected: value === attrs.value }, text));
    }
    if (attrs.value !== undefined) input.value = attrs.value;
  }
  const hintId = hint ? `${id}-hint` : undefined;
  if (hintId) input.setAttribute('aria-describedby', hintId);
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null);
  return { wrap, input };
}

export function pre(value, testid) {
  return h('pre', { class: 'json', 'data-testid': testid, tabindex: '0' },
    typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return h('time', { datetime: iso, title: iso }, d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z'));
}

export function link(href, text, attrs = {}) {
  return h('a', { href, ...attrs }, text);
}

export function eventLink(id, text) {
  return link(`#/events/${encodeURIComponent(id)}`, text || short(id), { 'data-testid': 'event-link' });
}

export function streamLink(stream) {
  if (!stream) return '—';
  return link(`#/streams/${stream.split('/').map(encodeURIComponent).join('/')}`, stream);
}

export function short(id) {
  return id ? `${String(id).slice(0, 8)}…` : '—';
}

/** A status line: kind is info|ok|error|warn; the word carries the meaning, colour only helps. */
export function notice(kind, text, testid, word) {
  const words = { ok: 'OK', error: 'Error', warn: 'Warning', info: 'Note' };
  return h('p', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': testid },
    h('strong', {}, `${word || words[kind] || 'Note'}: `), text);
}

/** A badge whose text states the state (never colour alone). */
export function badge(kind, text, testid) {
  return h('span', { class: `badge badge-${kind}`, 'data-testid': testid }, text);
}

export function button(text, onClick, attrs = {}) {
  return h('button', { type: 'button', ...attrs, on: { click: onClick } }, text);
}

/** Reads a form's named fields into an object of trimmed strings. */
export function formValues(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) out[k] = typeof v === 'string' ? v.trim() : v;
  return out;
}

export function announce(text) {
  const el = document.getElementById('live-status');
  if (el) el.textContent = text;
}
