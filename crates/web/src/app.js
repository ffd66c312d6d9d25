// callflow's browser UI: scenarios, the graph editor (a sipflow flow: {nodes, edges}), runs
// followed over the WebSocket, the run history and the PBX profiles. No build step: this file is
// served as is from the binary.
'use strict';

const $ = (sel) => document.querySelector(sel);
const $$ = (sel) => [...document.querySelectorAll(sel)];
const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 170, NODE_H = 54, INST_W = 170, INST_H = 46, LANE_W = 420;

// Fields per command/event and of an instance (sipflow's camelCase keys, as the server reads
// them): [key, type, default], filled from the server's table (GET /api/schema) at start.
let COMMON = [];
let SPEC = { command: {}, event: {} };
let INSTANCE_FIELDS = [];

// A key of the schema as a field: durations are milliseconds in sipflow JSON, a choice that may
// be left out offers '' (any / none) first.
function fieldOf(k) {
  const types = { int: 'number', number: 'number', duration: 'ms' };
  let type = types[k.type] || k.type;
  if (k.type === 'choice') type = k.required || k.default !== undefined ? k.choices : ['', ...k.choices];
  return [k.json, type, k.default];
}

async function loadSchema() {
  const r = await api('GET', '/api/schema');
  if (!r.ok) throw new Error('cannot read the schema');
  COMMON = r.data.common.map(fieldOf);
  for (const [kind, list] of [['command', r.data.commands], ['event', r.data.events]]) {
    SPEC[kind] = {};
    for (const a of list) SPEC[kind][a.name] = a.keys.map(fieldOf);
  }
  INSTANCE_FIELDS = r.data.instance.map(fieldOf);
}

const S = {
  name: null, flow: { nodes: [], edges: [] }, dirty: false, sel: null, diags: [],
  text: '', profiles: {}, states: {}, following: null, counter: 0,
};

// ---------------------------------------------------------------- helpers

// The token of this server start (docs/security.md): every state-changing request carries it.
const TOKEN = document.querySelector('meta[name="callflow-token"]').content;

// A scenario's text goes as its own type: YAML, or JSON for a sipflow flow.
const textType = (path) => (/\.json(\/|$)/.test(decodeURIComponent(path)) ? 'application/json' : 'application/yaml');

async function api(method, path, body, isText) {
  const opts = { method, headers: {} };
  if (method !== 'GET') {
    opts.headers['X-Callflow-Token'] = TOKEN;
    if (body === undefined && method !== 'DELETE') body = {};
  }
  if (body !== undefined) {
    opts.body = isText ? body : JSON.stringify(body);
    opts.headers['Content-Type'] = isText ? textType(path) : 'application/json';
  }
  const r = await fetch(path, opts);
  const type = r.headers.get('content-type') || '';
  const data = type.includes('json') ? await r.json() : await r.text();
  return { status: r.status, ok: r.ok, data };
}

function say(text, kind) {
  const m = $('#message');
  m.textContent = text || '';
  m.style.color = kind === 'error' ? 'var(--bad)' : '';
}

function el(tag, attrs = {}, parent, ns) {
  const e = ns ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v; else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  if (parent) parent.appendChild(e);
  return e;
}
const sv = (tag, attrs, parent) => el(tag, attrs, parent, true);

function newId(prefix) {
  let id;
  do { S.counter += 1; id = `${prefix}-${Date.now().toString(36)}${S.counter}`; } while (node(id));
  return id;
}
const node = (id) => S.flow.nodes.find((n) => n.id === id);
const instances = () => S.flow.nodes.filter((n) => n.type === 'sipInstance');
const kindOf = (n) => (n.type === 'sipInstance' ? 'instance' : n.type);
const nameOf = (n) => n.data.command || n.data.event || '';

function setDirty(d) {
  S.dirty = d;
  $('#dirty').hidden = !d;
  if (d) scheduleCheck();
}

// ---------------------------------------------------------------- scenarios

async function loadList() {
  const r = await api('GET', '/api/scenarios');
  const ul = $('#scenarios');
  ul.innerHTML = '';
  for (const name of r.data.scenarios || []) {
    const li = el('li', { 'data-name': name, text: name }, ul);
    if (name === S.name) li.classList.add('sel');
    li.onclick = () => open(name);
  }
}

async function open(name) {
  if (S.dirty && S.name && S.name !== name && !confirm(`Discard the unsaved changes to ${S.name}?`)) return;
  S.name = name;
  S.sel = null; S.diags = []; S.states = {};
  history.replaceState(null, '', `#${encodeURIComponent(name)}`);
  $('#scenario-name').textContent = name;
  const text = await api('GET', `/api/scenarios/${encodeURIComponent(name)}`);
  S.text = text.ok ? text.data : '';
  const r = await api('GET', `/api/scenarios/${encodeURIComponent(name)}/flow`);
  if (r.ok) {
    S.flow = r.data.flow;
    $('#text-note').textContent = !r.data.sidecars ? ''
      : r.data.sidecars_allowed ? `${r.data.sidecars} sidecar(s) are kept in the file; edit them here.`
      : `${r.data.sidecars} sidecar(s) are kept in the file; this server does not run scenarios that start processes (start callflow serve with --allow-sidecars).`;
    // A sipflow file is edited as itself; its native YAML is shown beside it.
    $('#yaml-preview').hidden = !name.endsWith('.json');
    $('#yaml-preview').textContent = name.endsWith('.json') ? `# As callflow's native YAML (read only):\n${r.data.yaml || r.data.yaml_error || ''}` : '';
    showText(S.text);
    tab('graph');
  } else {
    // Invalid: the text view is where it can be fixed.
    S.flow = { nodes: [], edges: [] };
    showText(S.text);
    showDiagText(r.data.diagnostics || r.data.error);
    tab('text');
  }
  setDirty(false);
  await loadList();
  draw(); props();
}

