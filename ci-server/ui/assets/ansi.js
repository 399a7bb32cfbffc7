// ANSI SGR colours (what pytest --color=yes and most tools print) as styled spans. The text
// only ever becomes text nodes: nothing in a log line is parsed as HTML.

// CSI sequences (SGR `m` and any other, which are dropped), OSC strings and other escapes.
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[([0-9;:?]*)([\x20-\x2f]*[\x40-\x7e])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[\x40-\x5f]?/g;

/** A fresh (default) style. */
function plainStyle() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false };
}

/** The 256-colour palette's colour `n` as CSS (16–255; 0–15 are classes). */
function color256(n) {
  if (n < 16) return n;
  if (n < 232) {
    const i = n - 16;
    const steps = [0, 95, 135, 175, 215, 255];
    return `rgb(${steps[Math.floor(i / 36)]},${steps[Math.floor(i / 6) % 6]},${steps[i % 6]})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey},${grey},${grey})`;
}

/** Applies one SGR parameter list (`1;31`, `38;5;208`, `38;2;1;2;3`) to `style`. */
function applySgr(style, params) {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((p) => (p === '' ? 0 : Number(p)));
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(style, plainStyle());
    else if (c === 1) style.bold = true;
    else if (c === 2) style.dim = true;
    else if (c === 3) style.italic = true;
    else if (c === 4) style.underline = true;
    else if (c === 7) style.inverse = true;
    else if (c === 9) style.strike = true;
    else if (c === 22) { style.bold = false; style.dim = false; }
    else if (c === 23) style.italic = false;
    else if (c === 24) style.underline = false;
    else if (c === 27) style.inverse = false;
    else if (c === 29) style.strike = false;
    else if (c >= 30 && c <= 37) style.fg = c - 30;
    else if (c === 39) style.fg = null;
    else if (c >= 40 && c <= 47) style.bg = c - 40;
    else if (c === 49) style.bg = null;
    else if (c >= 90 && c <= 97) style.fg = c - 90 + 8;
    else if (c >= 100 && c <= 107) style.bg = c - 100 + 8;
    else if (c === 38 || c === 48) {
      let value = null;
      if (codes[i + 1] === 5 && i + 2 < codes.length) {
        value = color256(codes[i + 2] & 255);
        i += 2;
      } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
        const [r, g, b] = codes.slice(i + 2, i + 5).map((v) => Math.min(255, v));
        value = `rgb(${r},${g},${b})`;
        i += 4;
      } else {
        break;
      }
      if (c === 38) style.fg = value;
      else style.bg = value;
    }
  }
}

/**
 * Splits a line into `{text, style}` segments and its plain text (escapes removed). A carriage
 * return keeps what a terminal would show last (progress bars).
 */
export function parseAnsi(line) {
  if (line.includes('\r')) {
    const parts = line.split('\r').filter((p) => p !== '');
    line = parts.length ? parts[parts.length - 1] : '';
  }
  const segments = [];
  let style = plainStyle();
  let plain = '';
  let last = 0;
  if (!line.includes('\x1b')) {
    return { plain: line, segments: line ? [{ text: line, style }] : [] };
  }
  ESCAPES.lastIndex = 0;
  let match;
  while ((match = ESCAPES.exec(line)) !== null) {
    if (match.index > last) {
      const text = line.slice(last, match.index);
      segments.push({ text, style: { ...style } });
      plain += text;
    }
    if (match[2] === 'm') {
      applySgr(style, match[1]);
    }
    last = ESCAPES.lastIndex;
    if (match[0] === '') ESCAPES.lastIndex += 1;
  }
  if (last < line.length) {
    const text = line.slice(last);
    segments.push({ text, style: { ...style } });
    plain += text;
  }
  return { plain, segments };
}

/** The plain text of a line (what is copied and searched for on screen). */
export function plainText(line) {
  return parseAnsi(line).plain;
}

function styleSpan(style) {
  let fg = style.fg;
  let bg = style.bg;
  const classes = [];
  if (style.inverse) {
    [fg, bg] = [bg, fg];
    if (fg === null) classes.push('ansi-inv-fg');
    if (bg === null) classes.push('ansi-inv-bg');
  }
  const span = document.createElement('span');
  if (typeof fg === 'number') classes.push(`ansi-fg-${fg}`);
  else if (fg) span.style.color = fg;
  if (typeof bg === 'number') classes.push(`ansi-bg-${bg}`);
  else if (bg) span.style.backgroundColor = bg;
  if (style.bold) classes.push('ansi-bold');
  if (style.dim) classes.push('ansi-dim');
  if (style.italic) classes.push('ansi-italic');
  if (style.underline) classes.push('ansi-underline');
  if (style.strike) classes.push('ansi-strike');
  if (classes.length === 0 && !span.style.cssText) return null;
  span.className = classes.join(' ');
  return span;
}

/**
 * Appends the line to `parent` as text nodes and styled spans; the parts of the plain text that
 * match `query` (case-insensitive) are wrapped in `<mark>`.
 */
export function renderAnsi(parent, line, query) {
  const { plain, segments } = parseAnsi(line);
  const marks = [];
  if (query) {
    const haystack = plain.toLowerCase();
    const needle = query.toLowerCase();
    let at = haystack.indexOf(needle);
    while (at !== -1 && needle) {
      marks.push([at, at + needle.length]);
      at = haystack.indexOf(needle, at + needle.length);
    }
  }
  let offset = 0;
  for (const segment of segments) {
    const span = styleSpan(segment.style);
    const target = span || parent;
    appendMarked(target, segment.text, offset, marks);
    offset += segment.text.length;
    if (span) parent.appendChild(span);
  }
}

/** Appends `text` (which starts at `offset` of the plain line), marking the `marks` ranges. */
function appendMarked(target, text, offset, marks) {
  let pos = 0;
  for (const [start, end] of marks) {
    const from = Math.max(start - offset, pos);
    const to = Math.min(end - offset, text.length);
    if (to <= from) continue;
    if (from > pos) target.appendChild(document.createTextNode(text.slice(pos, from)));
    const mark = document.createElement('mark');
    mark.textContent = text.slice(from, to);
    target.appendChild(mark);
    pos = to;
  }
  if (pos < text.length) target.appendChild(document.createTextNode(text.slice(pos)));
}
