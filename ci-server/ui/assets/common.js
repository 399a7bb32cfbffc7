// What every page shares: talking to the API with the session cookie, building DOM without
// ever parsing HTML, formatting times, and the header (who is signed in, the sign-out button).

export const API = '/api/v1';

/** An answer of the API that was not a success: `message` is its `error`. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Sends a request to the API (same origin: the cookie goes with it) and returns the answer. */
export async function request(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `the server cannot be reached (${err.message})`, 'network');
  }
  if (response.status === 401 && path !== `${API}/session`) {
    signedOut('Your session has ended.');
  }
  if (!response.ok) {
    throw await errorOf(response);
  }
  return response;
}

/** GET `path` and parse its JSON. */
export async function getJson(path) {
  const response = await request('GET', path);
  return response.json();
}

/** The API's error body (`{"error", "code", "detail"}`) as an ApiError. */
export async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let code;
  try {
    const body = await response.json();
    if (body && body.error) message = body.error;
    code = body && body.code;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message, code);
}

/**
 * `el('a', {href: '/x', class: 'y'}, 'text', child)`: an element with attributes (`on*` keys are
 * listeners, `dataset` an object) and children (strings become text nodes, never HTML).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (key === 'class') {
      node.className = value;
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) {
      append(node, child);
    } else if (child instanceof Node) {
      node.appendChild(child);
    } else {
      node.appendChild(document.createTextNode(String(child)));
    }
  }
}

/** Replaces the children of `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const STATUSES = ['queued', 'running', 'passed', 'failed', 'error', 'cancelled', 'timed_out', 'lost'];

export function isTerminal(status) {
  return !['queued', 'running'].includes(status);
}

/** A status as a coloured badge. */
export function badge(status) {
  return el('span', { class: `badge s-${status}`, dataset: { status } }, status.replace('_', ' '));
}

/** `2026-11-30 14:02:07` in the browser's time zone, or '' for null. */
export function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `3 min ago`, `just now`. */
export function formatAgo(iso, now = Date.now()) {
  if (!iso) return '';
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 10) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** `1.2 s`, `3 min 4 s`, `1 h 2 min` between two times (the second defaults to now). */
export function formatDuration(fromIso, toIso) {
  if (!fromIso) return '';
  const ms = (toIso ? new Date(toIso).getTime() : Date.now()) - new Date(fromIso).getTime();
  return formatMs(Math.max(0, ms));
}

export function formatMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatCount(n) {
  return Number(n).toLocaleString('en-US');
}

/** `40 passed · 2 failed` from a job's `tests.outcomes`. */
export function testCounts(tests) {
  if (!tests || !tests.outcomes) return '';
  const order = ['failed', 'error', 'flaky', 'passed', 'skipped', 'xfailed', 'xpassed'];
  return Object.entries(tests.outcomes)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => order.indexOf(a) - order.indexOf(b))
    .map(([outcome, n]) => `${n} ${outcome}`)
    .join(' · ');
}

/** Copies `text` to the clipboard (with a fallback where the Clipboard API is not allowed). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return;
  } catch {
    // not a secure context, or no permission: the old way
  }
  const area = el('textarea', { class: 'offscreen', readonly: true });
  area.value = text;
  document.body.appendChild(area);
  area.select();
  document.execCommand('copy');
  area.remove();
}

/** Shows a short message at the bottom of the page. */
export function toast(text) {
  const node = el('div', { class: 'toast', role: 'status' }, text);
  document.body.appendChild(node);
  setTimeout(() => node.remove(), 2500);
}

const signedOutListeners = [];
let isSignedOut = false;

/** Runs `listener(message)` once the session ends (sign-out here, or a 401 from the API). */
export function onSignedOut(listener) {
  signedOutListeners.push(listener);
}

/** Marks the page signed out: every live update stops and a banner says so. */
export function signedOut(message) {
  if (isSignedOut) return;
  isSignedOut = true;
  document.body.dataset.session = 'signed-out';
  const next = location.pathname + location.search + location.hash;
  const banner = document.getElementById('banner');
  if (banner) {
    fill(banner,
      el('strong', {}, 'Signed out. '), message, ' Live updates have stopped. ',
      el('a', { href: signinUrl(next) }, 'Sign in again'));
    banner.hidden = false;
  }
  const who = document.getElementById('who');
  if (who) fill(who, 'signed out');
  const button = document.getElementById('signout');
  if (button) button.hidden = true;
  for (const listener of signedOutListeners) listener(message);
}

export function signinUrl(next) {
  return `/ui/signin?next=${encodeURIComponent(next)}`;
}

/** Fills the header: who is signed in, and the sign-out button. */
export async function setupHeader() {
  const who = document.getElementById('who');
  const button = document.getElementById('signout');
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await request('DELETE', `${API}/session`);
      signedOut('You signed out.');
    } catch (err) {
      button.disabled = false;
      toast(`Cannot sign out: ${err.message}`);
    }
  });
  try {
    const session = await getJson(`${API}/session`);
    fill(who, session.user_name);
    who.title = `user ${session.user_id}; session until ${formatTime(session.expires_at)}`;
    document.body.dataset.session = 'signed-in';
  } catch (err) {
    if (err.status === 401) {
      signedOut('Your session has ended.');
    }
  }
}
