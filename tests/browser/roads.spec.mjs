// The dashboard's basemap in a real browser: a route planned on a road network (Monaco) is drawn
// over the extract's own roads, fetched from GET /traffic/roads.
//
// Run by tests/integration/roads.rs against a gateway started with routing.osm_file. Inputs:
// GATEWAY_URL, BROWSER_MODULES, CHROMIUM (as for dashboard.spec.mjs), SEED (the optimize request)
// and SCREENSHOT (optional). The page must log no error. Prints one JSON line.

import { readFile } from 'node:fs/promises';

import { env, launch, watch } from './common.mjs';

const gateway = env('GATEWAY_URL');
const browser = await launch();
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  watch(page, problems);
  await page.goto(`${gateway}/`);
  await page.locator('#stream[data-state="live"]').waitFor({ timeout: 10000 });
  const seed = JSON.parse(await readFile(env('SEED'), 'utf8'));
  const res = await fetch(`${gateway}/traffic/routes/optimize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(seed),
  });
  const route = await res.json();
  if (res.status !== 201) throw new Error(`optimize: ${res.status} ${JSON.stringify(route)}`);
  const card = `article[data-route-id="${route.routeId}"]`;
  const t0 = Date.now();
  await page.locator(`${card} svg g.roads polyline.road`).first()
    .waitFor({ state: 'attached', timeout: 5000 })
    .catch(() => { throw new Error('the route was not drawn over the roads within 5 s'); });
  const roads = await page.locator(`${card} svg g.roads polyline.road`).count();
  if (roads < 50) throw new Error(`only ${roads} roads under the route`);
  // The roads lie under the route: the first child of the map.
  const first = await page.locator(`${card} svg.map > :first-child`).getAttribute('class');
  if (first !== 'roads') throw new Error(`the map's first layer is ${first}, not the roads`);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  if (problems.length > 0) throw new Error(`the page reported problems:\n${problems.join('\n')}`);
  console.log(JSON.stringify({ roads, shownMs: Date.now() - t0 }));
} finally {
  await browser.close();
}
