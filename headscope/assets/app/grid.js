// HeadGrid: a layer × head heatmap drawn as SVG. Hover: "layer 21, head 3: 2.07 bits". Click a cell: trigger
// 'cell' {layer, head}; drag over cells: trigger 'box' {layers: [a, b], heads: [c, d]}. Selected heads are
// outlined, marked heads carry a symbol, the colour scale is the value's own (zmin/zmax), never rescaled here.
function hsGrid() {
  const root = element.querySelector('.hs-root') || element;
  const v = props.value;
  root.replaceChildren();
  if (!v || typeof v !== 'object' || !Array.isArray(v.z) || !v.z.length) {
    root.appendChild(HS.el('div', { class: 'hs-empty' }, (v && v.empty) || 'Run the view to fill this grid.'));
    return;
  }
  const z = v.z, nL = z.length, nH = z[0].length, unit = v.unit || '', digits = v.digits ?? 2;
  const scale = v.scale || 'viridis', lo = v.zmin ?? 0, hi = v.zmax ?? 1;
  const cw = Math.max(12, Math.min(40, Math.floor(480 / nH))), ch = Math.max(9, Math.min(32, Math.floor(600 / nL)));
  const left = 58, top = v.title ? 30 : 10, gridW = nH * cw, gridH = nL * ch;
  // As wide as the grid and its colour bar, or as its title, mark legend or unit when they are longer (a small
  // grid would cut them off at the SVG's edge).
  // The colour bar's labels: its ends, or the one value when every head has it (no range to read off the bar).
  const flat = v.flat !== null && v.flat !== undefined;
  const barLabels = flat ? [`all ${HS.fmt(v.flat, digits)}`] : [HS.fmt(hi, digits), HS.fmt(lo, digits)];
  const W = Math.ceil(Math.max(left + gridW + 110, left + 8 + HS.textWidth(v.title, 'bold 13px sans-serif'),
    left + 8 + HS.textWidth(v.mark_legend, '11px sans-serif'),
    left + gridW + 24 + HS.textWidth(unit, '11px sans-serif'),
    ...barLabels.map((t) => left + gridW + 40 + HS.textWidth(t, '11px sans-serif'))));
  const H = top + gridH + 46 + (v.mark_legend ? 18 : 0);
  const svg = HS.svgEl('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'hs-grid-svg',
    'font-family': 'sans-serif', 'font-size': 11 });
  svg.appendChild(HS.svgEl('rect', { x: 0, y: 0, width: W, height: H, fill: '#fff' }));
  if (v.title) svg.appendChild(HS.svgEl('text', { x: left, y: 18, 'font-size': 13, 'font-weight': 'bold' }, v.title));
  // A null cell has no value (e.g. a layer the run did not analyse): hatched, never drawn as a colour of 0.
  const hatch = `hs-hatch-${Math.random().toString(36).slice(2)}`;
  const pat = HS.svgEl('pattern', { id: hatch, width: 6, height: 6, patternUnits: 'userSpaceOnUse',
    patternTransform: 'rotate(45)' });
  pat.appendChild(HS.svgEl('rect', { width: 6, height: 6, fill: '#eee' }));
  pat.appendChild(HS.svgEl('line', { x1: 0, y1: 0, x2: 0, y2: 6, stroke: '#aaa', 'stroke-width': 2 }));
  const defs = HS.svgEl('defs', {});
  defs.appendChild(pat);
  svg.appendChild(defs);
  const cells = HS.svgEl('g', {});
  for (let l = 0; l < nL; l++) {
    for (let h = 0; h < nH; h++) {
      const missing = z[l][h] === null || z[l][h] === undefined;
      cells.appendChild(HS.svgEl('rect', { x: left + h * cw, y: top + l * ch, width: cw - 1, height: ch - 1,
        fill: missing ? `url(#${hatch})` : HS.color(scale, z[l][h], lo, hi), 'data-cell': `${l}.${h}`,
        ...(missing ? { 'data-missing': '1' } : {}) }));
    }
  }
  svg.appendChild(cells);
  const marks = v.marks || {};
  for (const [name, sym] of Object.entries(marks)) {
    const [l, h] = name.split('.').map(Number);
    if (!(l < nL && h < nH)) continue;
    const bg = HS.color(scale, z[l][h], lo, hi);
    svg.appendChild(HS.svgEl('text', { x: left + h * cw + cw / 2 - 0.5, y: top + l * ch + ch / 2 + 4,
      'text-anchor': 'middle', fill: HS.ink(bg), 'font-size': Math.min(12, ch), 'pointer-events': 'none' }, sym));
  }
  for (const name of v.selected || []) {
    const [l, h] = name.split('.').map(Number);
    if (!(l < nL && h < nH)) continue;
    svg.appendChild(HS.svgEl('rect', { x: left + h * cw - 1, y: top + l * ch - 1, width: cw + 1, height: ch + 1,
      fill: 'none', stroke: '#ff6d00', 'stroke-width': 2.5, class: 'hs-selected', 'data-head': name,
      'pointer-events': 'none' }));
  }
  // Axes: integer ticks only (a 2-layer grid shows 0 and 1, never -0.5 or 1.5).
  const yStep = Math.ceil(12 / ch), xStep = Math.ceil(16 / cw);
  for (let l = 0; l < nL; l += yStep) {
    svg.appendChild(HS.svgEl('text', { x: left - 5, y: top + l * ch + ch / 2 + 4, 'text-anchor': 'end' }, l));
  }
  for (let h = 0; h < nH; h += xStep) {
    svg.appendChild(HS.svgEl('text', { x: left + h * cw + cw / 2, y: top + gridH + 13, 'text-anchor': 'middle' }, h));
  }
  svg.appendChild(HS.svgEl('text', { x: left + gridW / 2, y: top + gridH + 28, 'text-anchor': 'middle' },
    v.x_label || 'head'));
  svg.appendChild(HS.svgEl('text', { x: 14, y: top + gridH / 2, 'text-anchor': 'middle',
    transform: `rotate(-90 14 ${top + gridH / 2})` }, v.y_label || 'layer'));
  // Colour bar with the unit.
  const cbX = left + gridW + 16, cbH = Math.max(60, Math.min(gridH, 220));
  for (let i = 0; i < 40; i++) {
    const t = 1 - i / 40;
    svg.appendChild(HS.svgEl('rect', { x: cbX, y: top + i * cbH / 40, width: 12, height: cbH / 40 + 0.5,
      fill: HS.color(scale, lo + t * (hi - lo), lo, hi) }));
  }
  if (flat) {
    svg.appendChild(HS.svgEl('text', { x: cbX + 16, y: top + cbH / 2 + 4 }, barLabels[0]));
  } else {
    svg.appendChild(HS.svgEl('text', { x: cbX + 16, y: top + 9 }, barLabels[0]));
    svg.appendChild(HS.svgEl('text', { x: cbX + 16, y: top + cbH }, barLabels[1]));
    if (scale === 'diverging') svg.appendChild(HS.svgEl('text', { x: cbX + 16, y: top + cbH / 2 + 4 }, '0'));
  }
  svg.appendChild(HS.svgEl('text', { x: cbX, y: top + cbH + 16 }, unit));
  if (v.mark_legend) {
    svg.appendChild(HS.svgEl('text', { x: left, y: H - 6, 'font-size': 11 }, v.mark_legend));
  }
  const wrap = HS.el('div', { class: 'hs-grid-wrap' });
  const name = HS.safeName(v.filename || v.title || 'head_grid');
  wrap.appendChild(HS.toolbar([
    ['SVG', 'download this grid as SVG', () => HS.download(`${name}.svg`, HS.svgBlob(svg))],
    ['PNG', 'download this grid as PNG', () => HS.svgToPng(svg, `${name}.png`)],
  ]));
  wrap.appendChild(svg);
  if (v.caption) wrap.appendChild(HS.el('div', { class: 'hs-caption' }, v.caption));
  root.appendChild(wrap);

  const tip = HS.tip(root);
  const extra = Array.isArray(v.extra) ? v.extra : [];
  const selected = new Set(v.selected || []);
  const markNames = v.mark_names || {};
  const drag = HS.svgEl('rect', { fill: 'rgba(255,109,0,0.15)', stroke: '#ff6d00', 'stroke-dasharray': '4 2',
    'pointer-events': 'none', visibility: 'hidden' });
  svg.appendChild(drag);
  function cellAt(ev) {
    const r = svg.getBoundingClientRect();
    const x = (ev.clientX - r.left) * W / r.width - left, y = (ev.clientY - r.top) * H / r.height - top;
    const h = Math.floor(x / cw), l = Math.floor(y / ch);
    return (h >= 0 && h < nH && l >= 0 && l < nL) ? [l, h] : null;
  }
  let start = null;
  svg.addEventListener('mousemove', (ev) => {
    const c = cellAt(ev);
    if (!c) { tip.hide(); return; }
    const [l, h] = c, key = `${l}.${h}`;
    // A hatched cell says why it has no value (`missing`, e.g. "not analysed") instead of "n/a".
    const none = (z[l][h] === null || z[l][h] === undefined) && v.missing;
    const lines = [none ? `layer ${l}, head ${h}: ${v.missing}` : `layer ${l}, head ${h}: ${HS.fmt(z[l][h], digits)} ${unit}`.trim()];
    for (const e of extra) {
      if (e && Array.isArray(e.z) && e.z[l]) lines.push(`${e.label}: ${HS.fmt(e.z[l][h], e.digits ?? digits)} ${e.unit || ''}`.trim());
    }
    if (marks[key]) lines.push(`${marks[key]} ${markNames[marks[key]] || ''}`.trim());
    lines.push(selected.has(key) ? 'selected (click to remove)' : 'click to select; drag to select a box');
    tip.show(lines, ev.clientX, ev.clientY);
    if (start) {
      const [l0, h0] = start;
      drag.setAttribute('x', left + Math.min(h0, h) * cw); drag.setAttribute('y', top + Math.min(l0, l) * ch);
      drag.setAttribute('width', (Math.abs(h - h0) + 1) * cw); drag.setAttribute('height', (Math.abs(l - l0) + 1) * ch);
      drag.setAttribute('visibility', 'visible');
    }
  });
  svg.addEventListener('mouseleave', () => { tip.hide(); start = null; drag.setAttribute('visibility', 'hidden'); });
  svg.addEventListener('mousedown', (ev) => { start = cellAt(ev); if (start) ev.preventDefault(); });
  svg.addEventListener('mouseup', (ev) => {
    const end = cellAt(ev), s = start;
    start = null; drag.setAttribute('visibility', 'hidden');
    if (!s || !end || v.clickable === false) return;
    if (s[0] === end[0] && s[1] === end[1]) trigger('cell', { layer: end[0], head: end[1] });
    else trigger('box', { layers: [s[0], end[0]], heads: [s[1], end[1]] });
  });
}
hsGrid();
watch('value', hsGrid);
