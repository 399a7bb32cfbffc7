// The sign-in page: the API key is sent once (`POST /api/v1/session`) and exchanged for a
// session cookie; the key itself is never stored by the page.

import { API, ApiError, errorOf, fill, getJson } from './common.js';

const $ = (id) => document.getElementById(id);

/** Where to go afterwards: a page of the UI (never another site), with the deep link's `#L`. */
function next() {
  const wanted = new URLSearchParams(location.search).get('next') || '/ui/';
  const safe = wanted.startsWith('/ui/') && !wanted.startsWith('//') ? wanted : '/ui/';
  return safe + location.hash;
}

async function signIn(event) {
  event.preventDefault();
  const key = $('api-key').value.trim();
  const error = $('signin-error');
  error.hidden = true;
  if (!key) {
    fill(error, 'Paste your API key (it starts with ci_).');
    error.hidden = false;
    return;
  }
  $('signin-button').disabled = true;
  try {
    const response = await fetch(`${API}/session`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ api_key: key }),
    });
    if (!response.ok) throw await errorOf(response);
    location.replace(next());
  } catch (err) {
    const message = err instanceof ApiError ? err.message : `the server cannot be reached (${err.message})`;
    fill(error, message);
    error.hidden = false;
    $('signin-button').disabled = false;
  }
}

async function main() {
  $('signin').addEventListener('submit', signIn);
  try {
    // Already signed in (another tab): go on.
    await getJson(`${API}/session`);
    location.replace(next());
  } catch {
    $('api-key').focus();
  }
}

main();
