// A job's log as a virtualized list: one fixed-height row per event (its seq is the line
// number), only the rows on screen in the DOM, and the lines fetched from the server in chunks
// as they scroll into view (`/log?from=A&to=B`). Live lines are appended by `append`.
//
// Browsers cap an element's height (about 16–33 million pixels), so past MAX_PX the scroll
// position is scaled: the scrollbar spans the whole log, and rows are placed around the
// viewport.

import { plainText, renderAnsi } from './ansi.js';

/** Lines per request (the server allows 10,000). */
const CHUNK = 500;
/** Chunks kept in memory (the rest are fetched again when needed). */
const MAX_CHUNKS = 400;
/** Requests in flight at once. */
const MAX_INFLIGHT = 3;
/** Rows rendered above and below the viewport. */
const OVERSCAN = 20;
/** The tallest spacer (px) used as is. */
const MAX_PX = 8_000_000;
/** How long a chunk the server answered short is left alone before it is asked again (ms). */
const RETRY_MS = 2000;

export class LogView {
  /**
   * @param {HTMLElement} root the `.log` element (holds the scroller)
   * @param {object} options `fetchLines(from, to) → Promise<string[]>`, `onFollowChange(bool)`,
   *   `onSelect({from, to} | null)`, `onRender()`
   */
  constructor(root, options) {
    this.options = options;
    this.total = 0;
    this.chunks = new Map();
    this.inflight = 0;
    this.wanted = [];
    this.follow = false;
    this.live = false;
    this.selection = null;
    this.current = null;
    this.query = '';
    this.rendered = new Map();
    this.renderedRange = null;
    this.frame = 0;
    this.marks = {};

    this.scroller = root.querySelector('.log-scroller');
    this.spacer = root.querySelector('.log-spacer');
    this.rows = root.querySelector('.log-rows');
    this.rowHeight = this.measureRowHeight();

    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.rows.addEventListener('click', (event) => this.onClick(event));
    new ResizeObserver(() => this.schedule()).observe(this.scroller);
  }

  measureRowHeight() {
    const probe = document.createElement('div');
    probe.className = 'log-row';
    probe.textContent = 'x';
    this.rows.appendChild(probe);
    const height = probe.getBoundingClientRect().height || 18;
    probe.remove();
    return height;
  }

  /** Sets the number of lines (the job's last seq). */
  setTotal(total) {
    if (total === this.total) return;
    this.total = total;
    this.schedule();
  }

  /** Whether new lines are still coming (the follow button makes sense). */
  setLive(live) {
    this.live = live;
    if (!live) {
      // The last lines often come with the end, before they were drawn: a reader who was
      // following sees them before following stops.
      if (this.follow) this.scrollToEnd();
      this.setFollow(false);
    }
  }

  /** Live lines from the stream: `seq` → text. */
  append(seq, text) {
    this.put(seq, text);
    if (seq > this.total) this.total = seq;
    this.schedule();
  }

  put(seq, text) {
    const index = Math.floor((seq - 1) / CHUNK);
    let chunk = this.chunks.get(index);
    if (!chunk) {
      chunk = { lines: new Array(CHUNK), loading: false, shortAt: 0, used: 0 };
      this.chunks.set(index, chunk);
    }
    chunk.lines[(seq - 1) % CHUNK] = text;
  }

  /** The text of line `seq`, or undefined when it has not been fetched. */
  line(seq) {
    const chunk = this.chunks.get(Math.floor((seq - 1) / CHUNK));
    return chunk ? chunk.lines[(seq - 1) % CHUNK] : undefined;
  }

  setFollow(follow) {
    follow = follow && this.live;
    if (follow !== this.follow) {
      this.follow = follow;
      if (this.options.onFollowChange) this.options.onFollowChange(follow);
    }
    if (follow) this.scrollToEnd();
  }

  /** Highlights the lines `from`..`to` (the `#L` selection), or none. */
  select(range) {
    this.selection = range;
    this.refreshClasses();
  }

  /** Marks one line as the current search match, and the query's text in every row. */
  setSearch(query, currentSeq) {
    const queryChanged = query !== this.query;
    this.query = query;
    this.current = currentSeq;
    if (queryChanged) this.rerenderAll();
    else this.refreshClasses();
  }

  // --- geometry ---

  virtualHeight() {
    return this.total * this.rowHeight;
  }

  physicalHeight() {
    return Math.min(this.virtualHeight(), MAX_PX);
  }