function showText(t) { $('#text').value = t; }

function showDiagText(text) {
  const ul = $('#diagnostics');
  ul.innerHTML = '';
  for (const line of String(text || '').split('\n').filter(Boolean)) el('li', { text: line }, ul);
}

async function create() {
  let name = $('#new-name').value.trim();
  if (!name) return say('name the new scenario (name.yaml or name.json)', 'error');
  if (!/\.(ya?ml|json)$/.test(name)) name += '.yaml';
  const body = name.endsWith('.json') ? '{"nodes": [], "edges": []}\n'
    : `name: ${name.replace(/\.ya?ml$/, '')}\ninstances: {}\n`;
  const r = await api('PUT', `/api/scenarios/${encodeURIComponent(name)}`, body, true);
  if (r.status >= 400) return say(r.data.error || 'cannot create', 'error');
  $('#new-name').value = '';
  S.dirty = false;
  S.name = name;
  S.flow = { nodes: [], edges: [] };
  S.text = body;
  $('#scenario-name').textContent = name;
  setDirty(false);
  await loadList();
  showText(body);
  tab('graph'); draw(); props();
  say(`created ${name}: add instances, then drag nodes onto them`);
}

async function rename() {
  const to = $('#rename-to').value.trim();
  if (!S.name || !to) return say('open a scenario and write the new name', 'error');
  const r = await api('POST', `/api/scenarios/${encodeURIComponent(S.name)}/rename`, { to });
  if (!r.ok) return say(r.data.error, 'error');
  S.name = to; $('#scenario-name').textContent = to; $('#rename-to').value = '';
  await loadList();
}

async function remove() {
  if (!S.name || !confirm(`Delete ${S.name}?`)) return;
  await api('DELETE', `/api/scenarios/${encodeURIComponent(S.name)}`);
  S.name = null; S.flow = { nodes: [], edges: [] }; setDirty(false);
  $('#scenario-name').textContent = '(no scenario)';
  await loadList(); draw(); props();
}

async function save() {
  if (!S.name) return say('no scenario open', 'error');
  if ($('#text-view').hidden === false && S.textDirty) return saveText();
  const r = await api('PUT', `/api/scenarios/${encodeURIComponent(S.name)}/flow`, { flow: S.flow });
  applyDiags(r.data.diagnostics || []);
  if (!r.ok) return say(r.data.error || 'not saved', 'error');
  say(`saved ${S.name}${r.data.valid ? '' : ' (with errors)'}`);
  await reopenKeepingView();
  return true;
}

async function saveText() {
  const r = await api('PUT', `/api/scenarios/${encodeURIComponent(S.name)}`, $('#text').value, true);
  S.textDirty = false;
  if (!r.ok) return say(r.data.error, 'error');
  say(r.data.valid ? `saved ${S.name}` : `saved ${S.name}; it has errors`, r.data.valid ? '' : 'error');
  await reopenKeepingView();
  if (!r.data.valid) showDiagText(r.data.diagnostics);
  return r.data.valid;
}

async function reopenKeepingView() {
  const view = $('#text-view').hidden ? 'graph' : 'text';
  S.dirty = false;
  await open(S.name);
  tab(view);
}

// ---------------------------------------------------------------- validation

let checkTimer = null;
function scheduleCheck() {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(check, 300);
}

async function check() {
  if (!S.name) return null;
  const r = await api('POST', '/api/flow/check', { flow: S.flow, name: S.name });
  applyDiags(r.data.diagnostics || []);
  if (r.data.yaml && S.dirty && S.name.match(/\.ya?ml$/)) {
    showText(r.data.yaml);
    $('#text-note').textContent = 'Generated from the graph (not saved yet).';
  }
  return r.data;
}

function applyDiags(list) {
  S.diags = list;
  const ul = $('#diagnostics');
  ul.innerHTML = '';
  for (const d of list) {
    const n = d.node ? node(d.node) : null;
    const where = n ? `${n.data.label || nameOf(n) || n.id}: ` : '';
    const li = el('li', { class: d.severity, text: `${d.severity}: ${where}${d.message}${d.help ? ` (${d.help})` : ''}` }, ul);
    if (n) li.onclick = () => select({ kind: 'node', id: n.id });
  }
  markErrors();
  propsDiags();
}

// ---------------------------------------------------------------- graph

function tab(which) {
  $$('.tab').forEach((t) => t.classList.toggle('sel', t.dataset.tab === which));
  $('#graph-view').hidden = which !== 'graph';
  $('#text-view').hidden = which !== 'text';
}

function buildPalette() {
  const p = $('#palette');
  for (const kind of ['command', 'event']) {
    el('h4', { text: kind === 'command' ? 'Commands' : 'Events' }, p);
    for (const name of Object.keys(SPEC[kind])) {
      const item = el('div', { class: `palette-item ${kind}`, 'data-kind': kind, 'data-type': name, text: name }, p);
      item.addEventListener('pointerdown', (e) => startPaletteDrag(e, kind, name));
    }
  }
}

function canvasPoint(e) {
  const svg = $('#canvas');
  const r = svg.getBoundingClientRect();
  return { x: e.clientX - r.left, y: e.clientY - r.top };
}

