// The dashboard in a real browser: Debian's chromium driven by playwright-core.
//
// Run by tests/integration/dashboard.rs, which starts a gateway and installs playwright-core
// into <target>/browser-test/ (never a browser of its own). Inputs come from the environment:
//
//   GATEWAY_URL      http://127.0.0.1:<port> of a running gateway
//   BROWSER_MODULES  the node_modules directory that holds playwright-core
//   CHROMIUM         the browser to drive (/usr/bin/chromium)
//   SEED             the optimize request to post (data/samples/optimize-seed.json)
//   SCREENSHOT       where to save the page at the end (optional)
//   API_TOKEN        when set: the gateway requires it; the page is opened as /?token=...
//
// It opens the page, waits for the live stream, posts the optimize request and requires the
// route with its stops on the page (table and SVG map) within 2 s, then changes a stop's status
// and posts a GPS fix and requires both on the page within 2 s each. Then it hides one stop
// change of a second route from the page (the WebSocket is routed through the test, which drops
// that message) and requires the page to notice the version gap at the next change, read the
// route again over REST and show both changes within 2 s. The page must log no error (a CSP
// violation or an exception fails the test). Prints one JSON line of timings.

import { readFile } from 'node:fs/promises';

import { env, launch, watch } from './common.mjs';

const gateway = env('GATEWAY_URL');
const token = process.env.API_TOKEN || '';
const SHOW_WITHIN_MS = 2000;

async function call(method, urlPath, body) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(gateway + urlPath, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Wait for `selector` and return how long it took since `since`. */
async function shown(page, selector, since, what) {
  try {
    await page.locator(selector).first().waitFor({ state: 'attached', timeout: SHOW_WITHIN_MS });
  } catch (e) {
    throw new Error(`${what} was not on the page within ${SHOW_WITHIN_MS} ms (${selector})`);
  }
  return Date.now() - since;
}

const browser = await launch();
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  // The live stream passes through here, so that the test can make the page miss one message.
  const drop = { routeId: null, dropped: null };
  await page.routeWebSocket(/\/traffic\/routes\/ws/, (ws) => {
    const server = ws.connectToServer();
    server.onMessage((message) => {
      if (drop.routeId !== null) {
        const m = JSON.parse(message);
        if (m.type === 'route.updated' && m.routeId === drop.routeId) {
          drop.routeId = null;
          drop.dropped = m;
          return;
        }
      }
      ws.send(message);
    });
  });
  watch(page, problems);

  await page.goto(`${gateway}/${token ? `?token=${encodeURIComponent(token)}` : ''}`);
  await page.locator('#stream[data-state="live"]').waitFor({ timeout: 10000 });
  await page.locator('#kafka[data-status]').waitFor({ timeout: 10000 });

  const seed = JSON.parse(await readFile(env('SEED'), 'utf8'));
  let t0 = Date.now();
  const route = await call('POST', '/traffic/routes/optimize', seed);
  const card = `article[data-route-id="${route.routeId}"]`;
  const routeShownMs = await shown(page, `${card} tr[data-stop-id][data-status="pending"]`, t0, 'the new route');
  const rows = await page.locator(`${card} tbody tr[data-stop-id]`).count();
  const dots = await page.locator(`${card} svg g.stop[data-stop-id]`).count();
  if (rows !== seed.stops.length || dots !== seed.stops.length) {
    throw new Error(`expected ${seed.stops.length} stops, the page shows ${rows} rows and ${dots} map points`);
  }
  const first = route.optimizedStops[0].id;
  const second = route.optimizedStops[1].id;

  t0 = Date.now();
  await call('PATCH', `/traffic/routes/${route.routeId}/stops/${encodeURIComponent(first)}`, { status: 'arrived' });
  const arrivedMs = await shown(page, `${card} tr[data-stop-id="${first}"][data-status="arrived"]`, t0, 'the arrived stop');
  await shown(page, `${card} g.stop[data-stop-id="${first}"][data-status="arrived"]`, t0, 'the arrived stop on the map');

  t0 = Date.now();
  await call('PATCH', `/traffic/routes/${route.routeId}/stops/${encodeURIComponent(first)}`, { status: 'completed' });
  const completedMs = await shown(page, `${card} tr[data-stop-id="${first}"][data-status="completed"]`, t0, 'the completed stop');

  // A fix between the two stops: the vehicle appears on the route's map.
  const a = route.optimizedStops[0];
  const b = route.optimizedStops[1];
  t0 = Date.now();
  await call('POST', `/traffic/vehicles/${encodeURIComponent(route.vehicleId)}/positions`, {
    latitude: (a.latitude * 2 + b.latitude) / 3,
    longitude: (a.longitude * 2 + b.longitude) / 3,
    timestamp: new Date().toISOString(),
    speedKmh: 32,
  });
  const vehicleMs = await shown(page, `${card} svg g.vehicle`, t0, 'the vehicle on the map');
  await shown(page, `${card} g.stop.next[data-stop-id="${second}"]`, t0, 'the next stop highlighted');
  await page.locator('#routes-empty').waitFor({ state: 'hidden', timeout: SHOW_WITHIN_MS });

  // A stop change the page never sees (version 2), then one it does (version 3): it must not
  // apply version 3 to the version 1 it holds, but read the route again and show both.
  const third = { id: 'stop-3', latitude: 40.7484, longitude: -73.9857, address: 'Empire State Building, NY' };
  const three = { ...seed, stops: [...seed.stops, third] };
  const other = await call('POST', '/traffic/routes/optimize', three);
  const otherCard = `article[data-route-id="${other.routeId}"]`;
  await shown(page, `${otherCard} tr[data-stop-id][data-status="pending"]`, Date.now(), 'the second route');
  const [missed, next] = [other.optimizedStops[0].id, other.optimizedStops[1].id];
  drop.routeId = other.routeId;
  await call('PATCH', `/traffic/routes/${other.routeId}/stops/${encodeURIComponent(missed)}`, { status: 'arrived' });
  const reread = page.waitForRequest((r) => r.method() === 'GET' &&
    new URL(r.url()).pathname === `/traffic/routes/${other.routeId}`, { timeout: SHOW_WITHIN_MS });
  t0 = Date.now();
  await call('PATCH', `/traffic/routes/${other.routeId}/stops/${encodeURIComponent(next)}`, { status: 'skipped' });
  await reread.catch(() => {
    throw new Error(`the page did not read route ${other.routeId} again after a version gap`);
  });
  const gapMs = await shown(page, `${otherCard} tr[data-stop-id="${missed}"][data-status="arrived"]`, t0, 'the missed change');
  await shown(page, `${otherCard} tr[data-stop-id="${next}"][data-status="skipped"]`, t0, 'the change after the gap');
  if (!drop.dropped || drop.dropped.data.version !== 2) {
    throw new Error(`expected the test to have hidden version 2, it hid ${JSON.stringify(drop.dropped)}`);
  }

  if (process.env.SCREENSHOT) {
    // Let the update highlight fade before the picture.
    await page.waitForTimeout(1300);
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  }
  if (problems.length > 0) throw new Error(`the page reported problems:\n${problems.join('\n')}`);
  console.log(JSON.stringify({ routeShownMs, arrivedMs, completedMs, vehicleMs, gapMs }));
} finally {
  await browser.close();
}
