// routegate dashboard: plain JavaScript, no build step, no external resources.
//
// State comes from the REST API and then follows the WebSocket (/traffic/routes/ws, subprotocol
// routegate.v1). Every message's seq is a resume point: the page keeps the last one and
// reconnects with since=<seq> after a drop, so no event is missed. `reset` reloads over REST,
// `lagged` reconnects at once. Every route carries a version: route.optimized and a re-plan's
// route.updated bring the whole route, a stop change's route.updated only the change, which
// applies to the version just before it; a route held at another version is read again over
// REST. A newer version always wins, so the REST load and the live stream may interleave in any
// order. Data only ever reaches the DOM as text nodes and attribute values (never parsed as
// HTML), and the page's CSP allows no inline script.
'use strict';

(() => {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const LIST_LIMIT = 50; // routes loaded over REST (newest first)
  const MAX_CARDS = 60; // routes kept on the page
  const HEALTH_POLL_MS = 5000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const FIRST_HELLO_WAIT_MS = 2000; // load over REST anyway if the stream does not open
  const STOP_ROWS = 12; // table rows per route around the next stop (the map shows all)
  const ACTIVITY_MAX = 40;
  const POSITION_LOG_EVERY_MS = 15000; // one activity line per vehicle at most this often

  const token = new URLSearchParams(location.search).get('token') || '';

  const state = {
    routes: new Map(), // routeId -> route JSON (REST shape, kept current by the events)
    vehicles: new Map(), // vehicleId -> last fix {latitude, longitude, timestamp, routeId, ...}
    cards: new Map(), // routeId -> rendered <article>
    lastSeq: null,
    ws: null,
    helloSeen: false,
    lagged: false,
    backoff: BACKOFF_MIN_MS,
    retryTimer: 0,
    countdown: 0,
    reloading: null,
    seen: null, // route ids the current replacing load has met
    refetch: new Map(), // routeId -> the version a REST read in flight must reach
    dirty: new Map(), // routeId -> flash the card
    sideDirty: false,
    frame: 0,
    notices: new Map(),
    positionLogged: new Map(),
  };

  const $ = (id) => document.getElementById(id);

  // ---------- DOM helpers (text only) ----------

  function el(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function svg(tag, attrs, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function build(node, attrs, children) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined && v !== false) node.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  function setText(id, text, title) {
    const node = $(id);
    node.textContent = text;
    if (title !== undefined) node.title = title;
  }

  // ---------- formatting ----------

  // Ids are shown by their tail: UUIDv7 route ids share their leading (time) digits.
  const short = (id) => {
    if (typeof id !== 'string') return '?';
    return id.length > 12 ? `…${id.slice(-8)}` : id;
  };
  const num = (n) => (typeof n === 'number' && Number.isFinite(n) ? n : null);
  const fmtInt = (n) => (num(n) === null ? '–' : Math.round(n).toLocaleString());

  function fmtDistance(m) {
    if (num(m) === null) return '–';
    return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(1)} km`;
  }

  function fmtDuration(s) {
    if (num(s) === null) return '–';
    const min = Math.round(s / 60);
    if (min < 60) return `${min} min`;
    return `${Math.floor(min / 60)} h ${String(min % 60).padStart(2, '0')} min`;
  }

  function fmtAge(s) {
    if (num(s) === null) return '–';
    if (s < 60) return `${Math.round(s)} s`;
    return fmtDuration(s);
  }

  function fmtTime(iso, seconds) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return '–';
    const opts = { hour: '2-digit', minute: '2-digit' };
    if (seconds) opts.second = '2-digit';
    const d = new Date(t);
    const today = new Date().toDateString() === d.toDateString();
    return (today ? '' : d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ') +
      d.toLocaleTimeString([], opts);
  }

  function fmtDelay(s) {
    if (num(s) === null) return null;
    if (Math.abs(s) < 60) return 'on time';
    return (s > 0 ? '+' : '−') + fmtDuration(Math.abs(s)) + (s > 0 ? ' late' : ' early');
  }

  function fmtBytes(b) {
    if (num(b) === null) return '';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i += 1; }
    return `${b.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  const label = (status) => String(status || '').replace('_', ' ');

  // ---------- notices ----------

  function notice(key, text) {
    if (text) state.notices.set(key, text); else state.notices.delete(key);
    const first = state.notices.values().next();
    const box = $('notice');
    box.hidden = first.done;
    box.textContent = first.done ? '' : first.value;
  }

  function problem(res) {
    if (res.status === 401) {
      return 'The gateway requires an API token: open this page as /?token=<token>.';
    }
    const msg = res.body && typeof res.body.message === 'string' ? res.body.message : 'no details';
    return `The gateway answered ${res.status}: ${msg}`;
  }

  // ---------- REST ----------

  async function api(path) {
    const headers = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(path, { headers, cache: 'no-store' });
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    return { status: res.status, ok: res.ok, body };
  }

  async function eachLimited(items, limit, f) {
    let next = 0;
    const worker = async () => {
      while (next < items.length) await f(items[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  }

  // Load the newest routes over REST. With `replace` (after a reset: the stream could not be
  // replayed, so what the page holds may be stale in any way) routes that neither the REST
  // answer nor the live stream mentioned during the load are dropped.
  function loadState(replace) {
    if (state.reloading) {
      return replace ? state.reloading.then(() => loadState(true)) : state.reloading;
    }
    state.seen = replace ? new Set() : null;
    state.reloading = (async () => {
      try {
        const list = await api(`/traffic/routes?limit=${LIST_LIMIT}`);
        if (!list.ok || !list.body || !Array.isArray(list.body.routes)) {
          notice('rest', problem(list));
          return;
        }
        const ids = list.body.routes.map((r) => r.routeId).filter((id) => typeof id === 'string');
        await eachLimited(ids, 6, async (id) => {
          const r = await api(`/traffic/routes/${encodeURIComponent(id)}`);
          if (r.ok) putRoute(r.body, false);
        });
        if (state.seen) dropUnseen(state.seen);
        notice('rest', null);
      } catch (e) {
        notice('rest', `Cannot reach the gateway: ${e.message}`);
      } finally {
        state.reloading = null;
        state.seen = null;
        state.sideDirty = true;
        schedule();
      }
    })();
    return state.reloading;
  }

  function dropUnseen(seen) {
    for (const id of [...state.routes.keys()]) {
      if (seen.has(id)) continue;
      state.routes.delete(id);
      const card = state.cards.get(id);
      if (card) card.remove();
      state.cards.delete(id);
    }
    for (const [vid, fix] of [...state.vehicles]) {
      if (!fix.routeId || !state.routes.has(fix.routeId)) state.vehicles.delete(vid);
    }
    $('routes-empty').hidden = state.routes.size > 0;
  }

  async function pollHealth() {
    try {
      const res = await api('/traffic/routes/kafka-health');
      if (res.body && typeof res.body.status === 'string') {
        applyHealth(res.body);
        notice('health', null);
      } else {
        notice('health', problem(res));
      }
    } catch (e) {
      setText('kafka', 'no answer', e.message);
      $('kafka').className = 'pill bad';
    }
  }

  // ---------- header ----------

  const HEALTH_CLASS = { healthy: 'ok', degraded: 'warn', unhealthy: 'bad' };

  function applyHealth(h) {
    const pill = $('kafka');
    pill.textContent = h.status;
    pill.title = typeof h.message === 'string' ? h.message : '';
    pill.className = `pill ${HEALTH_CLASS[h.status] || 'neutral'}`;
    pill.dataset.status = h.status;
    setText('circuit', label(h.circuit));
    const bytes = num(h.queueBytes) ? ` (${fmtBytes(h.queueBytes)})` : '';
    setText('queue-depth', fmtInt(h.queueDepth) + bytes);
    setText('queue-age', h.queueDepth ? fmtAge(h.oldestEventAgeSeconds) : '–');
    setText('dead-letters', fmtInt(h.deadLetters));
  }

  function applyConnectivity(c) {
    if (!c || typeof c.circuit !== 'string') return;
    setText('circuit', label(c.circuit) + (c.reachable ? '' : ' · unreachable'));
  }

  function setStream(text, kind) {
    const pill = $('stream');
    pill.textContent = text;
    pill.className = `pill ${kind}`;
    pill.dataset.state = kind === 'ok' ? 'live' : text.split(' ')[0];
    setText('stream-seq', state.lastSeq === null ? '' : `seq ${state.lastSeq}`);
  }

  // ---------- WebSocket ----------

  function connect() {
    clearTimeout(state.retryTimer);
    clearInterval(state.countdown);
    const since = state.lastSeq === null ? '' : `?since=${state.lastSeq}`;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const protocols = ['routegate.v1'];
    if (token) protocols.push(`bearer.${token}`);
    let ws;
    try {
      ws = new WebSocket(`${scheme}//${location.host}/traffic/routes/ws${since}`, protocols);
    } catch (e) {
      notice('ws', `Cannot open the live stream: ${e.message}`);
      reconnectLater();
      return;
    }
    state.ws = ws;
    setStream('connecting', 'neutral');
    ws.onmessage = (ev) => { if (ws === state.ws) receive(ev.data); };
    ws.onclose = (ev) => {
      if (ws !== state.ws) return;
      state.ws = null;
      if (state.lagged) {
        state.lagged = false;
        reconnectLater(100);
      } else {
        activity(`Live stream closed (${ev.code || 'no code'}); resuming from seq ${state.lastSeq ?? '–'}`);
        reconnectLater();
      }
    };
  }

  function reconnectLater(fixed) {
    const wait = fixed ?? Math.round(state.backoff * (0.8 + Math.random() * 0.4));
    if (fixed === undefined) state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX_MS);
    const due = Date.now() + wait;
    const show = () => {
      const s = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setStream(`reconnecting in ${s} s`, 'warn');
    };
    show();
    clearInterval(state.countdown);
    state.countdown = setInterval(show, 1000);
    state.retryTimer = setTimeout(connect, wait);
  }

  function receive(text) {
    let msg;
    try { msg = JSON.parse(text); } catch (_) { return; }
    if (!msg || typeof msg.type !== 'string') return;
    handle(msg);
    // Handled: everything up to msg.seq is applied, so this is where a resume starts.
    if (typeof msg.seq === 'number') state.lastSeq = msg.seq;
    if (state.ws && msg.type !== 'lagged') setStream('live', 'ok');
  }

  function handle(msg) {
    const data = msg.data && typeof msg.data === 'object' ? msg.data : {};
    switch (msg.type) {
      case 'hello':
        state.backoff = BACKOFF_MIN_MS;
        notice('ws', null);
        applyConnectivity(data.kafka);
        activity(`Live stream connected at seq ${msg.seq}`);
        if (!state.helloSeen) {
          // Loaded after the stream is registered: nothing falls between the two.
          state.helloSeen = true;
          loadState();
        }
        break;
      case 'route.optimized':
        putRoute(data, true);
        activity(describeRouteEvent(msg.type, data), msg.time);
        break;
      case 'route.updated':
        if (Array.isArray(data.optimizedStops)) putRoute(data, true); else applyChange(data);
        activity(describeRouteEvent(msg.type, data), msg.time);
        break;
      case 'vehicle.position':
        onPosition(msg, data);
        break;
      case 'kafka.record': {
        // A record another system published, forwarded by a [[kafka.consume]] entry.
        const who = msg.vehicleId || data.key;
        activity(`Kafka ${data.topic} ${data.partition}/${data.offset}${who ? ` for vehicle ${who}` : ''}`, msg.time);
        break;
      }
      case 'kafka.status':
        applyConnectivity(data);
        activity(`Kafka ${data.reachable ? 'reachable' : 'unreachable'}, circuit ${label(data.circuit)}`, msg.time);
        pollHealth();
        break;
      case 'reset':
        activity(`Stream reset (${data.reason || 'no reason'}): reloading routes`, msg.time);
        loadState(true);
        break;
      case 'lagged':
        state.lagged = true;
        activity(`Fell behind the stream: resuming from seq ${msg.seq}`, msg.time);
        setStream('resuming', 'warn');
        break;
      default:
        break;
    }
  }

  // ---------- state ----------

  // A whole route (REST, route.optimized, a re-plan): kept unless the page holds a newer version.
  function putRoute(route, live) {
    if (!route || typeof route.routeId !== 'string' || !Array.isArray(route.optimizedStops)) return;
    if (state.seen) state.seen.add(route.routeId);
    const old = state.routes.get(route.routeId);
    if (old && isNewer(old, route)) return;
    if (old && route.delaySeconds === undefined) route.delaySeconds = old.delaySeconds;
    state.routes.set(route.routeId, route);
    if (route.lastPosition) notePosition(route.vehicleId, { ...route.lastPosition, routeId: route.routeId });
    markDirty(route.routeId, live);
  }

  function isNewer(a, b) {
    if (num(a.version) !== null && num(b.version) !== null) return a.version > b.version;
    return Date.parse(a.updatedAt) > Date.parse(b.updatedAt);
  }

  // Set or, for null, remove a field (the REST shape leaves absent values out).
  function assign(obj, key, value) {
    if (value === null || value === undefined) delete obj[key]; else obj[key] = value;
  }

  // A stop change: only what changed. It applies to the version just before its own; anything
  // else means the page missed a change (or never held the route), so it reads the route again.
  function applyChange(d) {
    if (!d || typeof d.routeId !== 'string' || num(d.version) === null) return;
    if (state.seen) state.seen.add(d.routeId);
    const route = state.routes.get(d.routeId);
    if (route && num(route.version) !== null && d.version <= route.version) return; // old news
    const stop = route && d.stop && route.optimizedStops.find((s) => s.id === d.stop.id);
    if (!route || route.version !== d.version - 1 || !stop) {
      if (route || wouldShow(d.routeId)) refetchRoute(d.routeId, d.version);
      return;
    }
    for (const key of ['status', 'arrivedAt', 'finishedAt', 'note']) assign(stop, key, d.stop[key]);
    const etas = d.etas && typeof d.etas === 'object' ? d.etas : {};
    for (const s of route.optimizedStops) if (s.id in etas) assign(s, 'eta', etas[s.id]);
    for (const key of ['version', 'status', 'eventId', 'updatedAt', 'delaySeconds', 'lastPosition']) {
      assign(route, key, d[key]);
    }
    if (route.lastPosition) notePosition(route.vehicleId, { ...route.lastPosition, routeId: route.routeId });
    markDirty(route.routeId, true);
  }

  // Whether a route the page does not hold belongs among the cards (they show the newest; route
  // ids are UUIDv7, so they sort by creation).
  function wouldShow(routeId) {
    if (state.routes.size < MAX_CARDS) return true;
    for (const id of state.routes.keys()) if (id < routeId) return true;
    return false;
  }

  // Read the route over REST until the page holds at least `version` (one read at a time per
  // route; a change seen meanwhile raises the target: the read may have been answered before
  // that change was written).
  async function refetchRoute(routeId, version) {
    const inFlight = state.refetch.has(routeId);
    state.refetch.set(routeId, Math.max(version, state.refetch.get(routeId) ?? 0));
    if (inFlight) return;
    try {
      for (let attempt = 0; attempt < 3; attempt += 1) {
        const r = await api(`/traffic/routes/${encodeURIComponent(routeId)}`);
        if (!r.ok) {
          if (r.status !== 404) activity(`Could not reload route ${short(routeId)}: ${problem(r)}`);
          return;
        }
        putRoute(r.body, true);
        const held = state.routes.get(routeId);
        if (held && held.version >= state.refetch.get(routeId)) return;
      }
    } catch (e) {
      activity(`Could not reload route ${short(routeId)}: ${e.message}`);
    } finally {
      state.refetch.delete(routeId);
    }
  }

  function notePosition(vehicleId, fix) {
    if (typeof vehicleId !== 'string' || num(fix.latitude) === null || num(fix.longitude) === null) return false;
    const old = state.vehicles.get(vehicleId);
    if (old && Date.parse(old.timestamp) > Date.parse(fix.timestamp)) return false;
    state.vehicles.set(vehicleId, fix);
    // The vehicle left the route it was drawn on: take it off that map.
    if (old && old.routeId && old.routeId !== fix.routeId && state.routes.has(old.routeId)) {
      markDirty(old.routeId, false);
    }
    state.sideDirty = true;
    return true;
  }

  function onPosition(msg, data) {
    const vehicleId = msg.vehicleId || data.vehicleId;
    const routeId = msg.routeId || data.routeId;
    if (!notePosition(vehicleId, { ...data, routeId })) return;
    const route = routeId && state.routes.get(routeId);
    if (route) {
      if (num(data.delaySeconds) !== null) route.delaySeconds = data.delaySeconds;
      markDirty(routeId, false);
    }
    const last = state.positionLogged.get(vehicleId) || 0;
    if (Date.now() - last >= POSITION_LOG_EVERY_MS) {
      state.positionLogged.set(vehicleId, Date.now());
      const speed = num(data.speedKmh) === null ? '' : `, ${Math.round(data.speedKmh)} km/h`;
      activity(`Vehicle ${short(vehicleId)} at ${data.latitude.toFixed(4)}, ${data.longitude.toFixed(4)}${speed}`, msg.time);
    }
    schedule();
  }

  function describeRouteEvent(type, r) {
    const id = short(r.routeId);
    const c = r.change;
    if (type === 'route.optimized') {
      const n = Array.isArray(r.optimizedStops) ? r.optimizedStops.length : 0;
      return `Route ${id} planned: ${n} stops, ${fmtDistance(r.totalDistanceMeters)}`;
    }
    if (c && c.type === 'stop_status') return `Route ${id}: ${c.stopId} ${c.from} → ${c.to}`;
    if (c && c.type === 'reoptimized') return `Route ${id} re-planned: ${c.remainingStops} stops left`;
    return `Route ${id} updated`;
  }

  function activity(text, time) {
    const list = $('activity');
    const at = time || new Date().toISOString();
    list.prepend(el('li', null, el('time', { datetime: at }, fmtTime(at, true)), el('span', { class: 'what' }, text)));
    while (list.children.length > ACTIVITY_MAX) list.lastChild.remove();
  }

  // ---------- rendering ----------

  function markDirty(routeId, flash) {
    state.dirty.set(routeId, Boolean(flash) || state.dirty.get(routeId) === true);
    state.sideDirty = true;
    schedule();
  }

  function schedule() {
    if (!state.frame) state.frame = requestAnimationFrame(flush);
  }

  function flush() {
    state.frame = 0;
    for (const [id, flash] of state.dirty) renderRoute(id, flash);
    state.dirty.clear();
    trimCards();
    if (state.sideDirty) {
      state.sideDirty = false;
      renderSide();
    }
  }

  function renderRoute(id, flash) {
    const route = state.routes.get(id);
    if (!route) return;
    const card = routeCard(route);
    if (flash) card.classList.add('updated');
    const old = state.cards.get(id);
    if (old) {
      old.replaceWith(card);
    } else {
      const grid = $('routes');
      const created = Date.parse(route.createdAt);
      const after = [...grid.children].find((c) => Number(c.dataset.created) < created);
      grid.insertBefore(card, after || null);
    }
    state.cards.set(id, card);
    $('routes-empty').hidden = true;
  }

  function trimCards() {
    const grid = $('routes');
    while (grid.children.length > MAX_CARDS) {
      const last = grid.lastElementChild;
      state.cards.delete(last.dataset.routeId);
      state.routes.delete(last.dataset.routeId);
      last.remove();
    }
  }

  function nextStopIndex(stops) {
    const i = stops.findIndex((s) => s.status === 'pending' || s.status === 'arrived');
    return i;
  }

  function stopEta(route, stop) {
    if (stop.status === 'pending') {
      const delay = num(route.delaySeconds);
      if (delay !== null) return new Date(Date.parse(stop.arrivalTime) + delay * 1000).toISOString();
      return stop.eta || stop.arrivalTime;
    }
    if (stop.status === 'arrived') return stop.arrivedAt || stop.arrivalTime;
    return stop.finishedAt || stop.arrivalTime;
  }

  function routeCard(route) {
    const stops = route.optimizedStops;
    const done = stops.filter((s) => ['completed', 'skipped', 'failed'].includes(s.status)).length;
    const fix = state.vehicles.get(route.vehicleId);
    const vehicle = fix && fix.routeId === route.routeId ? fix : null;
    const delay = route.status === 'completed' ? null : fmtDelay(route.delaySeconds);
    const headingId = `route-${route.routeId}`;
    const meta = el('dl', { class: 'route-meta' },
      el('div', null, el('dt', null, 'Vehicle'), el('dd', { title: route.vehicleId }, short(route.vehicleId))),
      el('div', null, el('dt', null, 'Stops'), el('dd', null, `${done}/${stops.length} done`)),
      el('div', null, el('dt', null, 'Distance'), el('dd', null, fmtDistance(route.totalDistanceMeters))),
      el('div', null, el('dt', null, 'Duration'), el('dd', null, fmtDuration(route.totalDurationSeconds))),
      el('div', null, el('dt', null, 'Finish'), el('dd', null, fmtTime(route.finishTime))),
      delay && el('div', null, el('dt', null, 'Delay'),
        el('dd', { class: route.delaySeconds >= 60 ? 'late' : null }, delay)));
    const warnings = Array.isArray(route.warnings) && route.warnings.length > 0 &&
      el('ul', { class: 'warnings' }, ...route.warnings.map((w) => el('li', null, String(w))));
    return el('article', {
      class: 'route',
      'data-route-id': route.routeId,
      'data-status': route.status,
      'data-created': Date.parse(route.createdAt) || 0,
      'aria-labelledby': headingId,
    },
    el('div', { class: 'route-head' },
      el('h3', { id: headingId, title: route.routeId }, `Route ${short(route.routeId)}`),
      el('span', { class: `pill status-${route.status}` }, label(route.status))),
    meta,
    drawMap(route, vehicle),
    warnings,
    stopTable(route));
  }

  function stopTable(route) {
    const stops = route.optimizedStops;
    const next = nextStopIndex(stops);
    const from = Math.max(0, Math.min((next < 0 ? stops.length : next) - 3, stops.length - STOP_ROWS));
    const shown = stops.slice(from, from + STOP_ROWS);
    const rows = shown.map((s) => {
      const when = stopEta(route, s);
      const late = s.timeWindowMet === false;
      return el('tr', { 'data-stop-id': s.id, 'data-status': s.status },
        el('td', { class: 'seq' }, s.sequence),
        el('td', { class: 'addr' }, s.id, s.address ? el('small', null, s.address) : null),
        el('td', null, el('span', { class: `stop-status ${s.status}` }, s.status)),
        el('td', { class: `num${late ? ' late' : ''}`, title: late ? 'outside its time window' : null },
          fmtTime(when)),
        el('td', { class: 'num' }, fmtDistance(s.distanceFromPreviousMeters)));
    });
    const table = el('table', { class: 'stops' },
      el('thead', null, el('tr', null,
        el('th', { class: 'seq', scope: 'col' }, '#'),
        el('th', { scope: 'col' }, 'Stop'),
        el('th', { scope: 'col' }, 'Status'),
        el('th', { scope: 'col' }, 'ETA / at'),
        el('th', { scope: 'col' }, 'Leg'))),
      el('tbody', null, ...rows));
    const hidden = stops.length - shown.length;
    if (hidden === 0) return table;
    return el('div', null, table,
      el('p', { class: 'more' }, `${from} earlier and ${stops.length - from - shown.length} later stops on the map only`));
  }

  // ---------- the map: an equirectangular projection fitted to the route ----------

  const W = 480;
  const H = 300;
  const PAD = 24;

  function projection(points) {
    const lons = points.map((p) => p[0]);
    const lats = points.map((p) => p[1]);
    const [minLon, maxLon] = [Math.min(...lons), Math.max(...lons)];
    const [minLat, maxLat] = [Math.min(...lats), Math.max(...lats)];
    const kx = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
    const spanX = Math.max((maxLon - minLon) * kx, 1e-6);
    const spanY = Math.max(maxLat - minLat, 1e-6);
    const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
    const offX = (W - spanX * scale) / 2;
    const offY = (H - spanY * scale) / 2;
    return ([lon, lat]) => [offX + (lon - minLon) * kx * scale, H - offY - (lat - minLat) * scale];
  }

  const valid = (p) => Array.isArray(p) && num(p[0]) !== null && num(p[1]) !== null;
  const fmtPt = ([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`;

  // The extract's own roads under a route planned on them (costModel "road"): fetched once per
  // box (the box snapped outward to a 0.01° grid, so a moving vehicle rarely asks again).
  const basemaps = new Map();

  function drawRoads(map, route, all, project) {
    const model = route.optimization && route.optimization.costModel;
    if (!model || model.kind !== 'road') return;
    const lons = all.map((p) => p[0]);
    const lats = all.map((p) => p[1]);
    const grid = (v, up) => (up ? Math.ceil(v * 100) : Math.floor(v * 100)) / 100;
    const box = [grid(Math.min(...lons), false), grid(Math.min(...lats), false),
      grid(Math.max(...lons), true), grid(Math.max(...lats), true)];
    if (box[2] - box[0] > 0.5 || box[3] - box[1] > 0.5) return;
    const span = Math.max(box[2] - box[0], box[3] - box[1], 0.001);
    const zoom = Math.max(10, Math.min(18, Math.round(Math.log2(360 / span)) + 1));
    const key = `${box.map((v) => v.toFixed(2)).join(',')}&zoom=${zoom}`;
    if (!basemaps.has(key)) {
      basemaps.set(key, api(`/traffic/roads?bbox=${key}`)
        .then((r) => (r.ok ? r.body : null))
        .catch(() => null));
    }
    basemaps.get(key).then((fc) => {
      if (!fc || !Array.isArray(fc.features)) return;
      const g = svg('g', { class: 'roads', 'aria-hidden': 'true' });
      for (const f of fc.features) {
        const c = f.geometry && Array.isArray(f.geometry.coordinates) ? f.geometry.coordinates.filter(valid) : [];
        if (c.length < 2) continue;
        const major = f.properties && f.properties.highway;
        g.append(svg('polyline', { class: major ? 'road major' : 'road', points: c.map(project).map(fmtPt).join(' ') }));
      }
      map.insertBefore(g, map.firstChild);
    });
  }

  function drawMap(route, vehicle) {
    const stops = route.optimizedStops.filter((s) => num(s.latitude) !== null && num(s.longitude) !== null);
    const stopPts = stops.map((s) => [s.longitude, s.latitude]);
    const geometry = route.geometry && Array.isArray(route.geometry.coordinates)
      ? route.geometry.coordinates.filter(valid) : [];
    const line = geometry.length >= 2 ? geometry : stopPts;
    const vehiclePt = vehicle ? [vehicle.longitude, vehicle.latitude] : null;
    const all = line.concat(stopPts, vehiclePt ? [vehiclePt] : []);
    const map = svg('svg', {
      class: 'map',
      viewBox: `0 0 ${W} ${H}`,
      role: 'img',
      'aria-label': `Map of route ${short(route.routeId)}: ${stops.length} stops in order`,
    });
    if (all.length === 0) return map;
    const project = projection(all);
    const xy = line.map(project);
    drawRoads(map, route, all, project);

    if (xy.length >= 2) {
      map.append(svg('polyline', { class: 'leg', points: xy.map(fmtPt).join(' ') }));
      const lead = stops.findIndex((s) => !['completed', 'skipped', 'failed'].includes(s.status));
      const through = lead < 0 ? stops.length : lead;
      if (through >= 2) {
        const donePts = stopPts.slice(0, through).map(project);
        map.append(svg('polyline', { class: 'leg done', points: donePts.map(fmtPt).join(' ') }));
      }
      if (xy.length <= 200) xy.slice(1).forEach((b, i) => arrow(map, xy[i], b));
    }
    if (geometry.length > 0 && stopPts.length > 0 &&
        (geometry[0][0] !== stopPts[0][0] || geometry[0][1] !== stopPts[0][1])) {
      const [x, y] = project(geometry[0]);
      map.append(svg('rect', { class: 'start', x: x - 5, y: y - 5, width: 10, height: 10 },
        svg('title', null, 'start')));
    }

    const next = nextStopIndex(route.optimizedStops);
    const small = stops.length > 40;
    stops.forEach((s, i) => {
      const [x, y] = project(stopPts[i]);
      const isNext = route.optimizedStops[next] === s;
      const g = svg('g', {
        class: `stop ${s.status}${isNext ? ' next' : ''}`,
        'data-stop-id': s.id,
        'data-status': s.status,
      },
      svg('title', null, `${s.sequence}. ${s.id}${s.address ? ` · ${s.address}` : ''} (${s.status})`),
      svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: small ? 5 : 11 }),
      small ? null : svg('text', { x: x.toFixed(1), y: y.toFixed(1) }, s.sequence));
      map.append(g);
    });

    if (vehiclePt) {
      const [x, y] = project(vehiclePt);
      const speed = num(vehicle.speedKmh) === null ? '' : `, ${Math.round(vehicle.speedKmh)} km/h`;
      map.append(svg('g', { class: 'vehicle', 'data-vehicle-id': route.vehicleId },
        svg('title', null, `vehicle ${route.vehicleId} at ${fmtTime(vehicle.timestamp, true)}${speed}`),
        svg('rect', {
          x: (x - 7).toFixed(1), y: (y - 7).toFixed(1), width: 14, height: 14, rx: 2,
          transform: `rotate(45 ${x.toFixed(1)} ${y.toFixed(1)})`,
        })));
    }
    return map;
  }

  function arrow(map, a, b) {
    const dx = b[0] - a[0];
    const dy = b[1] - a[1];
    if (Math.hypot(dx, dy) < 40) return;
    const angle = (Math.atan2(dy, dx) * 180) / Math.PI;
    const mx = (a[0] + b[0]) / 2;
    const my = (a[1] + b[1]) / 2;
    map.append(svg('path', {
      class: 'arrow',
      d: 'M -5 -4.5 L 6 0 L -5 4.5 z',
      transform: `translate(${mx.toFixed(1)} ${my.toFixed(1)}) rotate(${angle.toFixed(1)})`,
    }));
  }

  // ---------- side panel ----------

  function renderSide() {
    const counts = { planned: 0, in_progress: 0, completed: 0 };
    const active = new Map(); // vehicleId -> newest route not completed (else newest)
    for (const r of state.routes.values()) {
      if (r.status in counts) counts[r.status] += 1;
      const cur = active.get(r.vehicleId);
      const better = !cur ||
        (cur.status === 'completed' && r.status !== 'completed') ||
        ((cur.status === 'completed') === (r.status === 'completed') && Date.parse(r.createdAt) > Date.parse(cur.createdAt));
      if (better) active.set(r.vehicleId, r);
    }
    for (const [k, v] of Object.entries(counts)) setText(`count-${k}`, String(v));
    const ids = new Set([...active.keys(), ...state.vehicles.keys()]);
    setText('count-vehicles', String(ids.size));
    const sorted = [...ids].sort((a, b) => {
      const ta = state.vehicles.has(a) ? Date.parse(state.vehicles.get(a).timestamp) : 0;
      const tb = state.vehicles.has(b) ? Date.parse(state.vehicles.get(b).timestamp) : 0;
      return tb - ta || a.localeCompare(b);
    });
    const list = $('vehicles');
    list.replaceChildren(...sorted.slice(0, 50).map((id) => vehicleItem(id, active.get(id), state.vehicles.get(id))));
    $('vehicles-empty').hidden = ids.size > 0;
  }

  function vehicleItem(id, route, fix) {
    const lines = [];
    if (route) {
      const next = route.optimizedStops[nextStopIndex(route.optimizedStops)];
      lines.push(`route ${short(route.routeId)} · ${label(route.status)}` +
        (next ? ` · next ${next.id} ${fmtTime(stopEta(route, next))}` : ''));
      const delay = route.status === 'completed' ? null : fmtDelay(route.delaySeconds);
      if (delay) lines.push(delay);
    }
    if (fix) {
      const speed = num(fix.speedKmh) === null ? '' : ` · ${Math.round(fix.speedKmh)} km/h`;
      lines.push(`fix ${fmtTime(fix.timestamp, true)} · ${fix.latitude.toFixed(4)}, ${fix.longitude.toFixed(4)}${speed}`);
    } else {
      lines.push('no position yet');
    }
    return el('li', { 'data-vehicle-id': id },
      el('div', { class: 'id', title: id }, short(id)),
      ...lines.map((l) => el('div', { class: 'muted' }, l)));
  }

  // ---------- start ----------

  connect();
  setTimeout(() => { if (!state.helloSeen) loadState(); }, FIRST_HELLO_WAIT_MS);
  pollHealth();
  setInterval(pollHealth, HEALTH_POLL_MS);
})();