function startPaletteDrag(e, kind, name) {
  e.preventDefault();
  if (!S.name) return say('open or create a scenario first', 'error');
  const ghost = el('div', { class: `palette-item ${kind}`, text: name }, document.body);
  Object.assign(ghost.style, { position: 'fixed', pointerEvents: 'none', opacity: 0.8, zIndex: 10 });
  const move = (ev) => { ghost.style.left = `${ev.clientX + 4}px`; ghost.style.top = `${ev.clientY + 4}px`; };
  move(e);
  const up = (ev) => {
    document.removeEventListener('pointermove', move);
    document.removeEventListener('pointerup', up);
    ghost.remove();
    const r = $('#canvas').getBoundingClientRect();
    if (ev.clientX < r.left || ev.clientX > r.right || ev.clientY < r.top || ev.clientY > r.bottom) return;
    addNode(kind, name, canvasPoint(ev));
  };
  document.addEventListener('pointermove', move);
  document.addEventListener('pointerup', up);
}

function laneOf(x) {
  let best = null;
  for (const i of instances()) {
    const d = Math.abs(x - (i.position.x + INST_W / 2));
    if (x >= i.position.x - 40 && (!best || d < best.d)) best = { d, i };
  }
  return best ? best.i : instances()[0];
}

function addNode(kind, name, at) {
  const inst = laneOf(at.x);
  if (!inst) return say('add an instance first (+ Instance)', 'error');
  const id = newId(kind === 'command' ? 'cmd' : 'evt');
  const data = { [kind]: name, label: name, sipInstanceId: inst.id, callId: 'call-1', timeout: 10000 };
  for (const [key, type, dflt] of SPEC[kind][name]) if (dflt !== undefined && type !== 'bool') data[key] = dflt;
  if (name === 'TIMEOUT') data.timeout = 1000;
  S.flow.nodes.push({ id, type: kind, position: { x: Math.max(0, at.x - NODE_W / 2), y: Math.max(INST_H + 20, at.y - NODE_H / 2) }, data });
  // The first node of an instance starts its chain.
  if (!S.flow.edges.some((e) => e.source === inst.id)) connect(inst.id, id, 'success');
  setDirty(true);
  select({ kind: 'node', id });
}

function addInstance() {
  if (!S.name) return say('open or create a scenario first', 'error');
  const n = instances().length;
  const names = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'];
  let label = names[n] || `ua${n + 1}`;
  while (node(label)) label += '2';
  const dns = instances().map((i) => Number(i.data.dn)).filter((d) => !Number.isNaN(d));
  const dn = String(dns.length ? Math.max(...dns) + 100 : 100);
  const x = n ? Math.max(...instances().map((i) => i.position.x)) + LANE_W : 0;
  S.flow.nodes.push({ id: label, type: 'sipInstance', position: { x, y: 0 },
    data: { label, dn, register: false, transport: 'UDP', codecs: ['PCMU', 'PCMA'] } });
  setDirty(true);
  select({ kind: 'node', id: label });
}

function connect(source, target, handle) {
  if (source === target) return;
  // One success and one failure edge per node.
  S.flow.edges = S.flow.edges.filter((e) => !(e.source === source && (e.sourceHandle || 'success') === handle
    && node(source).type !== 'sipInstance'));
  S.flow.edges = S.flow.edges.filter((e) => !(e.source === source && e.target === target));
  S.flow.edges.push({ id: `e-${source}-${handle}-${target}`, source, target, sourceHandle: handle, data: { branchType: handle } });
  setDirty(true);
}

function select(sel) {
  S.sel = sel;
  draw();
  props();
}

function deleteSelected() {
  if (!S.sel) return;
  if (S.sel.kind === 'edge') {
    S.flow.edges = S.flow.edges.filter((e) => e.id !== S.sel.id);
  } else {
    const id = S.sel.id;
    S.flow.nodes = S.flow.nodes.filter((n) => n.id !== id && n.data.sipInstanceId !== id);
    const ids = new Set(S.flow.nodes.map((n) => n.id));
    S.flow.edges = S.flow.edges.filter((e) => ids.has(e.source) && ids.has(e.target));
  }
  S.sel = null;
  setDirty(true);
  draw(); props();
}

function box(n) {
  const inst = n.type === 'sipInstance';
  return { x: n.position.x, y: n.position.y, w: inst ? INST_W : NODE_W, h: inst ? INST_H : NODE_H };
}

function edgePath(e) {
  const s = node(e.source), t = node(e.target);
  if (!s || !t) return null;
  const a = box(s), b = box(t);
  const failure = (e.sourceHandle || e.data?.branchType) === 'failure';
  const x1 = failure ? a.x + a.w : a.x + a.w / 2, y1 = failure ? a.y + a.h / 2 : a.y + a.h;
  const x2 = b.x + b.w / 2, y2 = b.y;
  const dy = Math.max(30, Math.abs(y2 - y1) / 2);
  return { d: failure ? `M${x1},${y1} C${x1 + 60},${y1} ${x2},${y2 - dy} ${x2},${y2}`
    : `M${x1},${y1} C${x1},${y1 + dy} ${x2},${y2 - dy} ${x2},${y2}`, failure };
}

