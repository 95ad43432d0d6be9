// Shared helpers of headscope's views (prepended to each view's js_on_load by headscope/app/views.py).
// Every piece of text from data goes through textContent, never innerHTML: view values may come from an imported
// session file, so they are data, not markup.
const HS = (() => {
  const SCALES = {
    viridis: [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
      [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]],
    blues: [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]],
    oranges: [[255, 245, 235], [253, 208, 162], [253, 141, 60], [217, 72, 1], [127, 39, 4]],
    diverging: [[5, 48, 97], [67, 147, 195], [209, 229, 240], [247, 247, 247], [253, 219, 199], [214, 96, 77],
      [103, 0, 31]],
  };
  const SVGNS = 'http://www.w3.org/2000/svg';

  function rgb(scale, t) {
    const stops = SCALES[scale] || SCALES.viridis;
    if (!Number.isFinite(t)) return [200, 200, 200];
    const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const f = x - i;
    return stops[i].map((c, k) => Math.round(c + f * (stops[i + 1][k] - c)));
  }
  function css(c) { return `rgb(${c[0]},${c[1]},${c[2]})`; }
  function color(scale, v, lo, hi) {
    if (v === null || v === undefined || !Number.isFinite(v)) return css([210, 210, 210]);
    if (scale === 'diverging') {
      const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
      return css(rgb(scale, 0.5 + v / (2 * m)));
    }
    return css(rgb(scale, hi > lo ? (v - lo) / (hi - lo) : 0));
  }
  function ink(bg) {  // black or white text on a background colour
    const m = /rgb\((\d+),(\d+),(\d+)\)/.exec(bg);
    if (!m) return '#111';
    const lum = 0.299 * m[1] + 0.587 * m[2] + 0.114 * m[3];
    return lum > 140 ? '#111' : '#fff';
  }
  // Tokens as text with visible whitespace: a space is "·", a newline "↵", a tab "⇥"; an empty token "∅"; any
  // other control character as its code ("\x1b"), as views.visible_token writes them.
  function showToken(s) {
    if (s === null || s === undefined || s === '') return '∅';
    return String(s).replace(/ /g, '·').replace(/\n/g, '↵').replace(/\t/g, '⇥').replace(/\r/g, '␍')
      .replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
  }
  function fmt(v, digits) {
    if (v === null || v === undefined || !Number.isFinite(v)) return 'n/a';
    const d = Number.isInteger(digits) ? digits : 3;
    const a = Math.abs(v);
    if (a !== 0 && (a < Math.pow(10, -d) || a >= 1e6)) return v.toExponential(2);
    return v.toFixed(d);
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'style' && typeof v === 'object') Object.assign(e.style, v);
      else e.setAttribute(k, v);
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function tip(root) {
    const t = el('div', { class: 'hs-tip', role: 'tooltip' });
    t.style.display = 'none';
    root.appendChild(t);
    return {
      node: t,
      show(lines, x, y) {
        t.replaceChildren(...[].concat(lines).map((line) => el('div', {}, line)));
        t.style.display = 'block';
        const w = t.offsetWidth, h = t.offsetHeight;
        t.style.left = `${Math.min(x + 14, window.innerWidth - w - 8)}px`;
        t.style.top = `${Math.max(4, y - h - 10)}px`;
      },
      hide() { t.style.display = 'none'; },
    };
  }
  function download(name, blob) {
    const a = el('a', { href: URL.createObjectURL(blob), download: name });
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  function svgBlob(svg) {
    const clone = svg.cloneNode(true);
    clone.setAttribute('xmlns', SVGNS);
    const text = new XMLSerializer().serializeToString(clone);
    return new Blob([text], { type: 'image/svg+xml' });
  }
  function svgToPng(svg, name) {
    const img = new Image();
    const url = URL.createObjectURL(svgBlob(svg));
    img.onload = () => {
      const scale = 2, c = document.createElement('canvas');
      c.width = svg.width.baseVal.value * scale; c.height = svg.height.baseVal.value * scale;
      const g = c.getContext('2d');
      g.fillStyle = '#fff'; g.fillRect(0, 0, c.width, c.height);
      g.drawImage(img, 0, 0, c.width, c.height);
      URL.revokeObjectURL(url);
      c.toBlob((b) => download(name, b), 'image/png');
    };
    img.src = url;
  }
  function toolbar(buttons) {
    const bar = el('div', { class: 'hs-toolbar' });
    for (const [label, title, fn] of buttons) {
      const b = el('button', { type: 'button', class: 'hs-btn', title }, label);
      b.addEventListener('click', (e) => { e.stopPropagation(); fn(); });
      bar.appendChild(b);
    }
    return bar;
  }
  function decode16(b64, n) {  // little-endian uint16 → values in [0, 1]
    const bin = atob(b64);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8)) / 65535;
    return out;
  }
  function legendBar(scale, lo, hi, label, unit, digits) {
    const box = el('div', { class: 'hs-legend' });
    box.appendChild(el('span', { class: 'hs-legend-label' }, label));
    box.appendChild(el('span', {}, fmt(lo, digits)));
    const bar = el('span', { class: 'hs-legend-bar' });
    const stops = [];
    for (let i = 0; i <= 10; i++) stops.push(color(scale, lo + (hi - lo) * i / 10, lo, hi));
    bar.style.background = `linear-gradient(to right, ${stops.join(',')})`;
    box.appendChild(bar);
    box.appendChild(el('span', {}, `${fmt(hi, digits)} ${unit || ''}`));
    return box;
  }
  // The width in px of `text` drawn in `font` (a canvas measures it; without one, an estimate that errs wide).
  let measurer = null;
  function textWidth(text, font) {
    const s = String(text || '');
    measurer = measurer || document.createElement('canvas').getContext('2d');
    if (!measurer) return s.length * 0.62 * (parseFloat(/(\d+)px/.exec(font)?.[1]) || 11);
    measurer.font = font;
    return measurer.measureText(s).width;
  }
  function safeName(s) { return String(s || 'headscope').replace(/[^A-Za-z0-9_.=-]+/g, '_').slice(0, 80); }
  return { color, ink, showToken, fmt, el, svgEl, tip, download, svgBlob, svgToPng, toolbar, decode16, legendBar,
    safeName, textWidth, SVGNS };
})();
