// What the browser specs share: their inputs from the environment, the browser they drive, and
// the page errors that fail them.

import { createRequire } from 'node:module';
import path from 'node:path';

/** A required environment variable. */
export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

/** Debian's chromium (CHROMIUM) driven by playwright-core from BROWSER_MODULES. */
export async function launch() {
  const require = createRequire(path.join(env('BROWSER_MODULES'), 'noop.js'));
  const { chromium } = require('playwright-core');
  return chromium.launch({
    executablePath: env('CHROMIUM'),
    headless: true,
    // Background networking off: this machine's network is closed and Chromium would otherwise
    // keep trying (and failing) to reach Google's services.
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Collects the page's exceptions and console errors into `problems`. */
export function watch(page, problems) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // kafka-health answers 503 while Kafka is not healthy (there is no broker here): expected.
    const health = m.location().url.endsWith('/traffic/routes/kafka-health');
    if (m.type() === 'error' && !health) problems.push(`console: ${m.text()} (${m.location().url})`);
  });
}