function draw() {
  const svg = $('#canvas');
  svg.innerHTML = '';
  const defs = sv('defs', {}, svg);
  for (const [id, color] of [['arrow-success', '#1e7b34'], ['arrow-failure', '#b3261e']]) {
    const m = sv('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' }, defs);
    sv('path', { d: 'M0,0 L10,5 L0,10 z', fill: color }, m);
  }
  let maxX = 800, maxY = 500;
  for (const n of S.flow.nodes) {
    maxX = Math.max(maxX, n.position.x + 260); maxY = Math.max(maxY, n.position.y + 160);
  }
  svg.setAttribute('width', maxX); svg.setAttribute('height', maxY);
  for (const i of instances()) sv('rect', { class: 'lane', x: i.position.x - 20, y: 0, width: LANE_W - 40, height: maxY }, svg);
  for (const e of S.flow.edges) {
    const p = edgePath(e);
    if (!p) continue;
    const cls = p.failure ? 'failure' : 'success';
    const g = sv('g', { class: 'edge-g', 'data-id': e.id }, svg);
    sv('path', { class: `edge ${cls}${S.sel?.id === e.id ? ' sel' : ''}`, d: p.d, 'marker-end': `url(#arrow-${cls})` }, g);
    const hit = sv('path', { class: 'edge-hit', d: p.d, 'data-edge': e.id }, g);
    hit.addEventListener('pointerdown', (ev) => { ev.stopPropagation(); select({ kind: 'edge', id: e.id }); });
  }
  const errs = errorsByNode();
  for (const n of S.flow.nodes) {
    const b = box(n);
    const classes = ['node', kindOf(n)];
    if (S.sel?.kind === 'node' && S.sel.id === n.id) classes.push('sel');
    if (errs.has(n.id)) classes.push('has-error');
    if (S.states[n.id]) classes.push(S.states[n.id]);
    const g = sv('g', { class: classes.join(' '), 'data-id': n.id, 'data-state': S.states[n.id] || '', transform: `translate(${b.x},${b.y})` }, svg);
    sv('rect', { width: b.w, height: b.h, rx: 7 }, g);
    if (n.type === 'sipInstance') {
      sv('text', { x: 10, y: 19, text: n.data.label || n.id }, g);
      const pbx = n.data.pbxProfile ? ` · ${n.data.pbxProfile}` : n.data.pbxHost ? ` · ${n.data.pbxHost}` : '';
      sv('text', { class: 'sub', x: 10, y: 36, text: `DN ${n.data.dn || '?'} · ${n.data.transport || 'UDP'}${pbx}` }, g);
    } else {
      sv('text', { x: 10, y: 19, text: n.data.label && n.data.label !== nameOf(n) ? `${nameOf(n)} · ${n.data.label}` : nameOf(n) }, g);
      sv('text', { class: 'sub', x: 10, y: 36, text: summary(n) }, g);
      sv('text', { class: 'sub', x: 10, y: 49, text: `${n.data.callId || 'call-1'} · ${((n.data.timeout ?? 10000) / 1000)}s` }, g);
      sv('circle', { class: 'port failure', 'data-node': n.id, 'data-handle': 'failure', cx: b.w, cy: b.h / 2, r: 6 }, g);
    }
    if (errs.has(n.id)) badge(g, b.w, errs.get(n.id));
    sv('circle', { class: 'port success', 'data-node': n.id, 'data-handle': 'success', cx: b.w / 2, cy: b.h, r: 6 }, g);
    g.addEventListener('pointerdown', (ev) => nodePointerDown(ev, n));
  }
}

// node id -> its error messages.
function errorsByNode() {
  const errs = new Map();
  for (const d of S.diags) if (d.node && d.severity === 'error') errs.set(d.node, (errs.get(d.node) || []).concat(d.message));
  return errs;
}

function badge(g, w, messages) {
  const b = sv('circle', { class: 'badge', cx: w - 8, cy: 8, r: 7 }, g);
  sv('title', { text: messages.join('\n') }, b);
  sv('title', { class: 'err-title', text: messages.join('\n') }, g);
}

// Puts the diagnostics on the nodes drawn, in place: a validation result must not redraw the
// graph under a pointer that is dragging or about to click.
function markErrors() {
  const errs = errorsByNode();
  for (const g of $('#canvas').querySelectorAll('g.node')) {
    g.querySelectorAll(':scope > .badge, :scope > .err-title').forEach((x) => x.remove());
    const messages = errs.get(g.dataset.id);
    g.classList.toggle('has-error', !!messages);
    if (messages) badge(g, Number(g.querySelector('rect').getAttribute('width')), messages);
  }
}

function summary(n) {
  const d = n.data;
  const bits = [d.targetUri, d.targetUser, d.digits, d.filePath, d.number, d.expectedDigit, d.method, d.from,
    d.code, d.frequency && `${d.frequency} Hz`, d.consultCallId && `consult ${d.consultCallId}`].filter(Boolean);
  return bits.join(' ').slice(0, 26);
}

