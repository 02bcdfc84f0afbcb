/* scrying's offline attribution-graph viewer: one page, one embedded graph, no network.
 *
 * Phases: read the embedded graph (circuit-tracer's JSON, plus scrying's records) -> prune it at
 * the sliders' thresholds with the rule of scrying/attribution/influence.py (circuit-tracer's) ->
 * lay the kept nodes out (prompt positions across, layers upwards) -> draw edges on a canvas and
 * nodes as SVG -> answer clicks, hovers, pins and supernodes; the view state (qParams) lives in
 * the URL fragment. Every string from the graph reaches the page through textContent, never as
 * markup. */
(function () {
  'use strict';
  var SVGNS = 'http://www.w3.org/2000/svg';
  var POS = '#1f77b4', NEG = '#d62728';
  var COLORS = {embedding: '#7f7f7f', feature: '#2ca02c', error: '#bcbd22', component: '#9467bd', logit: '#d62728'};

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = tag.indexOf('svg:') === 0 ? document.createElementNS(SVGNS, tag.slice(4)) : document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x, digits) { return x === null || x === undefined ? '\u2014' : (+x).toPrecision(digits || 3); }

  // ---- 1. the graph -------------------------------------------------------------------------
  var data = JSON.parse($('scrying-graph').textContent);
  var view = JSON.parse($('scrying-view').textContent);
  var own = data.scrying || null;
  var KIND_OF_TYPE = {'embedding': 'embedding', 'logit': 'logit', 'mlp reconstruction error': 'error'};
  var nodes = data.nodes.map(function (d, i) {
    var s = own ? own.nodes[i] : null;
    var kind = s ? s.kind : (KIND_OF_TYPE[d.feature_type] || 'feature');
    var layer = s ? s.layer : (d.layer === 'E' ? -1 : +d.layer);
    var column = s ? (s.column !== null && s.column !== undefined ? s.column : s.pos) : d.ctx_idx;
    return {
      i: i, id: d.node_id, kind: kind, layer: layer, column: column, pos: d.ctx_idx,
      label: (s && s.label) || d.clerp || d.node_id, activation: d.activation,
      storedInfluence: s ? s.influence : d.influence, prob: d.token_prob || 0, isTarget: !!d.is_target_logit,
      details: s ? s.details : '', index: s ? s.feature : d.feature,
      summed: !!(s && s.pos < 0)
    };
  });
  var N = nodes.length;
  var byId = {};
  nodes.forEach(function (n) { byId[n.id] = n; });
  var E = data.links.length;
  var src = new Int32Array(E), tgt = new Int32Array(E), w = new Float64Array(E);
  data.links.forEach(function (l, e) { src[e] = byId[l.source].i; tgt[e] = byId[l.target].i; w[e] = +l.weight; });
  var inEdges = [], outEdges = [];
  for (var i = 0; i < N; i++) { inEdges.push([]); outEdges.push([]); }
  for (var e = 0; e < E; e++) { inEdges[tgt[e]].push(e); outEdges[src[e]].push(e); }
  var logitWeight = new Float64Array(N);
  nodes.forEach(function (n) { if (n.kind === 'logit') logitWeight[n.i] = n.prob; });
  var checks = $('scrying-checks') ? JSON.parse($('scrying-checks').textContent) : null;
  var isComponents = nodes.some(function (n) { return n.kind === 'component'; });
  var basis = (own && own.metadata && own.metadata.basis) || '';
  // one colour meaning on every page: blue helps (excites), red works against (inhibits). A
  // component (EAP-IG) edge's score is the metric's change when it alone is corrupted, so there a
  // negative score is the edge that helps the answer.
  var SIGN = isComponents ? -1 : 1;
  function edgeColor(weight) { return SIGN * weight > 0 ? POS : NEG; }
  var xLabels = (own && own.metadata && own.metadata.x_labels) || (own ? own.prompt_tokens : data.metadata.prompt_tokens);
  var xTokens = own ? own.prompt_tokens : data.metadata.prompt_tokens;  // the prompt, for a head card's pattern
  var maxLayer = Math.max.apply(null, nodes.map(function (n) { return n.layer; }).concat([0]));

  // ---- 2. pruning: scrying/attribution/influence.py, edge by edge -----------------------------
  function normalize(active) {  // |A| row-normalised over the active edges
    var rowSum = new Float64Array(N), out = new Float64Array(E);
    for (var e = 0; e < E; e++) if (active[e]) rowSum[tgt[e]] += Math.abs(w[e]);
    for (e = 0; e < E; e++) if (active[e]) out[e] = Math.abs(w[e]) / Math.max(rowSum[tgt[e]], 1e-10);
    return out;
  }
  function influence(norm) {  // weights (A + A^2 + ...), A acyclic
    var current = new Float64Array(N), total = new Float64Array(N), e, k;
    for (e = 0; e < E; e++) if (norm[e]) current[src[e]] += logitWeight[tgt[e]] * norm[e];
    total.set(current);
    for (var step = 0; step < 100000; step++) {
      var any = false;
      for (k = 0; k < N; k++) if (current[k] !== 0) { any = true; break; }
      if (!any) return total;
      var next = new Float64Array(N);
      for (e = 0; e < E; e++) if (norm[e] && current[tgt[e]]) next[src[e]] += current[tgt[e]] * norm[e];
      current = next;
      for (k = 0; k < N; k++) total[k] += current[k];
    }
    throw new Error('influence did not converge: is the graph cyclic?');
  }
  function threshold(scores, fraction) {  // influence.py _threshold
    var ordered = Array.prototype.slice.call(scores).sort(function (a, b) { return b - a; });
    var sum = 0, k;
    for (k = 0; k < ordered.length; k++) sum += ordered[k];
    if (!(sum > 0)) return Infinity;
    var cumulative = 0;
    for (k = 0; k < ordered.length; k++) {
      cumulative += ordered[k];
      if (cumulative / sum >= fraction) break;
    }
    return ordered[Math.min(k, ordered.length - 1)];
  }
  function prune(nodeThreshold, edgeThreshold) {
    var all = new Uint8Array(E);
    for (var e = 0; e < E; e++) all[e] = w[e] !== 0 ? 1 : 0;
    var scores = influence(normalize(all));
    var cut = threshold(scores, nodeThreshold);
    var keep = new Uint8Array(N), k;
    for (k = 0; k < N; k++) {
      var kind = nodes[k].kind;
      keep[k] = (scores[k] >= cut || kind === 'embedding' || kind === 'logit') ? 1 : 0;
    }
    var active = new Uint8Array(E);
    for (e = 0; e < E; e++) active[e] = all[e] && keep[src[e]] && keep[tgt[e]] ? 1 : 0;
    var norm = normalize(active), inf = influence(norm);
    var edgeScore = new Float64Array(E), positive = [];
    for (e = 0; e < E; e++) {
      edgeScore[e] = norm[e] * (inf[tgt[e]] + logitWeight[tgt[e]]);
      if (edgeScore[e] > 0) positive.push(edgeScore[e]);
    }
    var edgeCut = threshold(positive, edgeThreshold);
    var edgeKeep = new Uint8Array(E);
    for (e = 0; e < E; e++) edgeKeep[e] = active[e] && edgeScore[e] >= edgeCut ? 1 : 0;
    for (var changed = true; changed;) {  // drop inner nodes without outputs, features without inputs
      changed = false;
      for (e = 0; e < E; e++) if (edgeKeep[e] && !(keep[src[e]] && keep[tgt[e]])) edgeKeep[e] = 0;
      var hasOut = new Uint8Array(N), hasIn = new Uint8Array(N);
      for (e = 0; e < E; e++) if (edgeKeep[e]) { hasOut[src[e]] = 1; hasIn[tgt[e]] = 1; }
      for (k = 0; k < N; k++) {
        var kd = nodes[k].kind, inner = kd === 'feature' || kd === 'error' || kd === 'component';
        var needsIn = kd === 'feature' || kd === 'component';
        if (keep[k] && ((inner && !hasOut[k]) || (needsIn && !hasIn[k]))) { keep[k] = 0; changed = true; }
      }
    }
    var order = [];  // influence.py's cumulative fraction at each node's rank (lower = more influential)
    for (k = 0; k < N; k++) order.push(k);
    order.sort(function (a, b) { return scores[b] - scores[a] || a - b; });
    var total = 0, cumulative = new Float64Array(N), rank = new Int32Array(N), running = 0;
    for (k = 0; k < N; k++) total += scores[k];
    order.forEach(function (node, r) { running += scores[node]; cumulative[node] = running / (total > 0 ? total : 1); rank[node] = r + 1; });
    return {nodes: keep, edges: edgeKeep, influence: scores, cumulative: cumulative, rank: rank};
  }

  // ---- 2b. names a reader can paste: the CLI's spelling of a node, written from its fields ------
  function cliId(n) {
    var at = n.summed ? '' : ' @' + n.pos;
    if (n.kind === 'feature') return 'L' + n.layer + ' #' + n.index + at;
    if (n.kind === 'error') return 'L' + n.layer + ' error' + at;
    if (n.kind === 'embedding') return 'token' + at;
    return n.id;
  }
  function shellQuote(text) { return "'" + String(text).replace(/'/g, "'\\''") + "'"; }
  function command(n) {  // scrying/cli/transcoders.py: scrying intervene PROMPT --transcoders DIR --set L:I@P=V
    if (n.kind !== 'feature' || basis !== 'transcoders') return '';
    var model = (own && own.model) ? ' --model ' + shellQuote(own.model) : '';
    return 'scrying intervene ' + shellQuote(data.metadata.prompt || '') + model + ' --transcoders DIR --set ' +
      n.layer + ':' + n.index + (n.summed ? '' : '@' + n.pos) + '=0';
  }

  // ---- 3. state: circuit-tracer's qParams, kept in the URL fragment ---------------------------
  var state = {
    pinnedIds: [], supernodes: [], clickedId: '', linkType: 'both', sg_pos: '',
    pruningThreshold: view.node_threshold, edgeThreshold: view.edge_threshold
  };
  function applyQParams(q) {
    if (!q) return;
    if (q.pinnedIds !== undefined) state.pinnedIds = (typeof q.pinnedIds === 'string' ? q.pinnedIds.split(',') : q.pinnedIds).filter(function (id) { return id && byId[id]; });
    if (q.supernodes !== undefined) state.supernodes = (typeof q.supernodes === 'string' ? JSON.parse(q.supernodes) : q.supernodes)
      .filter(function (g) { return Array.isArray(g) && g.length > 1; })
      .map(function (g) { return [String(g[0])].concat(g.slice(1).filter(function (id) { return byId[id]; })); });
    if (q.clickedId !== undefined) state.clickedId = byId[q.clickedId] ? q.clickedId : '';
    ['pruningThreshold', 'edgeThreshold'].forEach(function (key) {
      var v = parseFloat(q[key]);
      if (q[key] !== undefined && q[key] !== null && v >= 0 && v <= 1) state[key] = v;
    });
    state.pinnedIds.forEach(function (id, k) { if (state.pinnedIds.indexOf(id) !== k) state.pinnedIds.splice(k, 1); });
  }
  function fragment() {
    var p = new URLSearchParams();
    if (state.pinnedIds.length) p.set('pinnedIds', state.pinnedIds.join(','));
    if (state.supernodes.length) p.set('supernodes', JSON.stringify(state.supernodes));
    if (state.clickedId) p.set('clickedId', state.clickedId);
    p.set('pruningThreshold', String(state.pruningThreshold));
    p.set('edgeThreshold', String(state.edgeThreshold));
    return p.toString();
  }
  // inside a notebook the page is an iframe's srcdoc, whose URL is the notebook's: no state there
  var EMBEDDED = location.href.indexOf('about:srcdoc') === 0;
  function saveState() {
    if (EMBEDDED) return;
    var hash = '#' + fragment();
    if (location.hash === hash) return;
    try { history.replaceState(null, '', hash); } catch (err) { location.replace(hash); }
  }
  function qParams() {
    return {pinnedIds: state.pinnedIds.slice(), supernodes: state.supernodes.map(function (g) { return g.slice(); }),
      linkType: state.linkType, clickedId: state.clickedId, sg_pos: state.sg_pos,
      pruningThreshold: state.pruningThreshold, edgeThreshold: state.edgeThreshold};
  }
  function readFragment() {
    if (EMBEDDED || location.hash.length <= 1) return false;
    var q = {pinnedIds: '', supernodes: '[]', clickedId: ''};  // a fragment is the whole state
    new URLSearchParams(location.hash.slice(1)).forEach(function (v, k) { q[k] = v; });
    applyQParams(q);
    return true;
  }
  applyQParams(view.state);
  var chosen = view.state && view.state.pruningThreshold !== undefined && view.state.pruningThreshold !== null;
  if (!readFragment() && !chosen && view.open_steps) openWhereFeaturesShow();
  function openWhereFeaturesShow() {  // the first step of the page's opening thresholds that shows features
    var total = nodes.filter(function (n) { return n.kind === 'feature'; }).length, want = Math.min(view.min_features, total);
    for (var k = 0; k < view.open_steps.length; k++) {
      var step = view.open_steps[k], kept = prune(step[0], step[1]), shown = 0;
      nodes.forEach(function (n) { if (n.kind === 'feature' && kept.nodes[n.i]) shown++; });
      state.pruningThreshold = step[0]; state.edgeThreshold = step[1];
      if (shown >= want) return;
    }
  }

  // ---- 4. layout: positions across, layers upwards --------------------------------------------
  var graphBox = $('graph'), canvas = $('edges'), svg = $('graph-svg');
  var M = {left: 56, right: 60, top: 70, bottom: 64};
  var layout = {x: new Float64Array(N), y: new Float64Array(N), r: new Float64Array(N)};
  var pruned = null, width = 0, height = 0;
  function rowY(layer) {
    var rows = maxLayer + 1;  // -1 .. maxLayer
    return M.top + (height - M.top - M.bottom) * (1 - (layer + 1) / rows);
  }
  function computeLayout() {
    width = Math.max(graphBox.clientWidth, 480);
    height = Math.max(420, Math.min(900, 27 * (maxLayer + 2) + M.top + M.bottom));
    var columns = Math.max(xLabels.length, 1), cells = {}, perColumn = new Float64Array(columns + 1);
    nodes.forEach(function (n) {
      if (!pruned.nodes[n.i]) return;
      var c = n.column < 0 ? columns : n.column, key = n.layer + ':' + c;
      (cells[key] = cells[key] || []).push(n);
      perColumn[c] = Math.max(perColumn[c], cells[key].length);
    });
    var extra = perColumn[columns] > 0 ? 1 : 0, share = [], total = 0, c;
    for (c = 0; c < columns + extra; c++) { share.push(1 + Math.sqrt(perColumn[c])); total += share[c]; }
    var left = [], x = M.left, span = width - M.left - M.right;
    for (c = 0; c < columns + extra; c++) { left.push(x); x += span * share[c] / total; }
    left.push(x);
    layout.columnCentre = function (c) { return (left[c] + left[c + 1]) / 2; };
    layout.columns = columns + extra;
    var maxScore = 0;
    nodes.forEach(function (n) { if (pruned.nodes[n.i] && n.kind !== 'logit') maxScore = Math.max(maxScore, pruned.influence[n.i]); });
    Object.keys(cells).forEach(function (key) {
      var members = cells[key];
      members.sort(function (a, b) { return pruned.influence[b.i] - pruned.influence[a.i]; });
      var c = members[0].column < 0 ? columns : members[0].column;
      var cellWidth = (left[c + 1] - left[c]) * 0.9, step = Math.min(16, cellWidth / members.length);
      members.forEach(function (n, rank) {
        var offset = (rank - (members.length - 1) / 2) * step;
        layout.x[n.i] = (left[c] + left[c + 1]) / 2 + offset;
        layout.y[n.i] = rowY(n.layer);
        layout.r[n.i] = n.kind === 'logit' ? 5 + 6 * Math.sqrt(n.prob)
          : 2.5 + 6 * Math.sqrt(maxScore > 0 ? pruned.influence[n.i] / maxScore : 0);
      });
    });
  }

  // ---- 5. drawing -----------------------------------------------------------------------------
  var visibleEdges = [], maxWeight = 1, dotOf = {};
  function drawEdges() {
    var ratio = window.devicePixelRatio || 1, ctx = canvas.getContext('2d');
    canvas.width = width * ratio; canvas.height = height * ratio;
    canvas.style.width = width + 'px'; canvas.style.height = height + 'px';
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var faded = !!state.clickedId, BINS = 6, bins = {};
    visibleEdges.forEach(function (e) {
      var b = Math.min(BINS - 1, Math.floor(BINS * Math.abs(w[e]) / maxWeight));
      var key = (SIGN * w[e] > 0 ? 'p' : 'n') + b;
      (bins[key] = bins[key] || []).push(e);
    });
    Object.keys(bins).forEach(function (key) {
      var b = +key.slice(1), strength = (b + 1) / BINS;
      ctx.strokeStyle = key[0] === 'p' ? POS : NEG;
      ctx.globalAlpha = faded ? 0.05 : 0.12 + 0.5 * strength;
      ctx.lineWidth = 0.4 + 3.2 * strength;
      ctx.beginPath();
      bins[key].forEach(function (e) {
        ctx.moveTo(layout.x[src[e]], layout.y[src[e]]);
        ctx.lineTo(layout.x[tgt[e]], layout.y[tgt[e]]);
      });
      ctx.stroke();
    });
    ctx.globalAlpha = 1;
  }
  function drawAxes(group) {
    for (var layer = -1; layer <= maxLayer; layer++) {
      var name = layer < 0 ? 'emb' : (layer === maxLayer ? 'logit' : 'L' + layer);
      group.appendChild(el('svg:text', {x: 8, y: rowY(layer) + 4, 'class': 'axis'}, name));
      group.appendChild(el('svg:line', {x1: M.left - 4, x2: width - M.right, y1: rowY(layer), y2: rowY(layer), 'class': 'grid'}));
    }
    for (var c = 0; c < xLabels.length; c++) {
      var t = el('svg:text', {x: layout.columnCentre(c), y: height - M.bottom + 22, 'class': 'token',
        transform: 'rotate(-30 ' + layout.columnCentre(c) + ' ' + (height - M.bottom + 22) + ')'}, xLabels[c]);
      group.appendChild(t);
    }
    nodes.forEach(function (n) {  // the outputs, with their probabilities, along the top
      if (n.kind !== 'logit' || !pruned.nodes[n.i]) return;
      var x = layout.x[n.i], y = rowY(maxLayer) - layout.r[n.i] - 4;
      if (n.isTarget) {  // the target to the left of the outputs' row, the others above it, slanted
        var leftmost = Math.min.apply(null, nodes.filter(function (m) { return m.kind === 'logit' && pruned.nodes[m.i]; })
          .map(function (m) { return layout.x[m.i] - layout.r[m.i]; }));
        group.appendChild(el('svg:text', {x: leftmost - 8, y: rowY(maxLayer) + 5, 'class': 'logit-label target'}, outputName(n)));
      } else {
        group.appendChild(el('svg:text', {x: x, y: y, transform: 'rotate(-35 ' + x + ' ' + y + ')', 'class': 'logit-label'}, outputName(n)));
      }
    });
  }
  // Labels on the most influential nodes, so the page reads without hovering: the LABELS most
  // influential features (or components) and the ERROR_LABELS most influential error nodes, each
  // at the first of a few places around its dot that overlaps no label or labelled dot (none free:
  // no label; the tooltip still has it).
  var LABELS = 10, ERROR_LABELS = 3;
  function shortLabel(n) {
    var text = n.kind === 'error' ? cliId(n)
      : (n.kind === 'feature' && basis === 'transcoders' ? 'L' + n.layer + ' #' + n.index + ' ' + n.label : n.label);
    return text.length > 36 ? text.slice(0, 35) + '\u2026' : text;
  }
  function labelled() {
    var byInfluence = function (a, b) { return pruned.influence[b.i] - pruned.influence[a.i] || a.i - b.i; };
    var shown = nodes.filter(function (n) { return pruned.nodes[n.i]; }).sort(byInfluence);
    var inner = shown.filter(function (n) { return n.kind === 'feature' || n.kind === 'component'; }).slice(0, LABELS);
    return inner.concat(shown.filter(function (n) { return n.kind === 'error'; }).slice(0, ERROR_LABELS)).sort(byInfluence);
  }
  function overlaps(a, b) { return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1; }
  function drawLabels(group) {
    var ranked = labelled();
    var taken = ranked.map(function (n) {
      var x = layout.x[n.i], y = layout.y[n.i], r = layout.r[n.i];
      return {x0: x - r, x1: x + r, y0: y - r, y1: y + r, owner: n.id};
    });
    ranked.forEach(function (n) {
      var t = el('svg:text', {'class': 'node-label', 'data-for': n.id}, shortLabel(n));
      group.appendChild(t);
      var tw = t.getComputedTextLength(), x = layout.x[n.i], y = layout.y[n.i], r = layout.r[n.i] + 2;
      var spots = [[x + r, y - r, 'start'], [x - r, y - r, 'end'], [x + r, y + r + 9, 'start'], [x - r, y + r + 9, 'end'],
        [x + r + 1, y + 4, 'start'], [x - r - 1, y + 4, 'end'], [x, y - r - 3, 'middle'], [x, y + r + 12, 'middle']];
      for (var k = 0; k < spots.length; k++) {
        var sx = spots[k][0], sy = spots[k][1], anchor = spots[k][2];
        var x0 = anchor === 'start' ? sx : (anchor === 'end' ? sx - tw : sx - tw / 2);
        var box = {x0: x0 - 1, x1: x0 + tw + 1, y0: sy - 10, y1: sy + 3, owner: n.id};
        if (box.x0 < 0 || box.x1 > width || box.y0 < 0 || box.y1 > height - M.bottom + 8) continue;
        if (taken.some(function (b) { return b.owner !== n.id && overlaps(b, box); })) continue;
        t.setAttribute('x', sx.toFixed(1)); t.setAttribute('y', sy.toFixed(1)); t.setAttribute('text-anchor', anchor);
        taken.push(box);
        return;
      }
      group.removeChild(t);
    });
  }
  function outputName(n) {
    var match = /^Output (.*) \(p=[^()]*\)$/.exec(n.label);
    return (match ? match[1] : n.label) + ' ' + (100 * n.prob).toFixed(1) + '%';
  }
  function draw() {
    pruned = prune(state.pruningThreshold, state.edgeThreshold);
    computeLayout();
    visibleEdges = [];
    maxWeight = 0;
    for (var e = 0; e < E; e++) if (pruned.edges[e]) { visibleEdges.push(e); maxWeight = Math.max(maxWeight, Math.abs(w[e])); }
    maxWeight = maxWeight || 1;
    svg.setAttribute('width', width); svg.setAttribute('height', height);
    graphBox.style.height = height + 'px';
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var axes = el('svg:g', {'class': 'axes'}), hl = el('svg:g', {id: 'highlight'}), dots = el('svg:g', {id: 'nodes'});
    drawAxes(axes);
    svg.appendChild(axes); svg.appendChild(hl); svg.appendChild(dots);
    var shown = 0;
    dotOf = {};
    // bigger dots first, so that in a crowded cell a smaller one is drawn on top, not covered
    nodes.slice().sort(function (a, b) { return (layout.r[b.i] || 0) - (layout.r[a.i] || 0) || a.i - b.i; }).forEach(function (n) {
      if (!pruned.nodes[n.i]) return;
      shown++;
      var shape = n.kind === 'embedding'
        ? el('svg:rect', {x: layout.x[n.i] - 4, y: layout.y[n.i] - 4, width: 8, height: 8})
        : el('svg:circle', {cx: layout.x[n.i], cy: layout.y[n.i], r: layout.r[n.i]});
      shape.setAttribute('class', 'node ' + n.kind + (state.pinnedIds.indexOf(n.id) >= 0 ? ' pinned' : ''));
      shape.setAttribute('fill', COLORS[n.kind] || '#555');
      shape.setAttribute('data-id', n.id);
      dots.appendChild(shape);
      dotOf[n.i] = shape;
    });
    var labels = el('svg:g', {id: 'labels'});
    svg.appendChild(labels);
    drawLabels(labels);
    shadeAgreement();
    $('counts').textContent = shown + ' of ' + N + ' nodes, ' + visibleEdges.length + ' of ' + E + ' edges';
    $('node-threshold').value = state.pruningThreshold; $('node-threshold-value').textContent = (+state.pruningThreshold).toFixed(2);
    $('edge-threshold').value = state.edgeThreshold; $('edge-threshold-value').textContent = (+state.edgeThreshold).toFixed(2);
    drawEdges();
    highlight();
    drawSubgraph();
    saveState();
  }

  // ---- 6. clicking: a node's edges, listed and highlighted ------------------------------------
  function edgesOf(i) {
    return {
      incoming: inEdges[i].filter(function (e) { return pruned.edges[e]; }).sort(function (a, b) { return Math.abs(w[b]) - Math.abs(w[a]); }),
      outgoing: outEdges[i].filter(function (e) { return pruned.edges[e]; }).sort(function (a, b) { return Math.abs(w[b]) - Math.abs(w[a]); })
    };
  }
  function unlight(dots) {
    svg.classList.remove('has-selection');
    Array.prototype.forEach.call(dots.querySelectorAll('.lit, .clicked'), function (d) { d.classList.remove('lit', 'clicked'); });
  }
  function highlight() {
    var hl = $('highlight'), dots = $('nodes');
    while (hl.firstChild) hl.removeChild(hl.firstChild);
    var clicked = state.clickedId ? byId[state.clickedId] : null;
    var panel = $('node-info');
    while (panel.firstChild) panel.removeChild(panel.firstChild);
    if (!clicked) {
      panel.appendChild(el('p', {'class': 'hint'}, 'Click a node to see its edges; shift-click (or Pin) to add it to the subgraph.'));
      unlight(dots);
      return;
    }
    var lists = edgesOf(clicked.i), linked = {};
    linked[clicked.i] = true;
    [['incoming', src], ['outgoing', tgt]].forEach(function (pair) {
      lists[pair[0]].forEach(function (e) {
        linked[pair[1][e]] = true;
        hl.appendChild(el('svg:line', {x1: layout.x[src[e]], y1: layout.y[src[e]], x2: layout.x[tgt[e]], y2: layout.y[tgt[e]],
          'class': 'hl-edge ' + pair[0], stroke: edgeColor(w[e]),
          'stroke-width': (0.8 + 4 * Math.abs(w[e]) / maxWeight).toFixed(2), 'data-weight': w[e]}));
      });
    });
    unlight(dots);  // only the lit nodes change class; the rest fade by the container's class
    svg.classList.add('has-selection');
    Object.keys(linked).forEach(function (i) { if (dotOf[i]) dotOf[i].classList.add('lit'); });
    if (dotOf[clicked.i]) dotOf[clicked.i].classList.add('clicked');
    panel.appendChild(el('h3', {}, clicked.label));
    panel.appendChild(el('p', {'class': 'where'}, describe(clicked).join(' · ')));
    var idLine = el('p', {'class': 'cli-id'}, 'id: ');
    idLine.appendChild(el('code', {id: 'node-cli-id'}, cliId(clicked)));
    panel.appendChild(idLine);
    var cmd = command(clicked);
    if (cmd) {
      var box = el('div', {'class': 'command'});
      box.appendChild(el('code', {id: 'node-command'}, cmd));
      var copy = el('button', {id: 'copy-command', type: 'button'}, 'Copy');
      copy.addEventListener('click', function () { copyText(cmd, copy); });
      box.appendChild(copy);
      box.appendChild(el('div', {'class': 'hint'}, 'Ablates it (=0) in the real model and prints the top tokens before and after; ' +
        'DIR: the transcoder directory the graph was traced with.'));
      panel.appendChild(box);
    }
    var check = checkOf(clicked);
    if (check) panel.appendChild(checkLine(check, 'node-check'));
    var card = cardOf(clicked);
    if (card) panel.appendChild(cardBox(card, clicked));
    var pin = el('button', {id: 'pin-button'}, state.pinnedIds.indexOf(clicked.id) >= 0 ? 'Unpin' : 'Pin to subgraph');
    pin.addEventListener('click', function () { togglePin(clicked.id); });
    panel.appendChild(pin);
    [['incoming', 'from', src], ['outgoing', 'to', tgt]].forEach(function (spec) {
      var list = lists[spec[0]];
      panel.appendChild(el('h4', {}, list.length + ' ' + spec[0] + ' edges'));
      var table = el('table', {id: spec[0] + '-edges', 'class': 'edge-list'});
      table.appendChild(el('tr')).append(el('th', {}, spec[1]), el('th', {}, 'weight'));
      list.forEach(function (e) {
        var other = nodes[spec[2][e]], row = el('tr', {'data-id': other.id});
        row.append(el('td', {}, other.label), el('td', {'class': SIGN * w[e] > 0 ? 'pos' : 'neg'}, fmt(w[e])));
        row.addEventListener('click', function () { click(other.id); });
        table.appendChild(row);
      });
      panel.appendChild(table);
    });
  }
  function describe(n) {
    var layerName = n.layer < 0 ? 'embedding' : (n.kind === 'logit' ? 'output' : 'layer ' + n.layer);
    var where = n.column >= 0 && n.column < xLabels.length ? xLabels[n.column] : 'all positions';
    var out = [n.kind, layerName, (n.pos >= 0 && own && own.nodes[n.i].pos < 0 ? 'summed over positions' : 'position ' + n.pos) + ' (' + where + ')'];
    if (n.activation !== null && n.activation !== undefined) out.push('activation ' + fmt(n.activation));
    if (pruned && n.kind !== 'logit') {
      var from = Math.min(1, Math.ceil(100 * pruned.cumulative[n.i] - 1e-9) / 100);
      out.push('cumulative influence ' + (+pruned.cumulative[n.i]).toFixed(3) + ' (rank ' + pruned.rank[n.i] + ' of ' + N +
        '; the node threshold keeps it from ' + from.toFixed(2) + ')');
    }
    if (n.kind === 'logit') out.push('p = ' + fmt(n.prob));
    return out;
  }
  function copyText(text, button) {
    var done = function () { button.textContent = 'Copied'; };
    if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(text).then(done, function () {});
    var range = document.createRange(), code = button.previousSibling;  // also selected, for Ctrl-C
    range.selectNodeContents(code);
    var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
  }

  // ---- 6a. the node's card: scrying.metadata.cards[id] (scrying/attribution/cards.py) ----------
  var cards = (own && own.metadata && own.metadata.cards) || {};
  function cardOf(n) {  // keyed by scrying's own node id (a component's differs from its circuit-tracer id)
    var key = own && own.nodes[n.i] ? own.nodes[n.i].node_id : n.id;
    return Object.prototype.hasOwnProperty.call(cards, key) ? cards[key] : null;
  }
  function tokenList(pairs, cls) {
    var p = el('span', {'class': 'tokens ' + cls});
    pairs.forEach(function (pair) { p.appendChild(el('span', {'class': 'tok', title: 'logit ' + fmt(pair[1])}, JSON.stringify(pair[0]))); });
    return p;
  }
  function contextLine(c) {
    var line = el('div', {'class': 'context'});
    line.appendChild(el('span', {'class': 'ctx-act'}, fmt(c.activation)));
    var top = Math.max.apply(null, c.values.concat([c.activation, 1e-12]));
    c.tokens.forEach(function (t, k) {
      var v = c.values[k], alpha = Math.max(0, Math.min(1, v / top));
      var span = el('span', {'class': k === c.at ? 'ctx-tok hot' : 'ctx-tok', title: 'activation ' + fmt(v)}, t);
      if (k !== c.at && alpha > 0) span.style.background = 'rgba(255, 127, 14, ' + (0.6 * alpha).toFixed(3) + ')';
      line.appendChild(span);
    });
    return line;
  }
  function patternGrid(rows) {
    var table = el('table', {'class': 'pattern', id: 'card-pattern'});
    var head = el('tr');
    head.appendChild(el('th', {}, 'query \u2193 key \u2192'));
    xTokens.forEach(function (t) { head.appendChild(el('th', {'class': 'key'}, t)); });
    table.appendChild(head);
    rows.forEach(function (row, q) {
      var tr = el('tr');
      tr.appendChild(el('th', {}, xTokens[q] !== undefined ? xTokens[q] : String(q)));
      row.forEach(function (v, k) {
        var td = el('td', {title: (xTokens[q] || q) + ' \u2192 ' + (xTokens[k] || k) + ': ' + fmt(v)});
        td.style.background = 'rgba(31, 119, 180, ' + Math.max(0, Math.min(1, v)).toFixed(3) + ')';
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    return table;
  }
  function cardBox(card, n) {
    var box = el('div', {'class': 'card', id: 'node-card'});
    if (n.activation !== null && n.activation !== undefined) box.appendChild(el('p', {'class': 'here'}, 'activation here: ' + fmt(n.activation)));
    if (card.contexts && card.contexts.length) {
      box.appendChild(el('h4', {}, 'Top-activating contexts' + (card.contexts_from ? ' (' + card.contexts_from + ')' : '')));
      var list = el('div', {id: 'card-contexts'});
      card.contexts.forEach(function (c) { list.appendChild(contextLine(c)); });
      box.appendChild(list);
    } else if (n.kind === 'feature') {
      box.appendChild(el('p', {'class': 'hint'}, 'No corpus contexts stored for this feature (scrying trace --contexts FILE, or scrying transcoders label).'));
    }
    if (card.promotes) {
      var up = el('p', {id: 'card-promotes'}, 'Promotes: ');
      up.appendChild(tokenList(card.promotes, 'up'));
      box.appendChild(up);
    }
    if (card.suppresses) {
      var down = el('p', {id: 'card-suppresses'}, 'Suppresses: ');
      down.appendChild(tokenList(card.suppresses, 'down'));
      box.appendChild(down);
    }
    if (card.effect !== undefined) box.appendChild(el('p', {id: 'card-effect', 'data-effect': String(card.effect)}, 'Ablation effect: ' + fmt(card.effect) + ' (' + card.effect_of + ')'));
    if (card.pattern) {
      box.appendChild(el('h4', {}, 'Attention pattern on this prompt'));
      box.appendChild(patternGrid(card.pattern));
    }
    return box;
  }

  // ---- 6b. validation by intervention, per node: scrying.metadata.validation's headline rows ----
  function checkOf(n) { return checks && checks.rows[n.id] ? checks.rows[n.id] : null; }
  function agreement(row) {  // the graph's prediction against the real model's measurement
    var p = row[0], r = row[2];
    if (p === null || r === null || p === undefined || r === undefined) return '';
    if (p * r < 0) return 'opposite';
    var ratio = Math.abs(p) / Math.max(Math.abs(r), 1e-12);
    return ratio >= 0.5 && ratio <= 2 ? 'agree' : 'size';
  }
  var AGREEMENT = {agree: 'same sign, within a factor of 2', size: 'same sign, size off by more than 2\u00d7',
    opposite: 'opposite sign'};
  function checkLine(row, id) {
    var p = el('p', {'class': 'check', id: id, 'data-graph': String(row[0]), 'data-frozen': String(row[1]), 'data-real': String(row[2])});
    p.appendChild(el('b', {}, 'graph predicts ' + fmt(row[0]) + ' \u00b7 frozen model ' + fmt(row[1]) + ' \u00b7 real model ' + fmt(row[2])));
    var a = agreement(row);
    p.appendChild(el('span', {}, ' (' + checks.report + '; ' + checks.target + (a ? '; graph vs real: ' + AGREEMENT[a] : '') + ')'));
    return p;
  }
  function shadeAgreement() {
    var on = $('shade-agreement') && $('shade-agreement').checked;
    nodes.forEach(function (n) {
      var dot = dotOf[n.i], row = checkOf(n);
      if (!dot) return;
      ['agree', 'size', 'opposite'].forEach(function (c) { dot.classList.remove('check-' + c); });
      if (on && row && agreement(row)) dot.classList.add('check-' + agreement(row));
    });
  }
  if ($('shade-agreement')) $('shade-agreement').addEventListener('change', shadeAgreement);

  function click(id) {
    state.clickedId = state.clickedId === id ? '' : id;
    drawEdges();
    highlight();
    saveState();
  }
  function togglePin(id) {
    var k = state.pinnedIds.indexOf(id);
    if (k >= 0) {
      state.pinnedIds.splice(k, 1);
      state.supernodes = state.supernodes.map(function (g) { return g.filter(function (m, j) { return j === 0 || m !== id; }); })
        .filter(function (g) { return g.length > 1; });
    } else state.pinnedIds.push(id);
    draw();
  }
  svg.addEventListener('click', function (ev) {
    var id = ev.target.getAttribute && ev.target.getAttribute('data-id');
    if (!id) { if (state.clickedId) click(state.clickedId); return; }
    if (ev.shiftKey || ev.ctrlKey || ev.metaKey) togglePin(id); else click(id);
  });

  // ---- 7. hovering ----------------------------------------------------------------------------
  var tip = $('tooltip');
  function showTip(n, ev) {
    while (tip.firstChild) tip.removeChild(tip.firstChild);
    tip.appendChild(el('b', {}, n.label));
    describe(n).forEach(function (line) { tip.appendChild(el('div', {}, line)); });
    tip.appendChild(el('div', {'class': 'cli-id'}, 'id: ' + cliId(n)));
    if (checkOf(n)) tip.appendChild(checkLine(checkOf(n), 'tip-check'));
    if (n.details) tip.appendChild(el('div', {'class': 'details'}, n.details));
    tip.hidden = false;
    tip.style.left = (ev.pageX + 14) + 'px'; tip.style.top = (ev.pageY + 10) + 'px';
  }
  [svg, $('subgraph-svg')].forEach(function (s) {
    s.addEventListener('mouseover', function (ev) {
      var id = ev.target.getAttribute && ev.target.getAttribute('data-id');
      if (id && byId[id]) showTip(byId[id], ev);
    });
    s.addEventListener('mouseout', function () { tip.hidden = true; });
  });

  // ---- 8. subgraph: pinned nodes by layer, supernodes -----------------------------------------
  var selected = {};
  function groupOf(id) {
    for (var k = 0; k < state.supernodes.length; k++) if (state.supernodes[k].indexOf(id, 1) > 0) return k;
    return -1;
  }
  function layerOf(members) {  // a supernode sits on the layer most of its members are on (ties: the highest)
    var count = {}, best = members[0].layer;
    members.forEach(function (n) { count[n.layer] = (count[n.layer] || 0) + 1; });
    Object.keys(count).forEach(function (l) { if (count[l] > count[best] || (count[l] === count[best] && +l > best)) best = +l; });
    return best;
  }
  function drawSubgraph() {
    var s = $('subgraph-svg');
    while (s.firstChild) s.removeChild(s.firstChild);
    var items = [], itemOf = {};  // an item: one pinned node, or one supernode of pinned nodes
    state.supernodes.forEach(function (g, k) {
      var members = g.slice(1).filter(function (id) { return state.pinnedIds.indexOf(id) >= 0; });
      if (!members.length) return;
      var item = {key: 'supernode-' + k, name: g[0], members: members.map(function (id) { return byId[id]; })};
      items.push(item);
      members.forEach(function (id) { itemOf[id] = item; });
    });
    state.pinnedIds.forEach(function (id) {
      if (itemOf[id]) return;
      var item = {key: id, name: byId[id].label, members: [byId[id]]};
      items.push(item); itemOf[id] = item;
    });
    $('subgraph-count').textContent = state.pinnedIds.length + ' pinned, ' + state.supernodes.length + ' supernodes';
    var W = Math.max($('subgraph-panel').clientWidth - 20, 400), rows = {};
    items.forEach(function (it) {
      it.layer = layerOf(it.members);
      it.pos = it.members.reduce(function (a, n) { return a + n.column; }, 0) / it.members.length;
      (rows[it.layer] = rows[it.layer] || []).push(it);
    });
    var layers = Object.keys(rows).map(Number).sort(function (a, b) { return b - a; });
    var H = Math.max(120, 70 * layers.length + 20);
    s.setAttribute('width', W); s.setAttribute('height', H);
    layers.forEach(function (layer, r) {
      var row = rows[layer].sort(function (a, b) { return a.pos - b.pos; });
      s.appendChild(el('svg:text', {x: 4, y: 40 + 70 * r, 'class': 'axis'}, layer < 0 ? 'emb' : (layer === maxLayer ? 'logit' : 'L' + layer)));
      var columns = Math.max(xLabels.length, 1), BOX = 160, left = 40 + BOX / 2, right = W - BOX / 2 - 4;
      row.forEach(function (it, k) {  // at its prompt position, pushed right past its neighbour's box
        var x = left + (right - left) * (Math.max(it.pos, 0) + 0.5) / columns;
        it.x = k ? Math.max(x, row[k - 1].x + BOX + 8) : x;
        it.y = 36 + 70 * r;
      });
      var over = row.length ? row[row.length - 1].x - right : 0;  // then back left if the row overflows
      for (var k = row.length - 1; k >= 0 && over > 0; k--) {
        row[k].x -= over;
        over = k ? row[k - 1].x - (row[k].x - BOX - 8) : 0;
      }
    });
    var weights = {};  // summed weights between items, over every edge of the graph
    for (var e = 0; e < E; e++) {
      var a = itemOf[nodes[src[e]].id], b = itemOf[nodes[tgt[e]].id];
      if (!a || !b || a === b) continue;
      var key = a.key + '\u0000' + b.key;
      weights[key] = (weights[key] || {a: a, b: b, w: 0});
      weights[key].w += w[e];
    }
    var links = Object.keys(weights).map(function (k) { return weights[k]; });
    var biggest = Math.max.apply(null, links.map(function (l) { return Math.abs(l.w); }).concat([1e-12]));
    links.forEach(function (l) {
      var line = el('svg:line', {x1: l.a.x, y1: l.a.y, x2: l.b.x, y2: l.b.y, 'class': 'sg-edge',
        stroke: edgeColor(l.w), 'stroke-width': (0.8 + 5 * Math.abs(l.w) / biggest).toFixed(2)});
      line.appendChild(el('svg:title', {}, l.a.name + ' \u2192 ' + l.b.name + ': ' + fmt(l.w)));
      s.appendChild(line);
    });
    items.forEach(function (it) {
      var g = el('svg:g', {'class': 'sg-item' + (it.members.length > 1 || it.key.indexOf('supernode-') === 0 ? ' supernode' : '') + (selected[it.key] ? ' selected' : ''),
        'data-key': it.key});
      var label = it.name.length > 26 ? it.name.slice(0, 25) + '\u2026' : it.name;
      g.appendChild(el('svg:rect', {x: it.x - 80, y: it.y - 16, width: 160, height: 32, rx: 6,
        fill: it.members.length > 1 ? '#fff3d6' : '#f3f3f3', 'data-id': it.members.length === 1 ? it.members[0].id : ''}));
      g.appendChild(el('svg:text', {x: it.x, y: it.y - 2, 'class': 'sg-label'}, label));
      g.appendChild(el('svg:text', {x: it.x, y: it.y + 11, 'class': 'sg-sub'},
        it.members.length > 1 || it.key.indexOf('supernode-') === 0 ? it.members.length + ' nodes' : describe(it.members[0]).slice(1, 2).join('')));
      g.addEventListener('click', function () { selected[it.key] = !selected[it.key]; drawSubgraph(); });
      s.appendChild(g);
    });
  }
  $('group').addEventListener('click', function () {
    var ids = [];
    Object.keys(selected).forEach(function (key) {
      if (!selected[key]) return;
      if (key.indexOf('supernode-') === 0) { var g = state.supernodes[+key.split('-')[1]]; if (g) ids = ids.concat(g.slice(1)); }
      else ids.push(key);
    });
    ids = ids.filter(function (id, k) { return ids.indexOf(id) === k && state.pinnedIds.indexOf(id) >= 0; });
    if (ids.length < 2) return;
    var name = $('supernode-name').value.trim() || 'supernode';
    state.supernodes = state.supernodes.map(function (g) { return g.filter(function (m, j) { return j === 0 || ids.indexOf(m) < 0; }); })
      .filter(function (g) { return g.length > 1; });
    state.supernodes.push([name].concat(ids));
    selected = {};
    drawSubgraph(); saveState();
  });
  $('ungroup').addEventListener('click', function () {
    var drop = Object.keys(selected).filter(function (k) { return selected[k] && k.indexOf('supernode-') === 0; })
      .map(function (k) { return state.supernodes[+k.split('-')[1]]; });
    state.supernodes = state.supernodes.filter(function (g) { return drop.indexOf(g) < 0; });
    selected = {};
    drawSubgraph(); saveState();
  });
  $('clear-pins').addEventListener('click', function () { state.pinnedIds = []; state.supernodes = []; selected = {}; draw(); });
  $('export-state').addEventListener('click', function () {
    var blob = new Blob([JSON.stringify({qParams: qParams()}, null, 1)], {type: 'application/json'});
    var a = el('a', {href: URL.createObjectURL(blob), download: (data.metadata.slug || 'graph') + '.state.json'});
    document.body.appendChild(a); a.click(); a.remove();
  });

  // ---- 9. sliders and start -------------------------------------------------------------------
  var pending = null;
  [['node-threshold', 'pruningThreshold'], ['edge-threshold', 'edgeThreshold']].forEach(function (pair) {
    $(pair[0]).addEventListener('input', function () {
      state[pair[1]] = parseFloat($(pair[0]).value);
      if (pending) cancelAnimationFrame(pending);
      pending = requestAnimationFrame(function () { pending = null; draw(); });
    });
  });
  window.addEventListener('resize', function () { draw(); });
  window.addEventListener('hashchange', function () { if (location.hash !== '#' + fragment() && readFragment()) draw(); });
  window.scryingViewer = {
    qParams: qParams,
    visibleNodeIds: function () { return nodes.filter(function (n) { return pruned.nodes[n.i]; }).map(function (n) { return n.id; }); },
    visibleEdgeCount: function () { return visibleEdges.length; },
    setThresholds: function (nodeThreshold, edgeThreshold) {
      state.pruningThreshold = nodeThreshold; state.edgeThreshold = edgeThreshold; draw();
    },
    labelledIds: function () { return labelled().map(function (n) { return n.id; }); },
    click: function (id) { if (byId[id] && state.clickedId !== id) click(id); },
    hasCard: function (id) { return !!(byId[id] && cardOf(byId[id])); },
    card: function (id) { return byId[id] ? cardOf(byId[id]) : null; },
    nodePosition: function (id) { return [layout.x[byId[id].i], layout.y[byId[id].i]]; }
  };
  draw();
  document.body.setAttribute('data-ready', '1');
  window.scryingReadyAt = performance.now();
})();
