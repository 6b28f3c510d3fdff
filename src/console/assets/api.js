// Talking to Herald: every request is same-origin with the session cookie;
// every non-GET request carries the CSRF token; a 401 ends the session.

let csrf = null;
let unauthorized = () => {};

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export function setCsrf(token) {
  csrf = token || null;
}

export function onUnauthorized(fn) {
  unauthorized = fn;
}

/** Query string from an object; arrays repeat the name; empty values are left out. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (one !== undefined && one !== null && one !== '') q.append(k, String(one));
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * api('GET', '/v1/events', {query: {...}}) → parsed JSON (null for 204).
 * Options: body (JSON), query, quiet401 (do not end the session on 401).
 */
export async function api(method, path, options = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, credentials: 'same-origin', headers };
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path + query(options.query), init);
  } catch (e) {
    throw new ApiError(0, { title: 'Network error', detail: `Herald could not be reached (${e.message}).` });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text };
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && !options.quiet401) unauthorized(error.message);
    throw error;
  }
  return data;
}

export const get = (path, q, options = {}) => api('GET', path, { ...options, query: q });
export const post = (path, body, options = {}) => api('POST', path, { ...options, body });