  /** Virtual px per physical px of scrolling (1 unless the log is taller than MAX_PX). */
  scale() {
    const view = this.scroller.clientHeight;
    const virtual = this.virtualHeight();
    const physical = this.physicalHeight();
    if (virtual <= physical || physical <= view) return 1;
    return (virtual - view) / (physical - view);
  }

  /** Scrolls so that line `seq` is in the middle of the view. */
  scrollToLine(seq) {
    this.setFollow(false);
    this.render();
    const view = this.scroller.clientHeight;
    const virtualTop = (seq - 1) * this.rowHeight - view / 2 + this.rowHeight / 2;
    this.scroller.scrollTop = Math.max(0, virtualTop / this.scale());
    this.render();
  }

  scrollToStart() {
    this.setFollow(false);
    this.scroller.scrollTop = 0;
    this.render();
  }

  scrollToEnd() {
    this.render();
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.render();
  }

  atEnd() {
    const s = this.scroller;
    return s.scrollTop + s.clientHeight >= s.scrollHeight - this.rowHeight;
  }

  onScroll() {
    if (this.live) {
      // Scrolling up stops following; scrolling back to the end resumes it.
      const atEnd = this.atEnd();
      if (atEnd !== this.follow) this.setFollow(atEnd);
    }
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Lines `[first, last]` (1-based, inclusive) that are on screen. */
  visibleRange() {
    const view = this.scroller.clientHeight;
    const virtualTop = this.scroller.scrollTop * this.scale();
    const first = Math.max(1, Math.floor(virtualTop / this.rowHeight) + 1);
    const last = Math.min(this.total, Math.ceil((virtualTop + view) / this.rowHeight));
    return [first, last];
  }

  // --- rendering ---

  render() {
    const spacerHeight = `${this.physicalHeight()}px`;
    if (this.spacer.style.height !== spacerHeight) this.spacer.style.height = spacerHeight;
    if (this.follow && !this.atEnd()) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
    }
    if (this.total === 0) {
      this.clearRows();
      return;
    }
    const scale = this.scale();
    const scrollTop = this.scroller.scrollTop;
    const virtualTop = scrollTop * scale;
    const [first, last] = this.visibleRange();
    const from = Math.max(1, first - OVERSCAN);
    const to = Math.min(this.total, last + OVERSCAN);
    // Row `from` sits where it would in the virtual log, relative to the viewport's top.
    const top = scrollTop - (virtualTop - (from - 1) * this.rowHeight);
    this.rows.style.transform = `translateY(${top}px)`;
    this.placeRows(from, to);
    this.request(from, to, first, last);
    this.noteMarks(first, last);
    if (this.options.onRender) this.options.onRender(first, last);
  }

  clearRows() {
    this.rows.replaceChildren();
    this.rendered.clear();
    this.renderedRange = null;
  }

  /** Makes the rows `from..to` the DOM's, keeping rows that are already there (and any text
   * selection in them). */
  placeRows(from, to) {
    const old = this.renderedRange;
    if (!old || old[1] < from || old[0] > to) {
      this.clearRows();
      for (let seq = from; seq <= to; seq++) this.rows.appendChild(this.makeRow(seq));
      this.renderedRange = [from, to];
      return;
    }
    for (let seq = old[0]; seq < from; seq++) this.dropRow(seq);
    for (let seq = to + 1; seq <= old[1]; seq++) this.dropRow(seq);
    for (let seq = Math.max(old[0], from); seq <= Math.min(old[1], to); seq++) {
      const row = this.rendered.get(seq);
      if (row.dataset.loaded !== '1' && this.line(seq) !== undefined) {
        row.replaceWith(this.makeRow(seq));
      }
    }
    for (let seq = Math.max(old[0], from) - 1; seq >= from; seq--) {
      this.rows.insertBefore(this.makeRow(seq), this.rows.firstChild);
    }
    for (let seq = Math.min(old[1], to) + 1; seq <= to; seq++) this.rows.appendChild(this.makeRow(seq));
    this.renderedRange = [from, to];
  }

  dropRow(seq) {
    const row = this.rendered.get(seq);
    if (row) row.remove();
    this.rendered.delete(seq);
  }

  makeRow(seq) {
    const text = this.line(seq);
    const row = document.createElement('div');
    row.className = 'log-row';
    row.dataset.seq = seq;
    const number = document.createElement('a');
    number.className = 'log-no';
    number.href = `#L${seq}`;
    number.textContent = seq;
    const body = document.createElement('span');
    body.className = 'log-text';
    if (text === undefined) {
      row.dataset.loaded = '0';
      body.classList.add('log-pending');
      body.textContent = '…';
    } else {
      row.dataset.loaded = '1';
      renderAnsi(body, text, this.query);
    }
    const copy = document.createElement('button');
    copy.className = 'log-copy';
    copy.type = 'button';
    copy.title = 'Copy this line';
    copy.textContent = 'copy';
    row.append(number, body, copy);
    this.classify(row, seq);
    this.rendered.set(seq, row);
    return row;
  }

