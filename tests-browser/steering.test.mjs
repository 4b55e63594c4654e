// Content steering between two CDNs: the server is configured with two pathways, "cdn-a" (a
// CDN that is down: nothing listens at its address) first and "cdn-b" (a caching-proxy
// stand-in in this process that passes requests to the server and counts them). The master
// playlist lists every rendition on both and names the steering manifest; hls.js on the watch
// page starts on cdn-a, fails there, moves to cdn-b and plays, with no fatal error.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { useServerAndBrowser, goLive, WAIT } from './harness.mjs';

// A port nothing listens on: the CDN that is down.
const down = await new Promise((resolve) => {
  const probe = createServer();
  probe.listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});

// The CDN that works: passes GETs to the origin, counts what it carried.
const carried = { playlists: 0, media: 0 };
const cdn = createServer(async (req, res) => {
  try {
    const answer = await fetch(`${env.urls.base}${req.url}`);
    if (answer.ok) {
      if (req.url.includes('.m3u8')) carried.playlists += 1;
      if (/\.(m4s|mp4)$/.test(req.url.split('?')[0])) carried.media += 1;
    }
    const headers = {};
    for (const name of ['content-type', 'cache-control', 'access-control-allow-origin']) {
      const value = answer.headers.get(name);
      if (value) headers[name] = value;
    }
    res.writeHead(answer.status, headers);
    res.end(Buffer.from(await answer.arrayBuffer()));
  } catch (e) {
    res.writeHead(502);
    res.end(String(e));
  }
});
const cdnPort = await new Promise((resolve) => cdn.listen(0, '127.0.0.1', () => resolve(cdn.address().port)));

const env = useServerAndBrowser(`
[hls]
x264_preset = "ultrafast"
[[hls.renditions]]
height = 360
bitrate_kbps = 600
[[hls.pathways]]
id = "cdn-a"
base = "http://127.0.0.1:${down}"
[[hls.pathways]]
id = "cdn-b"
base = "http://127.0.0.1:${cdnPort}"
`);

after(() => cdn.close());

test('hls.js moves from a CDN that is down to the next pathway and plays', async () => {
  const context = await env.browser.newContext();
  await goLive(context, env.urls.studio);
  const watch = await context.newPage();
  await watch.goto(`${env.urls.watch}?hls=1`);
  await watch.waitForFunction(() => !!window.vitrineWatch?.hls, null, { timeout: WAIT });
  await watch.evaluate(() => {
    window.__fatal = [];
    window.__failed = [];
    window.vitrineWatch.hls.on(window.Hls.Events.ERROR, (_e, d) => {
      if (d.fatal) window.__fatal.push(`${d.type}: ${d.details}`);
      if (d.context?.url) window.__failed.push(d.context.url);
    });
  });

  // The master playlist lists each rendition on both CDNs and names the steering manifest.
  const id = new URL(env.urls.watch).pathname.split('/').at(-1);
  const master = await (await fetch(`${env.urls.base}/hls/${id}/master.m3u8`)).text();
  assert.match(master, /#EXT-X-CONTENT-STEERING:SERVER-URI="steering.json",PATHWAY-ID="cdn-a"/);
  assert.equal(master.match(/#EXT-X-STREAM-INF:/g).length, 2, master);
  assert.ok(master.includes(`http://127.0.0.1:${cdnPort}/hls/${id}/360p/index.m3u8`), master);
  const steering = await (await fetch(`${env.urls.base}/hls/${id}/steering.json`)).json();
  assert.deepEqual(steering['PATHWAY-PRIORITY'], ['cdn-a', 'cdn-b']);

  await watch.waitForFunction(() => document.getElementById('player').currentTime > 1, null, { timeout: 60_000 });
  const t1 = await watch.evaluate(() => document.getElementById('player').currentTime);
  await watch.waitForFunction((t) => document.getElementById('player').currentTime > t + 2, t1, { timeout: WAIT });
  assert.ok(carried.playlists > 0 && carried.media > 0, `cdn-b carried ${JSON.stringify(carried)}`);
  const pathway = await watch.evaluate(() => {
    const hls = window.vitrineWatch.hls;
    return hls.levels[hls.loadLevel]?.pathwayId ?? hls.levels[0]?.pathwayId;
  });
  assert.equal(pathway, 'cdn-b');
  // It did start on cdn-a, and failed there.
  const failed = await watch.evaluate(() => window.__failed);
  assert.ok(failed.some((u) => u.includes(`127.0.0.1:${down}/`)), `failed loads: ${failed}`);
  assert.deepEqual(await watch.evaluate(() => window.__fatal), []);
  await context.close();
});
