// The console's entry point: the session, the sign-in form and the hash router.
import { api, get, setCsrf, onUnauthorized } from './api.js';
import { h, replace, notice } from './dom.js';
import * as overview from './page-overview.js';
import * as events from './page-events.js';
import * as tail from './page-tail.js';
import * as aggregates from './page-aggregates.js';
import * as projections from './page-projections.js';
import * as schemas from './page-schemas.js';
import * as automations from './page-automations.js';
import * as audit from './page-audit.js';
import * as keys from './page-keys.js';

const ROUTES = {
  overview: overview.render,
  events: (ctx) => (ctx.parts[1] ? events.renderEvent(ctx) : events.renderSearch(ctx)),
  streams: events.renderStream,
  tail: tail.render,
  aggregates: aggregates.render,
  projections: projections.render,
  schemas: schemas.render,
  automations: automations.render,
  audit: audit.render,
  keys: keys.render,
};

const state = { session: null, leave: [], focusNext: false };
const $ = (id) => document.getElementById(id);

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const at = raw.indexOf('?');
  const path = at >= 0 ? raw.slice(0, at) : raw;
  const qs = at >= 0 ? raw.slice(at + 1) : '';
  const parts = path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { parts: parts.length ? parts : ['overview'], query: new URLSearchParams(qs) };
}

function leavePage() {
  for (const fn of state.leave.splice(0)) {
    try {
      fn();
    } catch (e) {
      console.error(e);
    }
  }
}

function route() {
  if (!state.session) return;
  leavePage();
  const { parts, query } = parseHash();
  const name = parts[0];
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === name || (name === 'streams' && a.dataset.route === 'events')) {
      a.setAttribute('aria-current', 'page');
    } else {
      a.removeAttribute('aria-current');
    }
  }
  const page = $('page');
  const root = h('div', { class: 'page', 'data-page': name });
  replace(page, root);
  page.dataset.route = name;
  const render = ROUTES[name];
  const ctx = {
    root,
    parts,
    query,
    session: state.session,
    onLeave: (fn) => state.leave.push(fn),
    go: (hash) => {
      location.hash = hash;
    },
  };
  if (!render) {
    root.append(h('h1', {}, 'Not found'), notice('error', `There is no page "${name}".`));
    return;
  }
  const focusHeading = state.focusNext;
  state.focusNext = false;
  Promise.resolve()
    .then(() => render(ctx))
    .catch((e) => {
      if (e && e.status === 401) return;
      root.append(notice('error', e.message || String(e), 'page-error'));
    })
    .finally(() => {
      // After a choice in the menu, take keyboard and screen-reader users
      // to the new page's heading.
      const heading = root.querySelector('h1');
      if (focusHeading && heading && root.isConnected) {
        heading.setAttribute('tabindex', '-1');
        heading.focus();
      }
    });
}

function showApp(session) {
  state.session = session;
  setCsrf(session.csrf);
  $('sign-in').hidden = true;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('who-tenant').textContent = session.tenant;
  $('who-subject').textContent = session.anonymous ? 'anonymous (loopback)' : session.subject;
  $('who-role').textContent = session.admin ? '(admin)' : `(scopes: ${(session.scopes || []).join(', ')})`;
  $('sign-out').hidden = Boolean(session.anonymous);
  for (const a of document.querySelectorAll('#nav a')) {
    const adminOnly = ['projections', 'audit', 'keys'].includes(a.dataset.route);
    a.parentElement.hidden = adminOnly && !session.admin;
  }
  document.body.dataset.signedIn = 'true';
  route();
}

function showSignIn(message) {
  leavePage();
  state.session = null;
  setCsrf(null);
  document.body.dataset.signedIn = 'false';
  $('nav').hidden = true;
  $('who').hidden = true;
  $('sign-out').hidden = true;
  replace($('page'));
  $('sign-in').hidden = false;
  $('sign-in-message').textContent = message || '';
  $('credential').value = '';
  $('credential').focus();
}

async function signIn(event) {
  event.preventDefault();
  const credential = $('credential').value.trim();
  const submit = $('sign-in-submit');
  submit.disabled = true;
  $('sign-in-message').textContent = 'Signing in…';
  try {
    const session = await api('POST', '/v1/console/session', { body: { credential }, quiet401: true });
    $('credential').value = '';
    $('sign-in-message').textContent = '';
    if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/overview';
    showApp(session);
  } catch (e) {
    $('sign-in-message').textContent = `Sign-in refused: ${e.message}`;
  } finally {
    submit.disabled = false;
  }
}

async function signOut() {
  try {
    await api('DELETE', '/v1/console/session', { quiet401: true });
  } catch (e) {
    // The session may already be gone; the form is shown either way.
  }
  showSignIn('Signed out.');
}

async function start() {
  onUnauthorized((detail) => showSignIn(`Your session ended: ${detail}`));
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  window.addEventListener('hashchange', route);
  // The hash is the router's: the skip link moves focus instead of navigating.
  $('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    $('main').focus();
  });
  $('nav').addEventListener('click', (e) => {
    if (e.target.closest('a')) state.focusNext = true;
  });
  try {
    const session = await get('/v1/console/session', undefined, { quiet401: true });
    showApp(session);
  } catch (e) {
    // Without any session the server asks for an Authorization header,
    // which says nothing to a person at a browser: show no message then.
    const generic = /Authorization: Bearer/.test(e.message);
    showSignIn(e.status === 401 ? (generic ? '' : e.message) : `Herald could not tell who you are: ${e.message}`);
  }
}

start();