function nodePointerDown(ev, n) {
  ev.stopPropagation();
  const port = ev.target.classList.contains('port') ? ev.target : null;
  const svg = $('#canvas');
  const start = canvasPoint(ev);
  if (port) {
    const handle = port.dataset.handle;
    const b = box(n);
    const from = handle === 'failure' ? { x: b.x + b.w, y: b.y + b.h / 2 } : { x: b.x + b.w / 2, y: b.y + b.h };
    const line = sv('path', { class: 'rubber', d: `M${from.x},${from.y}` }, svg);
    const move = (e) => { const p = canvasPoint(e); line.setAttribute('d', `M${from.x},${from.y} L${p.x},${p.y}`); };
    const up = (e) => {
      document.removeEventListener('pointermove', move);
      document.removeEventListener('pointerup', up);
      line.remove();
      const p = canvasPoint(e);
      const target = S.flow.nodes.find((t) => {
        const bt = box(t);
        return t.type !== 'sipInstance' && p.x >= bt.x && p.x <= bt.x + bt.w && p.y >= bt.y - 6 && p.y <= bt.y + bt.h;
      });
      if (target) { connect(n.id, target.id, handle); draw(); props(); }
    };
    document.addEventListener('pointermove', move);
    document.addEventListener('pointerup', up);
    return;
  }
  select({ kind: 'node', id: n.id });
  const orig = { ...n.position };
  let moved = false;
  const move = (e) => {
    const p = canvasPoint(e);
    const dx = p.x - start.x, dy = p.y - start.y;
    if (!moved && Math.abs(dx) + Math.abs(dy) < 3) return;
    moved = true;
    const next = { x: Math.max(0, orig.x + dx), y: Math.max(0, orig.y + dy) };
    if (n.type === 'sipInstance') {
      // The instance's nodes move with it.
      const step = next.x - n.position.x;
      for (const c of S.flow.nodes) if (c.data.sipInstanceId === n.id) c.position.x += step;
      next.y = 0;
    }
    n.position = next;
    draw();
  };
  const up = () => {
    document.removeEventListener('pointermove', move);
    document.removeEventListener('pointerup', up);
    if (moved) {
      if (n.type !== 'sipInstance') {
        // Dropped on another instance's column: it now belongs there.
        const inst = laneOf(n.position.x + NODE_W / 2);
        if (inst && inst.id !== n.data.sipInstanceId) { n.data.sipInstanceId = inst.id; props(); }
      }
      setDirty(true);
    }
  };
  document.addEventListener('pointermove', move);
  document.addEventListener('pointerup', up);
}

// ---------------------------------------------------------------- properties

// The selected node's diagnostics, updated in place: a validation result must not rebuild the
// panel under a field being typed in (it would lose the focus and the next keystrokes).
function propsDiags() {
  const box = $('#node-diags');
  if (!box || S.sel?.kind !== 'node') return;
  box.innerHTML = '';
  for (const d of S.diags.filter((x) => x.node === S.sel.id)) el('div', { class: 'err', text: `${d.severity}: ${d.message}${d.help ? ` — ${d.help}` : ''}` }, box);
}

function props() {
  const p = $('#props');
  p.innerHTML = '';
  if (!S.sel) { el('p', { class: 'hint', text: 'Select a node or an instance. Delete removes it.' }, p); return; }
  if (S.sel.kind === 'edge') {
    const e = S.flow.edges.find((x) => x.id === S.sel.id);
    if (!e) return;
    el('h2', { text: `${e.sourceHandle || 'success'} edge` }, p);
    el('p', { text: `${e.source} → ${e.target}` }, p);
    el('button', { id: 'delete-edge', class: 'danger', text: 'Delete edge' }, p).onclick = deleteSelected;
    return;
  }
  const n = node(S.sel.id);
  if (!n) return;
  const kind = kindOf(n);
  el('h2', { text: kind === 'instance' ? `Instance ${n.id}` : `${nameOf(n)} (${kind})` }, p);
  el('div', { class: 'hint', text: `id ${n.id}` }, p);
  el('div', { id: 'node-diags' }, p);
  propsDiags();
  const fields = kind === 'instance' ? INSTANCE_FIELDS : [...COMMON, ...SPEC[kind][nameOf(n)] || []];
  for (const f of fields) {
    if (f[0] === 'callId' && nameOf(n) === 'MuteTransfer') continue;
    field(p, n, f);
  }
  if (kind !== 'instance') {
    for (const handle of ['success', 'failure']) {
      const lab = el('label', { text: `${handle} → ` }, p);
      const s = el('select', { 'data-edge': handle }, lab);
      el('option', { value: '', text: '(end)' }, s);
      const cur = S.flow.edges.find((e) => e.source === n.id && (e.sourceHandle || 'success') === handle);
      for (const t of S.flow.nodes.filter((x) => x.type !== 'sipInstance' && x.id !== n.id)) {
        const o = el('option', { value: t.id, text: `${t.data.label || nameOf(t)} (${t.data.sipInstanceId || '?'}, ${t.id})` }, s);
        if (cur && cur.target === t.id) o.selected = true;
      }
      s.onchange = () => {
        S.flow.edges = S.flow.edges.filter((e) => !(e.source === n.id && (e.sourceHandle || 'success') === handle));
        if (s.value) connect(n.id, s.value, handle); else setDirty(true);
        draw();
      };
    }
  }
  el('button', { id: 'delete-node', class: 'danger', text: kind === 'instance' ? 'Delete instance and its nodes' : 'Delete node' }, p).onclick = deleteSelected;
}

