// The job page: the job's state and steps, its failing tests first, its artifacts, and its log
// (virtualized, fetched in ranges, appended live from the event stream while the job runs).

import {
  API, badge, copyText, el, fill, formatBytes, formatCount, formatDuration, formatTime,
  getJson, isTerminal, onSignedOut, request, setupHeader, signedOut, testCounts, toast,
} from './common.js';
import { plainText, renderAnsi } from './ansi.js';
import { LogView } from './logview.js';

const jobId = decodeURIComponent(location.pathname.replace(/\/+$/, '').split('/').pop());
const base = `${API}/jobs/${encodeURIComponent(jobId)}`;

let job = null;
let stream = null;
let log = null;
let search = { q: '', matches: [], index: -1, nextAfter: null };

const $ = (id) => document.getElementById(id);

// --- the log's lines ---

const OUTCOMES = ['failed', 'error', 'flaky', 'passed', 'skipped', 'xfailed', 'xpassed'];

/** An event as its line of the log, exactly as the server's `/log` renders it
 * (`EventRow::line`): log lines and notices as written, the others as `== ... ==` markers. */
export function eventLine(type, data) {
  const marker = (what, reason) => (reason ? `== ${what}: ${reason} ==` : `== ${what} ==`);
  const oneLine = (text) => text.replace(/\r\n|[\r\n]/g, ' ');
  switch (type) {
    case 'log':
    case 'notice':
      return oneLine(data.data);
    case 'status':
    case 'complete':
      return oneLine(marker(`job ${data.status}`, data.reason));
    case 'step': {
      const exit = data.exit_code !== null && data.exit_code !== undefined ? ` (exit ${data.exit_code})` : '';
      return oneLine(marker(`step ${data.name}: ${data.state}${exit}`, data.reason));
    }
    case 'summary': {
      const counts = data.counts || { outcomes: {}, duration_ms: 0 };
      const parts = OUTCOMES.filter((o) => counts.outcomes[o] > 0).map((o) => `${counts.outcomes[o]} ${o}`);
      const what = parts.length ? parts.join(', ') : 'no tests';
      return `== ${what} in ${(counts.duration_ms / 1000).toFixed(2)}s ==`;
    }
    default:
      return `== ${type} ==`;
  }
}

/** Lines `from`..`to` from the server (one per event). */
async function fetchLines(from, to) {
  const response = await request('GET', `${base}/log?from=${from}&to=${to}`);
  const last = Number(response.headers.get('X-Ci-Last-Seq'));
  const text = await response.text();
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  if (last > log.total && !log.live) log.setTotal(last);
  return lines;
}

// --- the live stream ---

function setStreamState(state, text) {
  const node = $('stream-state');
  node.dataset.state = state;
  fill(node, text);
}

function openStream(after) {
  setStreamState('connecting', 'connecting…');
  stream = new EventSource(`${base}/events?after=${after}`);
  stream.onopen = () => setStreamState('live', 'live');
  stream.onerror = () => {
    if (!stream) return;
    if (stream.readyState === EventSource.CLOSED) {
      // The server refused to go on (the session ended): find out why.
      closeStream('closed', 'closed');
      getJson(`${API}/session`).catch((err) => {
        if (err.status === 401) signedOut('Your session has ended.');
      });
    } else {
      setStreamState('connecting', 'reconnecting…');
    }
  };
  for (const type of ['log', 'notice', 'status', 'step', 'summary', 'complete']) {
    stream.addEventListener(type, (event) => onEvent(type, event));
  }
}

function closeStream(state, text) {
  if (stream) {
    stream.close();
    stream = null;
  }
  setStreamState(state, text);
  log.setLive(false);
  $('follow').hidden = true;
}

function onEvent(type, event) {
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  const seq = Number(event.lastEventId || data.seq);
  if (seq > 0) log.append(seq, eventLine(type, data));
  if (type === 'log' || type === 'notice') return;
  if (type === 'status' && job) {
    job.status = data.status;
    renderHead();
  }
  if (type === 'complete') {
    closeStream('finished', 'finished');
    refresh().then(loadResults);
    return;
  }
  scheduleRefresh();
}

let refreshTimer = 0;
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = 0;
    refresh();
  }, 300);
}

async function refresh() {
  try {
    job = await getJson(base);
    renderHead();
    renderSteps();
  } catch (err) {
    if (err.status !== 401) toast(`Cannot refresh the job: ${err.message}`);
  }
}

// --- the job's state ---

