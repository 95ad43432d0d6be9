// TokenStrip: tokens as text (visible whitespace) on a background shaded by a per-token value, with a legend
// (label, range, unit) and hover (position, id, token, value). Rows: one line of tokens per row (e.g. one per
// decoding strategy); categorical rows colour by category instead, with the category names in the legend.
// A click on a token triggers 'token' {position} (the shared selection's positions).
function hsStrip() {
  const root = element.querySelector('.hs-root') || element;
  const v = props.value;
  root.replaceChildren();
  const rows = v && typeof v === 'object' ? (Array.isArray(v.rows) ? v.rows : (Array.isArray(v.tokens) ? [v] : [])) : [];
  if (!rows.length) {
    root.appendChild(HS.el('div', { class: 'hs-empty' }, (v && v.empty) || 'Run the view to fill this strip.'));
    return;
  }
  const scale = v.scale || 'oranges', lo = v.vmin ?? 0, hi = v.vmax ?? 1, unit = v.unit || '', digits = v.digits ?? 2;
  const cats = v.categories || null;  // {name: "#rrggbb"}
  if (v.title) root.appendChild(HS.el('div', { class: 'hs-title' }, v.title));
  const legend = HS.el('div', { class: 'hs-legend-row' });
  if (cats) {
    for (const [name, col] of Object.entries(cats)) {
      const sw = HS.el('span', { class: 'hs-swatch' }, name);
      sw.style.background = col; sw.style.color = HS.ink(col.startsWith('#') ? hexToRgb(col) : col);
      legend.appendChild(sw);
    }
  } else {
    legend.appendChild(HS.legendBar(scale, lo, hi, v.label || 'value', unit, digits));
  }
  root.appendChild(legend);
  const tip = HS.tip(root);
  const chosen = new Set(v.positions || []);
  const lines = [];
  for (const row of rows) {
    const line = HS.el('div', { class: 'hs-strip' });
    if (row.label) line.appendChild(HS.el('span', { class: 'hs-strip-label' }, row.label));
    const toks = row.tokens || [], vals = row.values || [], rc = row.cats || [], ids = row.ids || [];
    const notes = row.notes || [];
    const offset = row.offset || 0;
    const drawn = [];
    toks.forEach((t, i) => {
      const val = vals[i], cat = rc[i];
      const bg = cats ? (cats[cat] || '#eeeeee') : HS.color(scale, val, lo, hi);
      const s = HS.el('span', { class: 'hs-tok' + (chosen.has(i + offset) ? ' hs-chosen' : ''), 'data-pos': i + offset }, HS.showToken(t));
      s.style.background = bg; s.style.color = HS.ink(bg.startsWith('#') ? hexToRgb(bg) : bg);
      if (row.marks && row.marks[i]) s.classList.add('hs-mark');
      s.addEventListener('mousemove', (ev) => {
        const out = [`position ${i + offset} · id ${ids[i] ?? '?'} · “${HS.showToken(t)}”`];
        if (cats) out.push(String(cat ?? ''));
        else out.push(`${v.label || 'value'}: ${HS.fmt(val, digits)} ${unit}`.trim());
        if (notes[i]) out.push(...String(notes[i]).split('\n'));  // one hover line per note line
        tip.show(out, ev.clientX, ev.clientY);
      });
      s.addEventListener('mouseleave', () => tip.hide());
      if (v.clickable !== false) s.addEventListener('click', () => trigger('token', { position: i + offset }));
      line.appendChild(s);
      drawn.push([HS.showToken(t), bg]);
    });
    lines.push([row.label || '', drawn]);
    root.appendChild(line);
  }
  const name = HS.safeName(v.filename || v.title || 'tokens');
  root.appendChild(HS.toolbar([
    ['SVG', 'download these tokens as SVG', () => HS.download(`${name}.svg`, HS.svgBlob(asSvg(lines)))],
    ['PNG', 'download these tokens as PNG', () => HS.svgToPng(asSvg(lines), `${name}.png`)],
  ]));
  if (v.caption) root.appendChild(HS.el('div', { class: 'hs-caption' }, v.caption));

  function hexToRgb(h) {
    const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(h);
    return m ? `rgb(${parseInt(m[1], 16)},${parseInt(m[2], 16)},${parseInt(m[3], 16)})` : 'rgb(238,238,238)';
  }
  function asSvg(lines) {  // the strip as SVG, wrapped at 900 px, measured with the same font
    const g = document.createElement('canvas').getContext('2d');
    g.font = '13px monospace';
    const W = 900, lh = 22, labelW = 120;
    const items = [];
    let y = 20;
    for (const [label, drawn] of lines) {
      let x = labelW;
      items.push(['label', label, 4, y]);
      for (const [t, bg] of drawn) {
        const w = g.measureText(t).width + 4;
        if (x + w > W) { x = labelW; y += lh; }
        items.push(['tok', t, x, y, w, bg]);
        x += w + 1;
      }
      y += lh + 6;
    }
    const svg = HS.svgEl('svg', { width: W, height: y + 10, 'font-family': 'monospace', 'font-size': 13 });
    svg.appendChild(HS.svgEl('rect', { x: 0, y: 0, width: W, height: y + 10, fill: '#fff' }));
    for (const it of items) {
      if (it[0] === 'label') { svg.appendChild(HS.svgEl('text', { x: it[2], y: it[3], 'font-family': 'sans-serif', 'font-weight': 'bold' }, it[1])); continue; }
      const [, t, x, yy, w, bg] = it;
      svg.appendChild(HS.svgEl('rect', { x, y: yy - 14, width: w, height: 19, fill: bg }));
      svg.appendChild(HS.svgEl('text', { x: x + 2, y: yy, fill: HS.ink(bg.startsWith('#') ? hexToRgb(bg) : bg), 'xml:space': 'preserve' }, t));
    }
    return svg;
  }
}
hsStrip();
watch('value', hsStrip);
