// A seller's studio page behind a load balancer (nginx in front of the cluster's nodes) keeps
// the stream live when its node goes away. Drained, the node closes the page's session and
// answers its new publish with a 307 to another node (a placement token in place of the
// stream key, which Chromium drops on a redirect to another origin). Killed, the page's ICE
// restart and new publish reach another node through the balancer. A watch page on a third
// node keeps decoding throughout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, launchBrowser, metric, goLive, keepsDecoding, longestFreeze, trackFrames, BINARY, WAIT } from './harness.mjs';

const redis = process.env.VITRINE_TEST_REDIS_URL;
let nodes = {};
let balancer;
let front;
let browser;
let dir;
let secret;

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

// nginx in front of the nodes: A first, B and C only once A is gone (a balancer's health
// checks would do the same, later), retrying a refused connection on the next node.
function balancerConfig(port, [a, b, c]) {
  const hostPort = (node) => new URL(node.urls.base).host;
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((what) => `  ${what}_temp_path ${join(dir, `nginx-${what}`)};`).join('\n');
  return `worker_processes 1;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log stderr error;
events { worker_connections 256; }
http {
  access_log off;
${temp}
  upstream cluster {
    server ${hostPort(a)} max_fails=1 fail_timeout=60s;
    server ${hostPort(b)} backup;
    server ${hostPort(c)} backup;
  }
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://cluster;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout non_idempotent;
    }
  }
}
`;
}

async function startBalancer(port) {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, balancerConfig(port, [nodes.a, nodes.b, nodes.c]));
  balancer = spawn('nginx', ['-p', dir, '-c', conf, '-e', 'stderr'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => balancer.once('exit', resolve));
  // Ready when it answers (a node's health through it).
  for (;;) {
    const up = await Promise.race([
      fetch(`${front}/healthz`).then((r) => r.ok, () => false),
      exited.then(() => { throw new Error('nginx exited'); }),
    ]);
    if (up) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

before(async () => {
  assert.ok(redis, 'VITRINE_TEST_REDIS_URL is set by the test command');
  assert.equal(spawnSync('nginx', ['-v']).status, 0, 'nginx is installed by the test command');
  dir = mkdtempSync(join(tmpdir(), 'vitrine-failover-'));
  chmodSync(dir, 0o755);
  secret = join(dir, 'cluster.secret');
  writeFileSync(secret, randomBytes(32));
  const name = `f${randomBytes(4).toString('hex')}`;
  const common = ['--redis', redis, '--cluster-secret-file', secret, '--cluster-name', name, '--no-hls'];
  // Short heartbeats and leases: a killed node's entry and origin lease expire within 1.5 s.
  const config = '[cluster]\nheartbeat_ms = 500\norigin_lease_ms = 1500\n';
  // C owns the SQLite file the nodes share (one machine); A starts last, so its demo link
  // carries the seller's newest token.
  const c = await startServer(config, [...common, '--node-id', 'c']);
  const database = `sqlite://${join(c.urls.dataDir, 'vitrine.db')}?mode=rwc`;
  const b = await startServer(config, [...common, '--node-id', 'b', '--database-url', database]);
  const a = await startServer(config, [...common, '--node-id', 'a', '--database-url', database]);
  nodes = { a, b, c };
  const port = await freePort();
  front = `http://127.0.0.1:${port}`;
  await startBalancer(port);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  balancer?.kill('SIGTERM');
  for (const node of [nodes.a, nodes.b, nodes.c]) await node?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Waits until the studio publishes live on a new session and `node` holds the stream; the time
// it took. (The session's URL is the balancer's unless a node redirected the page.)
async function republishedOn(studio, previous, node) {
  const started = Date.now();
  await studio.waitForFunction(
    (old) => {
      const s = window.vitrineStudio.session;
      return s && s.location !== old && document.getElementById('state').textContent === 'live';
    },
    previous,
    { timeout: WAIT, polling: 100 },
  );
  const took = Date.now() - started;
  assert.equal(await metric(node.urls.base, 'vitrine_cluster_origins'), 1, `${node.urls.base} holds the stream`);
  return took;
}

test('the studio behind a balancer re-publishes on another node when its node drains, then when it dies', async () => {
  const { a, b, c } = nodes;
  const context = await browser.newContext();
  const studioUrl = new URL(a.urls.studio);
  const studio = await goLive(context, `${front}${studioUrl.pathname}${studioUrl.search}${studioUrl.hash}`);
  const first = await studio.evaluate(() => window.vitrineStudio.session.location);
  assert.ok(first.startsWith(front), `A took the publisher the balancer sent it (${first})`);
  assert.equal(await metric(a.urls.base, 'vitrine_cluster_origins'), 1, 'A holds the stream');

  const stream = new URL(a.urls.watch).pathname.split('/').pop();
  const watch = await context.newPage();
  await watch.goto(`${c.urls.base}/watch/${stream}`);
  await watch.waitForFunction(() => document.getElementById('player').videoWidth > 0, null, { timeout: WAIT });
  await keepsDecoding(watch);
  await trackFrames(watch);

  // Drain A: the studio's new publish goes to A through the balancer, which sends it on to B.
  const draining = Date.now();
  const drained = spawnSync(BINARY, ['drain', '--url', a.urls.base, '--cluster-secret-file', secret], { encoding: 'utf8' });
  assert.equal(drained.status, 0, drained.stderr);
  const drainMs = await republishedOn(studio, first, b);
  console.log(`# studio re-published after a drain in ${drainMs} ms`);
  const second = await studio.evaluate(() => window.vitrineStudio.session.location);
  assert.ok(second.startsWith(b.urls.base), `A's 307 sent the page to B, which took it (${second})`);
  await keepsDecoding(watch);
  const drainFreeze = await longestFreeze(watch, draining);
  console.log(`# the watch page on C went ${drainFreeze} ms without a new frame across the drain`);

  // Kill B: the page's restart and new publish reach C through the balancer.
  const killed = Date.now();
  await b.kill();
  const killMs = await republishedOn(studio, second, c);
  console.log(`# studio re-published ${Date.now() - killed} ms after its node was killed (wait ${killMs} ms)`);
  await keepsDecoding(watch);
  const killFreeze = await longestFreeze(watch, killed);
  console.log(`# the watch page on C went ${killFreeze} ms without a new frame across the kill`);
  // The issue's figures: the seller back within 5 s of a kill and viewers within 5 s more; a
  // drain moves viewers with a gap of at most 2 s (the bounds leave a slow machine room).
  assert.ok(drainFreeze <= 4_000, `a drain froze the picture for ${drainFreeze} ms`);
  assert.ok(killFreeze <= 10_000, `a kill froze the picture for ${killFreeze} ms`);
  await context.close();
});