function field(p, n, [key, type, dflt]) {
  const lab = el('label', { text: key }, p);
  const d = n.data;
  const changed = () => { setDirty(true); draw(); };
  let input;
  if (Array.isArray(type)) {
    input = el('select', {}, lab);
    for (const v of type) el('option', { value: v, text: v || '(any)' }, input);
    input.value = d[key] ?? (type.includes(dflt) ? dflt : type[0]);
    input.onchange = () => { if (input.value) d[key] = input.value; else delete d[key]; changed(); };
  } else if (type === 'bool') {
    input = el('input', { type: 'checkbox' }, lab);
    input.checked = d[key] ?? dflt ?? false;
    input.onchange = () => { d[key] = input.checked; changed(); };
  } else if (type === 'area') {
    input = el('textarea', { rows: 3 }, lab);
    input.value = d[key] ?? '';
    input.oninput = () => { if (input.value) d[key] = input.value; else delete d[key]; changed(); };
  } else if (type === 'ms' || type === 'number') {
    input = el('input', { type: 'number', placeholder: dflt ?? '' }, lab);
    input.value = d[key] ?? '';
    if (type === 'ms') lab.firstChild.textContent = `${key} (ms)`;
    input.oninput = () => { if (input.value === '') delete d[key]; else d[key] = Number(input.value); changed(); };
  } else if (type === 'codes') {
    input = el('input', { placeholder: '200, 486' }, lab);
    input.value = [].concat(d[key] ?? []).join(', ');
    input.oninput = () => {
      const codes = input.value.split(/[\s,]+/).filter(Boolean).map(Number);
      if (codes.length) d[key] = codes; else delete d[key];
      changed();
    };
  } else if (type === 'list') {
    input = el('input', { placeholder: 'PCMU, PCMA' }, lab);
    input.value = [].concat(d[key] ?? []).join(', ');
    input.oninput = () => { d[key] = input.value.split(/[\s,]+/).filter(Boolean); changed(); };
  } else if (type === 'node') {
    input = el('select', {}, lab);
    el('option', { value: '', text: '(none)' }, input);
    for (const t of S.flow.nodes.filter((x) => x.type !== 'sipInstance' && x.id !== n.id)) el('option', { value: t.id, text: `${t.data.label || nameOf(t)} (${t.id})` }, input);
    input.value = d[key] ?? '';
    input.onchange = () => { if (input.value) d[key] = input.value; else delete d[key]; changed(); };
  } else if (type === 'instance' || type === 'profile') {
    input = el('select', {}, lab);
    el('option', { value: '', text: '(none)' }, input);
    const opts = type === 'instance' ? instances().map((i) => i.id) : Object.keys(S.profiles);
    for (const v of opts) el('option', { value: v, text: v }, input);
    if (d[key] && !opts.includes(d[key])) el('option', { value: d[key], text: `${d[key]} (missing)` }, input);
    input.value = d[key] ?? '';
    input.onchange = () => {
      if (input.value) d[key] = input.value; else delete d[key];
      if (type === 'profile' && input.value && d.register === undefined) d.register = true;
      changed();
    };
  } else if (type === 'headers') {
    input = el('textarea', { rows: 2, placeholder: 'X-Test: value (one per line)' }, lab);
    input.value = [].concat(d[key] ?? []).flatMap((h) => Object.entries(h)).map(([k, v]) => `${k}: ${v}`).join('\n');
    input.oninput = () => {
      const list = input.value.split('\n').map((l) => l.match(/^\s*([^:]+?)\s*:\s*(.*)$/)).filter(Boolean).map((m) => ({ [m[1]]: m[2] }));
      if (list.length) d[key] = list; else delete d[key];
      changed();
    };
  } else if (type === 'checks') {
    input = el('textarea', { rows: 3, placeholder: 'header X-Test equals abc\nheader Server exists\nsdpCodec PCMU\nsdpDirection sendonly' }, lab);
    input.value = (d[key] ?? []).map((c) => (c.header ? `header ${c.header} ${c.equals !== undefined ? `equals ${c.equals}`
      : c.matches !== undefined ? `matches ${c.matches}` : c.exists === false ? 'absent' : 'exists'}`
      : c.sdpCodec ? `sdpCodec ${c.sdpCodec}` : `sdpDirection ${c.sdpDirection}`)).join('\n');
    input.oninput = () => {
      const out = [];
      for (const line of input.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
        const [what, a, test, ...rest] = line.split(/\s+/);
        if (what === 'header') {
          const c = { header: a };
          if (test === 'equals' || test === 'matches') c[test] = rest.join(' ');
          else if (test === 'absent') c.exists = false;
          out.push(c);
        } else if (what === 'sdpCodec' || what === 'sdpDirection') out.push({ [what]: a });
      }
      if (out.length) d[key] = out; else delete d[key];
      changed();
    };
  } else {
    input = el('input', { placeholder: dflt ?? '', list: type === 'target' ? 'dns' : undefined }, lab);
    input.value = d[key] ?? '';
    if (type === 'target') {
      const dl = el('datalist', { id: 'dns' }, lab);
      for (const i of instances()) el('option', { value: i.data.dn, text: i.data.label }, dl);
    }
    input.oninput = () => { if (input.value !== '') d[key] = input.value; else delete d[key]; changed(); };
  }
  input.dataset.field = key;
}

// ---------------------------------------------------------------- runs

function setStatus(s) {
  const st = $('#status');
  st.className = `status ${s}`;
  st.textContent = s;
}

async function run() {
  if (!S.name) return say('open a scenario first', 'error');
  if (S.dirty && !(await save())) return;
  const r = await api('POST', '/api/runs', { scenario: S.name });
  if (r.status === 409) return say(r.data.error, 'error');
  if (r.status === 422) { setStatus('invalid'); showDiagText(r.data.diagnostics); return say('the scenario is invalid: nothing was sent', 'error'); }
  if (!r.ok) return say(r.data.error || 'cannot start', 'error');
  say('');
  follow();
}

async function stop() {
  const r = await api('POST', '/api/runs/current/stop');
  if (!r.ok) say(r.data.error, 'error'); else say('stopping…');
}

function resetRunViews() {
  S.states = {};
  S.events = [];
  $('#log').innerHTML = '';
  draw();
  drawLadder([]);
}

