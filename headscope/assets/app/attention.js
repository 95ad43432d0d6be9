// AttentionView: attention patterns of one head or a small grid of heads, in three modes.
// - matrix: query (destination) rows × key (source) columns, token labels on both axes, hover per cell;
// - "attends to": hover a token to shade what it attends to (its row), circuitsvis style;
// - "attended by": hover a token to shade which later tokens attend to it (its column).
// Patterns arrive as little-endian uint16 (weight × 65535) in base64: a 256-token head is 175 kB.
function hsAttention() {
  const t0 = performance.now();
  const root = element.querySelector('.hs-root') || element;
  const v = props.value;
  root.replaceChildren();
  if (!v || typeof v !== 'object' || !Array.isArray(v.tokens) || !Array.isArray(v.heads) || !v.heads.length) {
    root.appendChild(HS.el('div', { class: 'hs-empty' }, (v && v.empty) || 'Show a pattern to fill this view.'));
    return;
  }
  const n = v.tokens.length, toks = v.tokens.map(HS.showToken), ids = v.ids || [];
  const heads = v.heads.map((h) => ({ label: h.label, a: HS.decode16(h.b64, n * n) }));
  const state = root.__hsState || (root.__hsState = { mode: v.mode || 'matrix', focus: null, locked: false });
  const top = HS.el('div', { class: 'hs-att-head' });
  if (v.title) top.appendChild(HS.el('div', { class: 'hs-title' }, v.title));
  const modes = [['matrix', 'matrix'], ['dest', 'attends to (hover a token)'], ['src', 'attended by (hover a token)']];
  const modeBar = HS.el('div', { class: 'hs-modes', role: 'radiogroup' });
  for (const [key, label] of modes) {
    const b = HS.el('button', { type: 'button', class: 'hs-btn hs-mode' + (state.mode === key ? ' hs-on' : ''),
      'data-mode': key, role: 'radio', 'aria-checked': String(state.mode === key) }, label);
    b.addEventListener('click', () => { state.mode = key; state.focus = null; state.locked = false; hsAttention(); });
    modeBar.appendChild(b);
  }
  top.appendChild(modeBar);
  root.appendChild(top);
  const tip = HS.tip(root);
  const body = HS.el('div', { class: 'hs-att-body' });
  root.appendChild(body);
  if (state.mode === 'matrix') matrix(body, heads, toks, ids, n, tip, v);
  else strips(body, heads, toks, ids, n, tip, state);
  if (v.caption) root.appendChild(HS.el('div', { class: 'hs-caption' }, v.caption));
  root.dataset.renderMs = (performance.now() - t0).toFixed(1);  // read by bench/app_views.py

  function matrix(body, heads, toks, ids, n, tip, v) {
    const size = Math.max(220, Math.min(heads.length > 1 ? 360 : 520, n * 14));
    const cell = size / n, labelW = 84, every = Math.max(1, Math.ceil(11 / cell));
    const lut = [];  // 256 colours once, not a colour lookup per pixel (65k pixels per head at 256 tokens)
    for (let i = 0; i < 256; i++) lut.push(HS.color('blues', i / 255, 0, 1).match(/\d+/g).map(Number));
    for (const head of heads) {
      const panel = HS.el('div', { class: 'hs-att-panel' });
      panel.appendChild(HS.el('div', { class: 'hs-panel-title' }, head.label));
      const box = HS.el('div', { class: 'hs-att-box', style: { width: `${labelW + size}px`, height: `${size + 70}px` } });
      const cv = HS.el('canvas', { width: n, height: n, class: 'hs-att-canvas',
        style: { left: `${labelW}px`, top: '0px', width: `${size}px`, height: `${size}px` } });
      const g = cv.getContext('2d'), img = g.createImageData(n, n);
      for (let i = 0; i < n * n; i++) {
        const c = lut[Math.round(head.a[i] * 255)];
        img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255;
      }
      g.putImageData(img, 0, 0);
      box.appendChild(cv);
      for (let i = 0; i < n; i += every) {  // query labels (rows) on the left, key labels (columns) below
        box.appendChild(HS.el('div', { class: 'hs-ylab', style: { top: `${(i + 0.5) * cell - 7}px`, width: `${labelW - 4}px` } }, `${i} ${toks[i]}`));
        box.appendChild(HS.el('div', { class: 'hs-xlab', style: { left: `${labelW + (i + 0.5) * cell - 4}px`, top: `${size + 4}px` } }, `${i} ${toks[i]}`));
      }
      cv.addEventListener('mousemove', (ev) => {
        const r = cv.getBoundingClientRect();
        const k = Math.floor((ev.clientX - r.left) / r.width * n), q = Math.floor((ev.clientY - r.top) / r.height * n);
        if (q < 0 || k < 0 || q >= n || k >= n) { tip.hide(); return; }
        tip.show([`${head.label}`, `query ${q} “${toks[q]}” → key ${k} “${toks[k]}”`,
          `attention weight ${HS.fmt(head.a[q * n + k], 3)}`, `ids ${ids[q] ?? '?'} → ${ids[k] ?? '?'}`], ev.clientX, ev.clientY);
      });
      cv.addEventListener('mouseleave', () => tip.hide());
      panel.appendChild(box);
      panel.appendChild(HS.toolbar([['PNG', 'download this pattern as PNG (one pixel per token pair)', () =>
        cv.toBlob((b) => HS.download(`${HS.safeName(v.filename || 'attention')}_${HS.safeName(head.label)}.png`, b))]]));
      body.appendChild(panel);
    }
    body.appendChild(HS.legendBar('blues', 0, 1, 'attention weight', '', 1));
    const axes = HS.el('div', { class: 'hs-caption' }, 'rows: query (destination) tokens · columns: key (source) tokens');
    body.appendChild(axes);
  }

  function strips(body, heads, toks, ids, n, tip, state) {
    const spans = [];
    const help = state.mode === 'dest'
      ? 'Hover a token: every head shades the tokens it attends to (its row). Click to lock, click again to unlock.'
      : 'Hover a token: every head shades the later tokens that attend to it (its column). Click to lock.';
    body.appendChild(HS.el('div', { class: 'hs-caption' }, help));
    for (const head of heads) {
      const row = HS.el('div', { class: 'hs-strip' });
      row.appendChild(HS.el('span', { class: 'hs-strip-label' }, head.label));
      const mine = [];
      for (let i = 0; i < n; i++) {
        const s = HS.el('span', { class: 'hs-tok', 'data-pos': i }, toks[i]);
        s.addEventListener('mouseenter', (ev) => { if (!state.locked) focus(i); describe(head, i, ev); });
        s.addEventListener('mousemove', (ev) => describe(head, i, ev));
        s.addEventListener('mouseleave', () => tip.hide());
        s.addEventListener('click', () => { state.locked = !(state.locked && state.focus === i); focus(i); });
        mine.push(s);
        row.appendChild(s);
      }
      spans.push([head, mine]);
      body.appendChild(row);
    }
    const legend = HS.el('div', { class: 'hs-legend-slot' });
    body.appendChild(legend);
    function weight(head, f, i) {
      return state.mode === 'dest' ? (i <= f ? head.a[f * n + i] : null) : (i >= f ? head.a[i * n + f] : null);
    }
    function top(h, f, k) {  // the k largest weights from (dest) or onto (src) token f, as text
      const ws = [];
      for (let i = 0; i < n; i++) { const w = weight(h, f, i); if (w !== null) ws.push([w, i]); }
      ws.sort((a, b) => b[0] - a[0]);
      return ws.slice(0, k).map(([w, i]) => `${i} “${toks[i]}” ${HS.fmt(w, 2)}`).join(', ');
    }
    function describe(head, i, ev) {
      const lines = [`position ${i} · id ${ids[i] ?? '?'} · “${toks[i]}”`];
      if (state.focus === i) {
        for (const [h] of spans.slice(0, 3)) {
          lines.push(`${h.label} ${state.mode === 'dest' ? 'attends most to' : 'is attended most by'}: ${top(h, i, 3)}`);
        }
      } else if (state.focus !== null) {
        const w = weight(head, state.focus, i);
        const f = state.focus;
        lines.push(state.mode === 'dest' ? `${head.label}: ${f} “${toks[f]}” attends here with ${HS.fmt(w, 3)}`
          : `${head.label}: this token attends to ${f} “${toks[f]}” with ${HS.fmt(w, 3)}`);
      }
      tip.show(lines, ev.clientX, ev.clientY);
    }
    function focus(f) {
      const t1 = performance.now();
      state.focus = f;
      let shownMax = 0;
      for (const [head, mine] of spans) {
        let mx = 0;
        for (let i = 0; i < n; i++) { const w = weight(head, f, i); if (w !== null && i !== f) mx = Math.max(mx, w); }
        mx = Math.max(mx, 1e-6);
        shownMax = Math.max(shownMax, mx);
        for (let i = 0; i < n; i++) {
          const w = weight(head, f, i), s = mine[i];
          s.classList.toggle('hs-focus', i === f);
          if (i === f || w === null) { s.style.background = ''; s.style.color = ''; continue; }
          const bg = HS.color('blues', w / mx, 0, 1);
          s.style.background = bg; s.style.color = HS.ink(bg);
        }
      }
      legend.replaceChildren(HS.legendBar('blues', 0, 1, 'shade: attention weight ÷ the largest in each head (0 … 1)', '', 1));
      root.dataset.focusMs = (performance.now() - t1).toFixed(1);
    }
    if (state.focus !== null && state.focus < n) focus(state.focus);
  }
}
hsAttention();
watch('value', () => { const r = element.querySelector('.hs-root') || element; if (r.__hsState) r.__hsState.focus = null; hsAttention(); });
