// swarm dashboard: polls /api/state every collection interval, keeps the plots' points
// (fetched whole from /api/history on load, then one more per state), and draws the page.
// Nothing is loaded from anywhere else, and text from the nodes is only ever set as text.
'use strict';

(function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const POLL_MIN_MS = 250;
  const PLOTTED_NODES = 8;
  // A range lane: a line of text, then the bar.
  const LANE_TEXT = 13;
  const LANE_BAR = 12;
  // Lines of the plots, one per node.
  const COLORS = ['#4c78a8', '#f58518', '#54a24b', '#b279a2', '#e45756', '#72b7b2',
    '#9d755d', '#eeca3b', '#ff9da6', '#bab0ac'];
  // Ranges: no red or orange, which mark gaps and overlaps.
  const RANGE_COLORS = ['#4c78a8', '#54a24b', '#8c6bb1', '#72b7b2', '#9d755d', '#2b8cbe',
    '#66a61e', '#7f7f7f'];

  let intervalMs = 1000;
  let lastSeq = 0;
  let history = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      node.setAttribute(name, value);
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      node.setAttribute(name, String(value));
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  // ---- formatting ----------------------------------------------------------------------------

  function fmtCount(n) {
    if (n === null || n === undefined) return '—';
    return Number(n).toLocaleString('en-US');
  }

  function fmtRate(r) {
    if (r === null || r === undefined) return '—';
    if (Math.abs(r) >= 100) return Math.round(r).toLocaleString('en-US');
    return (Math.round(r * 10) / 10).toString();
  }

  function fmtBytes(b) {
    if (b === null || b === undefined) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = Number(b);
    let unit = 0;
    while (Math.abs(value) >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    const shown = unit === 0 ? Math.round(value) : value.toFixed(value >= 100 ? 0 : 1);
    return shown + ' ' + units[unit];
  }

  // The nodes' last latency bucket is open: a p99 in it is "at least 100 ms".
  function fmtLatency(us) {
    if (us === null || us === undefined) return '—';
    if (us >= 100000) return '≥ 100 ms';
    return fmtMicros(us);
  }

  function fmtMicros(us) {
    if (us >= 1000) return (us / 1000).toFixed(us >= 10000 ? 0 : 1) + ' ms';
    return Math.round(us) + ' µs';
  }

  // Two units at most, the smaller left out when it is 0: "45 s", "12 min 3 s", "6 h".
  function fmtDuration(s) {
    if (s === null || s === undefined) return '—';
    s = Math.max(0, Math.floor(s));
    const two = (big, bigUnit, small, smallUnit) =>
      big + ' ' + bigUnit + (small ? ' ' + small + ' ' + smallUnit : '');
    if (s < 60) return s + ' s';
    if (s < 3600) return two(Math.floor(s / 60), 'min', s % 60, 's');
    if (s < 86400) return two(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'min');
    return two(Math.floor(s / 86400), 'd', Math.floor((s % 86400) / 3600), 'h');
  }

  function shortHex(hex) {
    // 0x0123456789abcdef -> 0x0123…cdef
    return hex.length === 18 ? hex.slice(0, 6) + '…' + hex.slice(14) : hex;
  }

  // ---- polling --------------------------------------------------------------------------------

  async function getJson(path) {
    const response = await fetch(path, { cache: 'no-store' });
    if (!response.ok) {
      throw new Error(path + ': HTTP ' + response.status);
    }
    return response.json();
  }

  function banner(text) {
    const node = $('banner');
    node.hidden = !text;
    node.textContent = text || '';
  }

  // Network and server trouble goes to the banner; a failure to draw is a bug and is left
  // uncaught, so that it shows in the browser's console.
  async function poll() {
    let state = null;
    try {
      state = await getJson('/api/state');
      if (state.seq > 0) {
        await updateHistory(state);
      }
      banner(state.topology_error ? 'topology file: ' + state.topology_error : '');
    } catch (err) {
      state = null;
      banner('cannot reach swarmctl dashboard (' + err.message + '); retrying');
    } finally {
      setTimeout(poll, Math.max(POLL_MIN_MS, intervalMs));
    }
    if (state !== null && state.seq > 0) {
      render(state);
    }
  }

  async function updateHistory(state) {
    intervalMs = state.interval_ms || intervalMs;
    if (history === null || state.seq > lastSeq + 1 || state.seq < lastSeq) {
      history = await getJson('/api/history');
      lastSeq = history.seq;
    } else if (state.seq === lastSeq + 1) {
      appendPoint(state.point);
      lastSeq = state.seq;
    }
  }

  function appendPoint(point) {
    const length = history.t_ms.length;
    history.t_ms.push(point.t_ms);
    history.cluster.requests_per_s.push(point.requests_per_s);
    history.cluster.p99_us.push(point.p99_us);
    for (const [addr, figures] of Object.entries(point.nodes)) {
      if (!history.nodes[addr]) {
        history.nodes[addr] = {
          requests_per_s: new Array(length).fill(null),
          p99_us: new Array(length).fill(null),
        };
      }
      history.nodes[addr].requests_per_s.push(figures[0]);
      history.nodes[addr].p99_us.push(figures[1]);
    }
    for (const [addr, series] of Object.entries(history.nodes)) {
      if (!(addr in point.nodes)) {
        series.requests_per_s.push(null);
        series.p99_us.push(null);
      }
    }
    while (history.t_ms.length > history.capacity) {
      history.t_ms.shift();
      history.cluster.requests_per_s.shift();
      history.cluster.p99_us.shift();
      for (const series of Object.values(history.nodes)) {
        series.requests_per_s.shift();
        series.p99_us.shift();
      }
    }
  }

  // ---- the page -------------------------------------------------------------------------------

  function render(state) {
    renderHeader(state);
    renderNodes(state);
    renderRanges(state);
    renderPlots(state);
    renderChannels(state);
    renderProblems(state);
  }

  function renderHeader(state) {
    const health = state.health;
    const verdict = $('verdict');
    verdict.dataset.verdict = health.verdict;
    verdict.textContent = health.healthy
      ? 'healthy'
      : 'degraded: ' + health.problems.length + ' problem' + (health.problems.length === 1 ? '' : 's');
    const counts = { up: 0, down: 0, error: 0 };
    for (const node of health.nodes) {
      counts[node.state] = (counts[node.state] || 0) + 1;
    }
    $('summary').textContent = health.nodes.length + ' nodes: ' + counts.up + ' up, ' +
      counts.down + ' down' + (counts.error ? ', ' + counts.error + ' in error' : '');
    $('topology').textContent = state.topology ? 'topology ' + state.topology : '';
    const at = new Date(state.t_ms);
    $('updated').textContent = 'updated ' + at.toLocaleTimeString('en-GB') +
      ', every ' + state.interval_ms + ' ms';
  }

  function renderNodes(state) {
    const rows = state.health.nodes.map((report, index) => {
      const view = state.nodes[index] || {};
      return nodeRow(report, view, state.t_ms);
    });
    $('nodes').tBodies[0].replaceChildren(...rows);
  }

  function nodeRow(report, view, now) {
    const rates = view.rates || null;
    const row = el('tr', { 'data-addr': report.addr, 'data-state': report.state,
      'data-kind': report.kind || '' });
    row.append(
      el('td', { class: 'addr' }, report.addr),
      el('td', {}, report.kind || '?'),
      stateCell(report.state),
      el('td', { class: 'version' }, report.version || '—'),
      el('td', { class: 'uptime' }, report.state === 'up'
        ? fmtDuration(view.uptime_s)
        : (view.down_since_ms ? 'down ' + fmtDuration((now - view.down_since_ms) / 1000) : '—')),
      el('td', { class: 'num' }, report.connections_open === null
        ? '—'
        : report.connections_open + (report.connections_max ? ' / ' + report.connections_max : '')),
      el('td', { class: 'num rate' }, rates ? fmtRate(rates.requests_per_s) : '—'),
      el('td', { class: 'num' }, rates ? fmtRate(rates.errors_per_s) : '—'),
      el('td', { class: 'num' }, rates ? fmtLatency(rates.p99_us) : '—'),
      el('td', { class: 'details' }, nodeDetails(report, view)),
    );
    return row;
  }

  function stateCell(state) {
    const cell = el('td', {});
    cell.append(el('span', { class: 'state ' + state }, state));
    return cell;
  }

  function nodeDetails(report, view) {
    if (report.error) return report.error;
    const parts = [];
    if (report.dht) {
      const dht = report.dht;
      parts.push('range ' + dht.range);
      if (dht.records !== null) parts.push(fmtCount(dht.records) + ' records');
      if (dht.redistributing) parts.push('redistributing');
      if (dht.dump_period_s) {
        parts.push('dump ' + fmtDuration(dht.last_dump_age_s) + ' old (period ' +
          fmtDuration(dht.dump_period_s) + ')');
      } else {
        parts.push('no periodic dumps of its own');
      }
    }
    if (report.queue) parts.push('fullest channel ' + report.queue.fill_percent + '%');
    if (report.logfiles) {
      const logs = report.logfiles;
      if (logs.bytes !== null) parts.push(fmtBytes(logs.bytes) + ' of buckets');
      if (logs.disk_size_bytes) {
        parts.push('disk ' + Math.floor(100 * logs.disk_free_bytes / logs.disk_size_bytes) + '% free');
      }
    }
    if (view.channels_error) parts.push('channel sizes: ' + view.channels_error);
    if (report.problems.length) parts.push(report.problems.length + ' problem(s)');
    return parts.join(', ');
  }

  // ---- dht ranges -----------------------------------------------------------------------------

  function groupState(group) {
    const down = group.members.filter((m) => m.state !== 'up').length;
    if (down === 0) return 'up';
    return down === group.members.length ? 'down' : 'degraded';
  }

  function groupLabel(group) {
    const names = group.members.map((m) => m.addr + (m.state === 'up' ? '' : ' (' + m.state + ')'));
    return (group.replica_set ? 'replica set: ' : '') + names.join(', ');
  }

  function renderRanges(state) {
    const svg = $('ranges');
    const view = state.ranges;
    $('ranges-empty').hidden = !!view;
    svg.style.display = view ? '' : 'none';
    if (!view) {
      $('replica-sets').replaceChildren();
      $('range-notes').textContent = '';
      return;
    }
    const width = Math.max(200, svg.clientWidth || 600);
    const barTop = 4;
    const barHeight = 26;
    const laneHeight = LANE_TEXT + LANE_BAR + 6;
    const lanesTop = barTop + barHeight + 8;
    const axisTop = lanesTop + view.groups.length * laneHeight;
    const height = axisTop + 16;
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    svg.setAttribute('height', String(height));
    const children = [rangePatterns()];
    const groupsById = new Map(view.groups.map((g) => [g.id, g]));
    for (const span of view.spans) {
      children.push(spanRect(span, groupsById, width, barTop, barHeight));
    }
    view.groups.forEach((group, lane) => {
      children.push(...laneRects(group, width, lanesTop + lane * laneHeight));
    });
    children.push(...rangeAxis(width, axisTop));
    svg.replaceChildren(...children);
    renderReplicaSets(view);
  }

  function rangePatterns() {
    const defs = svgEl('defs');
    const pattern = svgEl('pattern', { id: 'hatch-down', width: 6, height: 6,
      patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
    pattern.append(svgEl('rect', { width: 6, height: 6, fill: '#f4c7c5' }),
      svgEl('rect', { width: 3, height: 6, fill: '#d64541' }));
    defs.append(pattern);
    return defs;
  }

  function spanRect(span, groupsById, width, top, height) {
    let fill = '#d64541';
    let kind = span.kind;
    if (span.kind === 'overlap') fill = '#e08a00';
    if (span.kind === 'owned') {
      const group = groupsById.get(span.groups[0]);
      const state = group ? groupState(group) : 'up';
      fill = state === 'down' ? 'url(#hatch-down)' : RANGE_COLORS[span.groups[0] % RANGE_COLORS.length];
      if (state === 'down') kind = 'owned-down';
    }
    const x = span.from * width;
    const rect = svgEl('rect', { x: x, y: top, width: Math.max(1, (span.to - span.from) * width),
      height: height, fill: fill, stroke: '#fff', 'stroke-width': 1,
      'data-kind': span.kind, 'data-drawn': kind, 'data-min': span.min, 'data-max': span.max });
    const owners = span.groups.map((id) => groupLabel(groupsById.get(id))).join(' | ');
    const what = span.kind === 'gap' ? 'GAP: owned by no node' : (span.kind === 'overlap'
      ? 'OVERLAP: ' + owners : owners);
    rect.append(svgEl('title', {}, span.min + ' … ' + span.max + '\n' + what));
    const g = svgEl('g', { class: 'span' });
    g.append(rect);
    if (span.kind !== 'owned' && (span.to - span.from) * width > 40) {
      g.append(svgEl('text', { x: x + 4, y: top + height / 2 + 4, class: 'on-bar' },
        span.kind === 'gap' ? 'gap' : 'overlap'));
    }
    return g;
  }

  // One lane per group: its name on a line of its own (kept inside the picture), its range
  // drawn under it.
  function laneRects(group, width, top) {
    const state = groupState(group);
    const x = group.from * width;
    const w = Math.max(2, (group.to - group.from) * width);
    const fill = state === 'down' ? 'url(#hatch-down)' : RANGE_COLORS[group.id % RANGE_COLORS.length];
    const rect = svgEl('rect', { x: x, y: top + LANE_TEXT, width: w, height: LANE_BAR, rx: 3,
      fill: fill, opacity: state === 'degraded' ? 0.6 : 1, 'data-group': group.id,
      'data-state': state });
    const label = groupLabel(group);
    rect.append(svgEl('title', {}, group.min + ' … ' + group.max + '\n' + label));
    const textWidth = label.length * 6.6;
    const text = svgEl('text', { x: Math.max(0, Math.min(x, width - textWidth)), y: top + 10,
      class: 'lane-label' }, label);
    return [rect, text];
  }

  function rangeAxis(width, top) {
    const ticks = [['0x0000…', 0], ['0x4000…', 0.25], ['0x8000…', 0.5], ['0xc000…', 0.75],
      ['0xffff…', 1]];
    return ticks.map(([label, at]) => svgEl('text', {
      x: at * width, y: top + 10, class: 'axis',
      'text-anchor': at === 0 ? 'start' : (at === 1 ? 'end' : 'middle'),
    }, label));
  }

  function renderReplicaSets(view) {
    const sets = view.groups.filter((g) => g.replica_set);
    const items = sets.map((group) => {
      const item = el('li', { 'data-replica-set': group.id, 'data-state': groupState(group) });
      item.append(el('code', {}, shortHex(group.min) + ' … ' + shortHex(group.max)), ': ');
      group.members.forEach((member, i) => {
        if (i > 0) item.append(', ');
        item.append(el('span', { class: 'member', 'data-addr': member.addr,
          'data-state': member.state }, member.addr + ' (' + member.state + ')'));
      });
      return item;
    });
    if (items.length === 0) {
      items.push(el('li', { class: 'muted' }, 'none: no two nodes own exactly the same range'));
    }
    $('replica-sets').replaceChildren(...items);
    const notes = [];
    if (view.empty.length) notes.push('empty range (own nothing): ' + view.empty.join(', '));
    if (view.unknown.length) notes.push('range unknown (never answered): ' + view.unknown.join(', '));
    $('range-notes').textContent = notes.join('; ');
  }

  // ---- plots ----------------------------------------------------------------------------------

  function renderPlots(state) {
    if (!history) return;
    const windowMs = history.capacity * state.interval_ms;
    $('plot-window').textContent = '(last ' + fmtDuration(windowMs / 1000) + ')';
    const end = history.t_ms.length ? history.t_ms[history.t_ms.length - 1] : state.t_ms;
    const plotted = busiestNodes();
    const legend = [legendItem('#1d2430', 'cluster')];
    plotted.forEach((addr, i) => legend.push(legendItem(COLORS[i % COLORS.length], addr)));
    $('plot-legend').replaceChildren(...legend);
    drawChart($('plot-rate'), 'requests_per_s', plotted, end, windowMs, fmtRate);
    drawChart($('plot-p99'), 'p99_us', plotted, end, windowMs, fmtMicros);
  }

  function legendItem(color, label) {
    const item = el('span', { class: 'item' });
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = color;
    item.append(swatch, label);
    return item;
  }

  function busiestNodes() {
    const totals = Object.entries(history.nodes).map(([addr, series]) => [addr,
      series.requests_per_s.reduce((sum, v) => sum + (v || 0), 0)]);
    totals.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    return totals.slice(0, PLOTTED_NODES).map(([addr]) => addr);
  }

  function drawChart(svg, field, plotted, end, windowMs, format) {
    const width = Math.max(200, svg.clientWidth || 500);
    const height = 150;
    const left = 58;
    const bottom = height - 16;
    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
    svg.setAttribute('height', String(height));
    const series = [['cluster', history.cluster[field]]]
      .concat(plotted.map((addr) => [addr, history.nodes[addr][field]]));
    let max = 0;
    for (const [, values] of series) {
      for (const v of values) if (v !== null && v > max) max = v;
    }
    max = niceMax(max);
    const xOf = (t) => left + (width - left - 4) * (1 - (end - t) / windowMs);
    const yOf = (v) => bottom - (bottom - 6) * (v / max);
    const children = [];
    for (const fraction of [0, 0.5, 1]) {
      const y = yOf(max * fraction);
      children.push(svgEl('line', { x1: left, x2: width - 4, y1: y, y2: y, class: 'grid' }),
        svgEl('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', class: 'axis' },
          format(max * fraction)));
    }
    children.push(
      svgEl('text', { x: left, y: height - 2, class: 'axis' }, '-' + fmtDuration(windowMs / 1000)),
      svgEl('text', { x: width - 4, y: height - 2, 'text-anchor': 'end', class: 'axis' }, 'now'));
    series.forEach(([name, values], i) => {
      const path = linePath(values, xOf, yOf);
      if (!path) return;
      const color = i === 0 ? '#1d2430' : COLORS[(i - 1) % COLORS.length];
      children.push(svgEl('path', { d: path, class: 'series' + (i === 0 ? ' cluster' : ''),
        stroke: color, 'data-series': name }));
    });
    svg.replaceChildren(...children);
  }

  function niceMax(max) {
    if (max <= 0) return 1;
    const magnitude = Math.pow(10, Math.floor(Math.log10(max)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * magnitude >= max) return step * magnitude;
    }
    return 10 * magnitude;
  }

  // A polyline per run of points with figures; a missing figure breaks the line.
  function linePath(values, xOf, yOf) {
    let d = '';
    let drawing = false;
    values.forEach((v, i) => {
      if (v === null || v === undefined) {
        drawing = false;
        return;
      }
      const x = xOf(history.t_ms[i]).toFixed(1);
      const y = yOf(v).toFixed(1);
      d += (drawing ? ' L' : ' M') + x + ' ' + y;
      drawing = true;
    });
    return d.trim();
  }

  // ---- channels and problems ------------------------------------------------------------------

  function renderChannels(state) {
    const rows = state.channels.map((channel) => {
      const row = el('tr', { 'data-kind': channel.kind, 'data-channel': channel.name });
      const growthUnit = channel.kind === 'logfiles' ? ' B' : '';
      row.append(
        el('td', {}, channel.kind),
        el('td', { class: 'addr' }, channel.name),
        el('td', { class: 'num' }, channel.nodes),
        el('td', { class: 'num' }, fmtCount(channel.records)),
        el('td', { class: 'num' }, fmtBytes(channel.bytes)),
        el('td', { class: 'num' }, channel.growth_per_s === null
          ? '—' : fmtRate(channel.growth_per_s) + growthUnit),
        fillCell(channel.fill_percent),
      );
      return row;
    });
    if (rows.length === 0) {
      const row = el('tr', {});
      row.append(el('td', { colspan: 7, class: 'muted' }, 'no channels on the nodes that answered'));
      rows.push(row);
    }
    $('channels').tBodies[0].replaceChildren(...rows);
  }

  function fillCell(percent) {
    const cell = el('td', {});
    if (percent === null || percent === undefined) {
      cell.textContent = '';
      return cell;
    }
    const bar = el('span', { class: 'fill' + (percent >= 90 ? ' high' : '') });
    const inner = el('span', {});
    inner.style.width = Math.min(100, percent) + '%';
    bar.append(inner);
    cell.append(bar, ' ' + percent + '%');
    return cell;
  }

  function renderProblems(state) {
    const items = state.health.problems.map((problem) => el('li', {}, problem));
    if (items.length === 0) items.push(el('li', { class: 'none' }, 'none'));
    $('problems').replaceChildren(...items);
  }

  poll();
})();