function follow() {
  if (S.following) S.following.close();
  resetRunViews();
  setStatus('running');
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/runs/current/events?token=${encodeURIComponent(TOKEN)}`);
  S.following = ws;
  ws.onmessage = (m) => onEvent(JSON.parse(m.data), true);
  ws.onclose = () => { if (S.following === ws) S.following = null; loadHistory(); };
}

function onEvent(e, live) {
  S.events.push(e);
  const { type, data } = e.event;
  const t = `${e.elapsed_ms.toFixed(1).padStart(8)} ms`;
  if (type === 'run_started') {
    setStatus(live ? 'running' : 'replay');
    for (const n of data.nodes || []) S.states[n.id] = 'pending';
    log('info', `${t}  run ${data.run_id} of ${data.scenario}`);
  } else if (type === 'node_state') {
    S.states[data.node] = data.to;
    if (data.to === 'failed') log('error', `${t}  ${data.ua}/${data.node} failed: ${data.reason || ''}`);
    else if (data.to !== 'pending') log('debug', `${t}  ${data.ua}/${data.node} ${data.to}`);
    draw();
  } else if (type === 'log') {
    log(data.level, `${t}  ${data.ua ? `${data.ua}: ` : ''}${data.message}`);
  } else if (type === 'sip_message') {
    log('debug', `${t}  ${data.ua} ${data.direction === 'sent' ? '→' : '←'} ${data.peer} ${data.status ? `${data.status} ${data.reason || ''}` : data.method}`);
  } else if (type === 'cleanup') {
    log('debug', `${t}  cleanup ${JSON.stringify(data)}`);
  } else if (type === 'run_finished') {
    setStatus(data.outcome);
    log(data.outcome === 'passed' ? 'info' : 'error', `${t}  ${data.outcome.toUpperCase()} in ${data.duration_ms.toFixed(0)} ms; leaks: ${data.leaks.dialogs} dialogs, ${data.leaks.ports} ports${data.failure ? `; ${data.failure.node}: ${data.failure.reason}` : ''}`);
  }
  if (type === 'sip_message' || type === 'ua_started' || type === 'run_started' || type === 'run_finished') drawLadder(S.events);
}

function log(level, text) {
  const div = el('div', { class: level, text: `${level.padEnd(7)} ${text}` }, $('#log'));
  div.dataset.level = level;
  const pane = $('#log-pane');
  pane.scrollTop = pane.scrollHeight;
}

function drawLadder(events) {
  const svg = $('#ladder');
  svg.innerHTML = '';
  const lanes = []; const laneOfKey = new Map(); const uaOfAddr = new Map();
  const lane = (key, title) => {
    if (!laneOfKey.has(key)) { laneOfKey.set(key, lanes.length); lanes.push(title || key); }
    return laneOfKey.get(key);
  };
  const arrows = [];
  for (const e of events) {
    const { type, data } = e.event;
    if (type === 'run_started') for (const i of data.instances) lane(i.id, i.label === i.dn ? i.label : `${i.label} (${i.dn})`);
    if (type === 'ua_started') uaOfAddr.set(data.local_addr, data.ua);
    if (type !== 'sip_message') continue;
    const peerUa = uaOfAddr.get(data.peer);
    // A message between our own UAs is drawn once, from its sender's side.
    if (peerUa && data.direction === 'received') continue;
    const me = lane(data.ua), peer = peerUa ? lane(peerUa) : lane(data.peer);
    const [from, to] = data.direction === 'sent' ? [me, peer] : [peer, me];
    const label = data.status ? `${data.status} ${data.reason || ''}`.trim() : data.method;
    arrows.push({ at: e.elapsed_ms, from, to, label, fail: data.status >= 300, raw: data.raw });
  }
  const lw = 170, left = 70, top = 30, rowH = 22;
  svg.setAttribute('width', left + Math.max(lanes.length, 1) * lw);
  svg.setAttribute('height', top + (arrows.length + 1) * rowH);
  lanes.forEach((title, i) => {
    const x = left + i * lw + lw / 2;
    sv('text', { class: 'lane-title', x, y: 16, 'text-anchor': 'middle', text: title }, svg);
    sv('line', { x1: x, y1: 22, x2: x, y2: top + (arrows.length + 1) * rowH, stroke: '#bbb' }, svg);
  });
  arrows.forEach((a, k) => {
    const y = top + (k + 1) * rowH;
    const x1 = left + a.from * lw + lw / 2, x2 = left + a.to * lw + lw / 2;
    sv('text', { x: 4, y: y + 3, fill: '#777', text: `${a.at.toFixed(0)} ms` }, svg);
    const g = sv('g', { class: 'msg' }, svg);
    sv('line', { class: `arrow${a.fail ? ' fail' : ''}`, x1, y1: y, x2: x2 + (x2 > x1 ? -4 : 4), y2: y, 'marker-end': 'url(#ladder-arrow)' }, g);
    sv('text', { class: 'arrow-label', x: (x1 + x2) / 2, y: y - 4, 'text-anchor': 'middle', text: a.label }, g);
    sv('title', { text: a.raw }, g);
  });
  const defs = sv('defs', {}, svg);
  const m = sv('marker', { id: 'ladder-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto' }, defs);
  sv('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#333' }, m);
}

// ---------------------------------------------------------------- history

async function loadHistory() {
  const r = await api('GET', '/api/history');
  const ul = $('#history');
  ul.innerHTML = '';
  for (const run of r.data.runs || []) {
    const when = new Date(run.started_us / 1000).toLocaleTimeString();
    const li = el('li', { 'data-run': run.id, title: `${run.scenario} at ${new Date(run.started_us / 1000).toLocaleString()}` }, ul);
    el('span', { class: `status ${run.outcome}`, text: run.outcome }, li);
    const took = run.duration_ms == null ? '' : run.duration_ms < 1000 ? ` ${run.duration_ms.toFixed(0)} ms` : ` ${(run.duration_ms / 1000).toFixed(1)} s`;
    el('span', { text: `${when} ${run.scenario}${took}` }, li);
    const x = el('button', { class: 'x small', title: 'delete this run', text: '✕' }, li);
    x.onclick = async (ev) => { ev.stopPropagation(); await api('DELETE', `/api/history/${run.id}`); loadHistory(); };
    li.onclick = () => replay(run.id);
  }
}

async function replay(id) {
  const r = await api('GET', `/api/history/${id}`);
  if (!r.ok) return say(r.data.error, 'error');
  if (r.data.run.scenario !== S.name) await open(r.data.run.scenario).catch(() => {});
  if (S.following) { S.following.close(); S.following = null; }
  resetRunViews();
  for (const e of r.data.events) onEvent(e, false);
  draw();
  const link = $('#ladder-link');
  link.href = `/api/history/${id}/ladder`;
  link.hidden = false;
  $$('#history li').forEach((li) => li.classList.toggle('sel', li.dataset.run === id));
}

// ---------------------------------------------------------------- settings

async function loadProfiles() {
  const r = await api('GET', '/api/profiles');
  S.profiles = r.ok ? r.data.profiles : {};
  if (!r.ok) $('#profiles-message').textContent = r.data.diagnostics || r.data.error;
}

function profileRow(name, p) {
  const tr = el('tr', {}, $('#profiles tbody'));
  const cell = (key, value, attrs = {}) => {
    const td = el('td', {}, tr);
    const i = el('input', { 'data-key': key, ...attrs }, td);
    i.value = value ?? '';
  };
  cell('name', name);
  cell('host', p.host); cell('port', p.port, { type: 'number' });
  const td = el('td', {}, tr);
  const s = el('select', { 'data-key': 'transport' }, td);
  for (const v of ['udp', 'tcp']) el('option', { value: v, text: v }, s);
  s.value = p.transport || 'udp';
  cell('auth_user', p.auth_user); cell('password', p.password); cell('realm', p.realm); cell('outbound_proxy', p.outbound_proxy);
  el('button', { text: '✕' }, el('td', {}, tr)).onclick = () => tr.remove();
}

async function openSettings() {
  await loadProfiles();
  $('#profiles tbody').innerHTML = '';
  for (const [name, p] of Object.entries(S.profiles)) profileRow(name, p);
  $('#settings').showModal();
}

async function saveProfiles() {
  const profiles = {};
  for (const tr of $$('#profiles tbody tr')) {
    const v = {};
    for (const i of tr.querySelectorAll('[data-key]')) v[i.dataset.key] = i.value.trim();
    if (!v.name) continue;
    profiles[v.name] = { host: v.host, port: v.port ? Number(v.port) : null, transport: v.transport,
      auth_user: v.auth_user || null, password: v.password || null, realm: v.realm || null, outbound_proxy: v.outbound_proxy || null };
  }
  const r = await api('PUT', '/api/profiles', { profiles });
  $('#profiles-message').textContent = r.ok ? `saved ${r.data.saved}` : (r.data.diagnostics || r.data.error);
  if (r.ok) { await loadProfiles(); props(); scheduleCheck(); }
}

// ---------------------------------------------------------------- wiring

function wire() {
  buildPalette();
  $('#create').onclick = create;
  $('#new-name').onkeydown = (e) => { if (e.key === 'Enter') create(); };
  $('#rename').onclick = rename;
  $('#delete').onclick = remove;
  $('#save').onclick = save;
  $('#save-text').onclick = saveText;
  $('#text').oninput = () => { S.textDirty = true; };
  $('#validate').onclick = async () => {
    if ($('#text-view').hidden) {
      const r = await check();
      if (r) say(r.valid ? 'valid' : `${r.diagnostics.filter((d) => d.severity === 'error').length} error(s)`, r.valid ? '' : 'error');
    } else if (S.name) {
      const r = await api('POST', `/api/scenarios/${encodeURIComponent(S.name)}/validate`, $('#text').value, true);
      showDiagText(r.data.valid ? '' : r.data.diagnostics);
      say(r.data.valid ? 'valid' : 'the text has errors (below)', r.data.valid ? '' : 'error');
    }
  };
  $('#run').onclick = run;
  $('#stop').onclick = stop;
  $('#add-instance').onclick = addInstance;
  $('#prune').onclick = async () => { await api('POST', '/api/history/prune', { keep: 20 }); loadHistory(); };
  $('#settings-open').onclick = openSettings;
  $('#settings-close').onclick = () => $('#settings').close();
  $('#profile-add').onclick = () => profileRow('', {});
  $('#profiles-save').onclick = saveProfiles;
  $$('.tab').forEach((t) => { t.onclick = () => tab(t.dataset.tab); });
  $$('input.level').forEach((c) => {
    c.onchange = () => $('#log').classList.toggle(`hide-${c.value}`, !c.checked);
  });
  $('#canvas').addEventListener('pointerdown', () => select(null));
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 's') { e.preventDefault(); save(); return; }
    const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement?.tagName);
    if (!typing && (e.key === 'Delete' || e.key === 'Backspace') && S.sel) deleteSelected();
  });
  window.addEventListener('beforeunload', (e) => { if (S.dirty) e.preventDefault(); });
}

async function init() {
  await loadSchema();
  wire();
  S.events = [];
  await Promise.all([loadList(), loadHistory(), loadProfiles()]);
  // A run in progress (started elsewhere, or before a reload) is followed.
  const cur = await api('GET', '/api/runs/current');
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (cur.ok && (cur.data.running || !wanted || wanted === cur.data.scenario)) {
    if (cur.data.scenario) await open(cur.data.scenario).catch(() => {});
    if (cur.data.running) follow(); else if (cur.data.run_id) replay(cur.data.run_id);
  } else if (wanted) {
    // A link to a scenario (#name.yaml) opens it.
    await open(wanted).catch(() => {});
  }
  draw();
}

init();