function renderHead() {
  fill($('job-status'), badge(job.status));
  document.title = `${job.task} ${job.status} · ci`;
  fill($('job-title'), job.task, job.args && job.args.length ? ` ${job.args.join(' ')}` : '');
  const rows = [
    ['Job', el('code', {}, job.job_id)],
    ['Project', job.project],
    ['Image', job.image],
    ['Created', formatTime(job.created_at)],
    ['Started', formatTime(job.start_time)],
    ['Ended', formatTime(job.end_time)],
    ['Duration', job.start_time ? formatDuration(job.start_time, job.end_time) : ''],
    ['Exit code', job.exit_code ?? ''],
    ['Tests', testCounts(job.tests)],
    ['Log', `${formatCount(job.log_lines)} lines${job.dropped_lines ? ` (${formatCount(job.dropped_lines)} dropped past the log cap)` : ''}`],
  ];
  fill($('job-meta'), rows
    .filter(([, value]) => value !== '' && value !== null && value !== undefined)
    .map(([name, value]) => el('div', {}, el('dt', {}, name), el('dd', { dataset: { field: name.toLowerCase() } }, value))));
  const reason = $('job-reason');
  reason.hidden = !job.reason;
  fill(reason, job.reason || '');
  if (job.oom_killed) reason.append(' (out of memory)');
  const cancel = $('cancel');
  cancel.hidden = isTerminal(job.status);
  cancel.disabled = job.cancel_requested;
  fill(cancel, job.cancel_requested ? 'Cancelling…' : 'Cancel');
}

function renderSteps() {
  const steps = job.steps || [];
  $('steps-section').hidden = steps.length === 0;
  fill($('steps-body'), steps.map((step) => el('tr', { dataset: { step: step.name } },
    el('td', {}, step.position),
    el('td', {}, step.name),
    el('td', {}, badge(step.state)),
    el('td', {}, step.exit_code ?? ''),
    el('td', {}, step.started_at ? formatDuration(step.started_at, step.finished_at) : ''),
    el('td', {}, step.reason || ''))));
}

async function cancelJob() {
  const button = $('cancel');
  button.disabled = true;
  try {
    const response = await request('POST', `${base}/cancel`);
    job = { ...job, ...(await response.json()) };
    renderHead();
    toast('Cancel requested: the job is being stopped.');
  } catch (err) {
    button.disabled = false;
    toast(`Cannot cancel: ${err.message}`);
  }
}

// --- results: failing tests and artifacts ---

async function loadResults() {
  await Promise.all([loadFailures(), loadArtifacts()]);
}

async function loadFailures() {
  if (!job.tests) return;
  const lists = await Promise.all(['failed', 'error', 'flaky'].map((outcome) =>
    getJson(`${base}/tests?outcome=${outcome}&limit=100`).then((body) => body.tests).catch(() => [])));
  const tests = lists.flat();
  $('failures').hidden = tests.length === 0;
  const counts = testCounts(job.tests);
  fill($('failures-title'), `Failing tests`, counts ? el('span', { class: 'muted' }, ` (${counts})`) : '');
  fill($('failure-list'), tests.map((test, i) => failure(test, i < 3)));
}

function failure(test, open) {
  const where = test.file ? `${test.file}${test.line ? `:${test.line}` : ''}` : '';
  const history = test.history && test.history.runs
    ? `failed ${test.history.failed} of the last ${test.history.runs} runs` : '';
  const text = el('pre', { class: 'longrepr' });
  renderLines(text, test.longrepr || test.message || '');
  return el('article', { class: 'test-failure', dataset: { outcome: test.outcome, nodeid: test.nodeid } },
    el('header', {},
      badge(test.outcome),
      el('code', { class: 'nodeid' }, test.nodeid),
      where && el('span', { class: 'muted' }, ` ${where}`),
      test.attempt > 1 && el('span', { class: 'muted' }, ` attempt ${test.attempt}`),
      history && el('span', { class: 'muted' }, ` · ${history}`),
      el('button', { type: 'button', class: 'link', onclick: () => runSearch(test.nodeid) }, 'find in log')),
    test.message && el('p', { class: 'message' }, test.message),
    el('details', { open }, el('summary', {}, 'failure text'), text));
}

function renderLines(parent, text) {
  text.split('\n').forEach((line, i) => {
    if (i > 0) parent.appendChild(document.createTextNode('\n'));
    renderAnsi(parent, line, '');
  });
}

async function loadArtifacts() {
  let artifacts = [];
  try {
    artifacts = (await getJson(`${base}/artifacts`)).artifacts || [];
  } catch {
    artifacts = [];
  }
  $('artifacts-section').hidden = artifacts.length === 0;
  fill($('artifacts'), artifacts.map((a) => el('li', {},
    el('a', { href: `${base}/artifacts/${a.path.split('/').map(encodeURIComponent).join('/')}`, download: a.path.split('/').pop() }, a.path),
    el('span', { class: 'muted' }, ` ${formatBytes(a.size)}`),
    el('code', { class: 'muted sha', title: 'SHA-256' }, ` ${a.sha256.slice(0, 12)}`))));
}

// --- search ---

async function runSearch(q) {
  $('search-input').value = q;
  search = { q, matches: [], index: -1, nextAfter: null };
  if (!q) {
    log.setSearch('', null);
    fill($('search-count'), '');
    return;
  }
  fill($('search-count'), 'searching…');
  try {
    await searchMore();
  } catch (err) {
    fill($('search-count'), err.message);
    return;
  }
  if (search.matches.length) gotoMatch(0);
  else {
    log.setSearch(q, null);
    fill($('search-count'), 'no matches');
  }
}

