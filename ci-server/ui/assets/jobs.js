// The jobs page: the caller's jobs, newest first, refreshed every 2 seconds, filtered by status
// and task on the server (`?status=&task=`, kept in the page's URL so a filtered list is a link).

import {
  API, STATUSES, badge, el, fill, formatAgo, formatDuration, formatTime, getJson, onSignedOut,
  setupHeader, testCounts,
} from './common.js';

const POLL_MS = 2000;
const HIDDEN_POLL_MS = 10000;
const PAGE = 50;
const MAX = 500;

const $ = (id) => document.getElementById(id);
const rows = new Map();
let limit = PAGE;
let timer = 0;
let stopped = false;
let generation = 0;
const tasksSeen = new Set();

function filters() {
  const params = new URLSearchParams(location.search);
  return { status: params.get('status') || '', task: params.get('task') || '' };
}

function setFilters(status, task) {
  const params = new URLSearchParams();
  if (status) params.set('status', status);
  if (task) params.set('task', task);
  const query = params.toString();
  history.replaceState(null, '', query ? `?${query}` : location.pathname);
  limit = PAGE;
  poll();
}

function row(job) {
  const href = `/ui/jobs/${encodeURIComponent(job.job_id)}`;
  return el('tr', { dataset: { job: job.job_id, status: job.status } },
    el('td', {}, badge(job.status)),
    el('td', {}, el('a', { href, class: 'job-link' }, el('code', {}, job.job_id.slice(0, 8)))),
    el('td', {}, el('a', { href }, job.task), job.args && job.args.length ? el('span', { class: 'muted' }, ` ${job.args.join(' ')}`) : ''),
    el('td', {}, job.project || ''),
    el('td', { class: 'tests' }, testCounts(job.tests)),
    el('td', { title: formatTime(job.created_at) }, formatAgo(job.created_at)),
    el('td', {}, job.start_time ? formatDuration(job.start_time, job.end_time) : ''),
    el('td', { class: 'job-reason', title: job.reason || '' }, job.reason || ''));
}

function render(list) {
  const body = $('jobs-body');
  const seen = new Set();
  let previous = null;
  for (const job of list.jobs) {
    seen.add(job.job_id);
    if (job.task) tasksSeen.add(job.task);
    // The row is rebuilt only when the job changed (or its times need a refresh).
    const signature = JSON.stringify(job) + formatAgo(job.created_at);
    let entry = rows.get(job.job_id);
    if (!entry || entry.signature !== signature || !isFinished(job)) {
      const fresh = row(job);
      if (entry) entry.node.replaceWith(fresh);
      entry = { node: fresh, signature };
      rows.set(job.job_id, entry);
    }
    const expected = previous ? previous.nextSibling : body.firstChild;
    if (expected !== entry.node) body.insertBefore(entry.node, expected);
    previous = entry.node;
  }
  for (const [id, entry] of rows) {
    if (!seen.has(id)) {
      entry.node.remove();
      rows.delete(id);
    }
  }
  const { status, task } = filters();
  const empty = $('jobs-empty');
  empty.hidden = list.jobs.length > 0;
  fill(empty, status || task
    ? 'No jobs match these filters.'
    : 'No jobs yet. Submit one with `ci submit` in a project folder.');
  $('more').hidden = !list.next_before || limit >= MAX;
  fill($('jobs-count'), `${list.jobs.length}${list.next_before ? '+' : ''} job${list.jobs.length === 1 ? '' : 's'}`);
  fill($('task-options'), [...tasksSeen].sort().map((name) => el('option', { value: name })));
}

function isFinished(job) {
  return !['queued', 'running'].includes(job.status);
}

async function poll() {
  clearTimeout(timer);
  if (stopped) return;
  const mine = ++generation;
  const { status, task } = filters();
  const params = new URLSearchParams({ limit: String(limit) });
  if (status) params.set('status', status);
  if (task) params.set('task', task);
  try {
    const list = await getJson(`${API}/jobs?${params}`);
    if (mine !== generation || stopped) return;
    render(list);
    $('jobs-error').hidden = true;
    document.body.dataset.updated = String(Date.now());
  } catch (err) {
    if (mine !== generation || stopped) return;
    const node = $('jobs-error');
    fill(node, `Cannot load the jobs: ${err.message}`);
    node.hidden = err.status === 401;
  }
  timer = setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
}

function main() {
  setupHeader();
  onSignedOut(() => {
    stopped = true;
    clearTimeout(timer);
  });
  const { status, task } = filters();
  const select = $('status-filter');
  fill(select, el('option', { value: '' }, 'any status'), STATUSES.map((s) => el('option', { value: s }, s.replace('_', ' '))));
  select.value = status;
  $('task-filter').value = task;
  select.addEventListener('change', () => setFilters(select.value, $('task-filter').value.trim()));
  let typing = 0;
  $('task-filter').addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => setFilters(select.value, $('task-filter').value.trim()), 300);
  });
  $('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    setFilters(select.value, $('task-filter').value.trim());
  });
  $('more').addEventListener('click', () => {
    limit = Math.min(MAX, limit + PAGE);
    poll();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) poll();
  });
  poll();
}

main();
