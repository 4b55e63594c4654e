// A media cluster seen from a browser: two real `vitrine serve` nodes share a database and
// Redis; the seller goes live from the studio page on node A, and a buyer's watch page on node
// B decodes the stream, which B relays from A (one relay on B, one relay leg on A).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, launchBrowser, metric, goLive, keepsDecoding, WAIT } from './harness.mjs';

const redis = process.env.VITRINE_TEST_REDIS_URL;
let nodes = [];
let browser;
let dir;

before(async () => {
  assert.ok(redis, 'VITRINE_TEST_REDIS_URL is set by the test command');
  dir = mkdtempSync(join(tmpdir(), 'vitrine-cluster-'));
  const secret = join(dir, 'cluster.secret');
  writeFileSync(secret, randomBytes(32));
  const name = `b${randomBytes(4).toString('hex')}`;
  const common = ['--redis', redis, '--cluster-secret-file', secret, '--cluster-name', name, '--no-hls'];
  // Node B migrates and owns the SQLite file both nodes share (one machine, as in this test).
  // A starts last: its demo link carries the seller's newest token (every demo start makes one).
  const b = await startServer('', [...common, '--node-id', 'b']);
  const database = `sqlite://${join(b.urls.dataDir, 'vitrine.db')}?mode=rwc`;
  const a = await startServer('', [...common, '--node-id', 'a', '--database-url', database]);
  nodes = [b, a];
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  // A first: B owns the shared database file.
  for (const node of [...nodes].reverse()) await node.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a watch page on another node plays the stream through one relay', async () => {
  const [b, a] = nodes;
  const context = await browser.newContext();
  await goLive(context, a.urls.studio);

  // Node A's demo stream, watched on node B.
  const stream = new URL(a.urls.watch).pathname.split('/').pop();
  const watch = await context.newPage();
  await watch.goto(`${b.urls.base}/watch/${stream}`);
  await watch.waitForFunction(() => document.getElementById('player').videoWidth > 0, null, { timeout: WAIT });
  await keepsDecoding(watch);
  assert.equal(await metric(b.urls.base, 'vitrine_cluster_relays'), 1, 'node B runs one relay');
  assert.equal(await metric(a.urls.base, 'vitrine_relay_legs'), 1, 'node A serves one relay leg');
  assert.equal(await metric(a.urls.base, 'vitrine_subscribers'), 1, 'the viewer is on B, not on A');
  await context.close();
});