  classify(row, seq) {
    const s = this.selection;
    row.classList.toggle('selected', !!s && seq >= s.from && seq <= s.to);
    row.classList.toggle('current-match', seq === this.current);
  }

  refreshClasses() {
    for (const [seq, row] of this.rendered) this.classify(row, seq);
  }

  rerenderAll() {
    this.clearRows();
    this.render();
  }

  /** Records when the first and the last line were first on screen with their text (for the
   * page's first-paint figures: `performance.getEntriesByName('ci:first-line')`). */
  noteMarks(first, last) {
    if (!this.marks.first && first === 1 && this.line(1) !== undefined) {
      this.marks.first = true;
      performance.mark('ci:first-line');
    }
    if (!this.marks.last && !this.live && this.total > 0 && last === this.total && this.line(this.total) !== undefined) {
      this.marks.last = true;
      performance.mark('ci:last-line');
    }
  }

  // --- fetching ---

  /** Asks for the chunks that hold `from..to`, those on screen (`first..last`) first. */
  request(from, to, first, last) {
    const now = Date.now();
    const wanted = [];
    const want = (index) => {
      if (wanted.includes(index)) return;
      const chunk = this.chunks.get(index);
      if (chunk) chunk.used = now;
      if (chunk && (chunk.loading || now - chunk.shortAt < RETRY_MS)) return;
      if (chunk && this.complete(index, chunk)) return;
      wanted.push(index);
    };
    const chunkOf = (seq) => Math.floor((seq - 1) / CHUNK);
    for (let i = chunkOf(first); i <= chunkOf(last); i++) want(i);
    for (let i = chunkOf(from); i <= chunkOf(to); i++) want(i);
    this.wanted = wanted;
    this.pump();
  }

  /** Whether every line of the chunk up to the end of the log is there. */
  complete(index, chunk) {
    const start = index * CHUNK + 1;
    const end = Math.min(start + CHUNK - 1, this.total);
    for (let seq = start; seq <= end; seq++) {
      if (chunk.lines[seq - start] === undefined) return false;
    }
    return true;
  }

  pump() {
    while (this.inflight < MAX_INFLIGHT && this.wanted.length) {
      const index = this.wanted.shift();
      this.load(index);
    }
  }

  async load(index) {
    let chunk = this.chunks.get(index);
    if (!chunk) {
      chunk = { lines: new Array(CHUNK), loading: false, shortAt: 0, used: Date.now() };
      this.chunks.set(index, chunk);
    }
    chunk.loading = true;
    this.inflight += 1;
    const start = index * CHUNK + 1;
    const end = Math.min(start + CHUNK - 1, this.total);
    try {
      const lines = await this.options.fetchLines(start, end);
      lines.forEach((text, i) => {
        chunk.lines[i] = text;
      });
      if (start + lines.length - 1 < end) chunk.shortAt = Date.now();
    } catch (err) {
      chunk.shortAt = Date.now();
      if (this.options.onError) this.options.onError(err);
    } finally {
      chunk.loading = false;
      this.inflight -= 1;
    }
    this.evict();
    this.schedule();
    this.pump();
  }

  /** Forgets the least recently used chunks past MAX_CHUNKS. */
  evict() {
    if (this.chunks.size <= MAX_CHUNKS) return;
    const idle = [...this.chunks.entries()]
      .filter(([, chunk]) => !chunk.loading)
      .sort(([, a], [, b]) => a.used - b.used);
    for (const [index] of idle.slice(0, this.chunks.size - MAX_CHUNKS)) this.chunks.delete(index);
  }

  // --- clicks ---

  onClick(event) {
    const row = event.target.closest('.log-row');
    if (!row) return;
    const seq = Number(row.dataset.seq);
    if (event.target.closest('.log-copy')) {
      event.preventDefault();
      if (this.options.onCopyLine) this.options.onCopyLine(seq, plainText(this.line(seq) || ''));
      return;
    }
    if (event.target.closest('.log-no')) {
      event.preventDefault();
      let range = { from: seq, to: seq };
      if (event.shiftKey && this.selection) {
        const anchor = this.selection.from;
        range = { from: Math.min(anchor, seq), to: Math.max(anchor, seq) };
      }
      this.select(range);
      if (this.options.onSelect) this.options.onSelect(range);
    }
  }
}