async function searchMore() {
  const params = new URLSearchParams({ q: search.q, limit: '200' });
  if (search.nextAfter !== null) params.set('after', search.nextAfter);
  const body = await getJson(`${base}/log/search?${params}`);
  search.matches.push(...body.matches);
  search.nextAfter = body.next_after ?? null;
}

function gotoMatch(index) {
  search.index = index;
  const match = search.matches[index];
  log.setSearch(search.q, match.seq);
  log.scrollToLine(match.seq);
  revealLog();
  const more = search.nextAfter !== null ? '+' : '';
  fill($('search-count'), `${index + 1} of ${search.matches.length}${more}`);
  $('search-count').dataset.seq = match.seq;
}

async function nextMatch(step) {
  if (!search.matches.length) {
    if ($('search-input').value) await runSearch($('search-input').value);
    return;
  }
  let index = search.index + step;
  if (index >= search.matches.length) {
    if (search.nextAfter !== null) {
      await searchMore();
      if (index >= search.matches.length) index = 0;
    } else {
      index = 0;
    }
  }
  if (index < 0) index = search.nextAfter === null ? search.matches.length - 1 : 0;
  gotoMatch(index);
}

// --- lines: #L links, copy ---

/** `#L12` → {from: 12, to: 12}; `#L12-L20` → {from: 12, to: 20}. */
function hashRange() {
  const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(location.hash);
  if (!m) return null;
  const a = Number(m[1]);
  const b = m[2] ? Number(m[2]) : a;
  return { from: Math.min(a, b), to: Math.max(a, b) };
}

function showHash() {
  const range = hashRange();
  if (!range) return false;
  log.select(range);
  log.scrollToLine(range.from);
  revealLog();
  return true;
}

/** Scrolls the page (not the log) so that the whole log box is in the window. */
function revealLog() {
  document.querySelector('.log-section').scrollIntoView({ block: 'nearest' });
}

async function copyLines() {
  const selected = window.getSelection();
  if (selected && !selected.isCollapsed && $('log').contains(selected.anchorNode)) {
    await copyText(selected.toString());
    toast('Copied the selection.');
    return;
  }
  const range = log.selection;
  if (!range) {
    toast('Select text, or click a line number (shift-click for a range) first.');
    return;
  }
  const to = Math.min(range.to, range.from + 9999);
  const lines = await fetchLines(range.from, to);
  await copyText(lines.map(plainText).join('\n'));
  toast(`Copied ${to - range.from + 1} line${to > range.from ? 's' : ''}.`);
}

// --- the page ---

function setupLog() {
  log = new LogView($('log'), {
    fetchLines,
    onFollowChange: (follow) => {
      const button = $('follow');
      button.setAttribute('aria-pressed', String(follow));
      fill(button, follow ? 'Following' : 'Follow ↓');
    },
    onSelect: (range) => {
      const hash = range.from === range.to ? `#L${range.from}` : `#L${range.from}-L${range.to}`;
      history.replaceState(null, '', hash);
    },
    onCopyLine: async (seq, text) => {
      await copyText(text);
      toast(`Copied line ${seq}.`);
    },
    onRender: (first, last) => {
      fill($('log-position'), log.total ? `lines ${formatCount(first)}–${formatCount(last)} of ${formatCount(log.total)}` : 'no lines yet');
    },
    onError: (err) => {
      if (err.status !== 401) toast(`Cannot load the log: ${err.message}`);
    },
  });
  $('follow').addEventListener('click', () => log.setFollow(!log.follow));
  $('top').addEventListener('click', () => {
    log.scrollToStart();
    revealLog();
  });
  $('end').addEventListener('click', () => {
    log.scrollToEnd();
    revealLog();
  });
  $('copy').addEventListener('click', () => copyLines().catch((err) => toast(err.message)));
  $('search').addEventListener('submit', (event) => {
    event.preventDefault();
    const q = $('search-input').value;
    if (q === search.q && search.matches.length) nextMatch(1);
    else runSearch(q);
  });
  $('search-next').addEventListener('click', () => nextMatch(1));
  $('search-prev').addEventListener('click', () => nextMatch(-1));
  $('download').href = `${base}/log.txt`;
  $('cancel').addEventListener('click', cancelJob);
  window.addEventListener('hashchange', showHash);
}

async function main() {
  setupHeader();
  setupLog();
  onSignedOut(() => closeStream('closed', 'closed: signed out'));
  try {
    job = await getJson(base);
  } catch (err) {
    fill($('job-reason'), `Cannot load the job: ${err.message}`);
    $('job-reason').hidden = false;
    return;
  }
  renderHead();
  renderSteps();
  const live = !isTerminal(job.status);
  log.setLive(live);
  log.setTotal(job.last_seq || 0);
  $('follow').hidden = !live;
  if (!showHash()) {
    if (live) {
      log.setFollow(true);
      revealLog();
    } else {
      log.scrollToStart();
    }
  }
  if (live) openStream(job.last_seq || 0);
  else setStreamState('finished', 'finished');
  setInterval(() => {
    if (job && !isTerminal(job.status)) renderHead();
  }, 1000);
  if (isTerminal(job.status)) loadResults();
}

main();
