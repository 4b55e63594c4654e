// HLS in a real browser: a seller goes live from the studio; a buyer picks HLS on the watch page
// and hls.js plays the live LL-HLS (time advances, several renditions, a latency readout, no
// fatal error); after the seller stops, the replay page plays the recording from start to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServerAndBrowser, WAIT } from './harness.mjs';
import { installClockCamera, readClock, ages } from './glass.mjs';

const env = useServerAndBrowser(`
[hls]
finalize_after_secs = 2
x264_preset = "ultrafast"
[[hls.renditions]]
height = 360
bitrate_kbps = 600
[[hls.renditions]]
height = 240
bitrate_kbps = 300
`);

// Records hls.js fatal errors into window.__fatal.
async function watchFatal(page, path) {
  await page.waitForFunction((p) => !!p.split('.').reduce((o, k) => o?.[k], window), path, { timeout: WAIT });
  await page.evaluate((p) => {
    window.__fatal = [];
    const hls = p.split('.').reduce((o, k) => o?.[k], window);
    hls.on(window.Hls.Events.ERROR, (_e, d) => { if (d.fatal) window.__fatal.push(`${d.type}: ${d.details}`); });
  }, path);
}

test('live HLS plays in hls.js, then the replay plays to the end', async () => {
  const context = await env.browser.newContext();
  // The camera is a canvas carrying the clock, read back from the frames hls.js presents.
  await installClockCamera(context);
  const studio = await context.newPage();
  await studio.goto(env.urls.studio);
  const goLive = studio.locator('#golive');
  await studio.waitForFunction(() => !document.getElementById('golive').disabled, null, { timeout: WAIT });
  await goLive.click();
  await studio.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: WAIT });

  const watch = await context.newPage();
  await watch.goto(`${env.urls.watch}?hls=1`);
  await watchFatal(watch, 'vitrineWatch.hls');
  assert.equal(await watch.evaluate(() => window.vitrineWatch.mode), 'hls');
  await watch.waitForFunction(() => document.getElementById('player').currentTime > 1, null, { timeout: 60_000 });
  const t1 = await watch.evaluate(() => document.getElementById('player').currentTime);
  await watch.waitForFunction((t) => document.getElementById('player').currentTime > t + 2, t1, { timeout: WAIT });
  const options = await watch.locator('#quality option').allTextContents();
  assert.deepEqual(options.slice(1), ['360p', '240p'], `renditions: ${options}`);
  await watch.waitForFunction(() => /behind live/.test(document.getElementById('latency').textContent), null, { timeout: WAIT });
  const latency = await watch.evaluate(() => window.vitrineWatch.hls.latency);
  assert.ok(latency > 0 && latency < 10, `live latency ${latency} s`);
  console.log(`# hls.js live latency: ${latency.toFixed(2)} s`);
  assert.deepEqual(await watch.evaluate(() => window.__fatal), []);
  // Glass to glass: the benchmark's goal is 2 s; only a broken pipeline is over 5 s.
  await readClock(watch);
  await watch.waitForFunction(() => window.__ages.length >= 60, null, { timeout: WAIT });
  const glass = await ages(watch);
  console.log(`# glass to glass over HLS: p50 ${glass.p50_ms} ms, p95 ${glass.p95_ms} ms (${glass.samples} frames)`);
  assert.ok(glass.p50_ms <= 5_000, `glass to glass ${glass.p50_ms} ms`);

  // The seller pins a product: the HLS viewer sees the card when the picture reaches the
  // moment of the pin, not seconds before the seller is seen doing it.
  await watch.evaluate(() => {
    const card = document.getElementById('product');
    new MutationObserver(() => {
      if (!card.hidden && !window.__pinSeen) window.__pinSeen = { wall: Date.now(), clock: window.__lastClock };
    }).observe(card, { attributes: true });
  });
  const auth = { Authorization: `Bearer ${env.urls.sellerToken}`, 'Content-Type': 'application/json' };
  const { products } = await (await fetch(`${env.urls.base}/api/v1/products`, { headers: auth })).json();
  const stream = new URL(env.urls.watch).pathname.split('/').pop();
  const pinnedAt = Date.now();
  const pinned = await fetch(`${env.urls.base}/api/v1/streams/${stream}/pins`, {
    method: 'POST', headers: auth, body: JSON.stringify({ product_id: products[0].id }),
  });
  assert.equal(pinned.status, 201);
  await watch.waitForFunction(() => window.__pinSeen, null, { timeout: WAIT });
  const seen = await watch.evaluate(() => window.__pinSeen);
  const onScreen = seen.clock - (pinnedAt % 2 ** 32);
  console.log(`# the pin appeared ${seen.wall - pinnedAt} ms after it was made, the picture then at ${onScreen} ms from it`);
  // The picture had reached the pin (a frame's leeway), and the card had waited for it.
  assert.ok(onScreen >= -250, `the card ran ${-onScreen} ms ahead of the picture`);
  assert.ok(seen.wall - pinnedAt >= glass.p50_ms / 2, `shown ${seen.wall - pinnedAt} ms after the pin`);

  // The seller stops: the recording becomes a replay, linked from the watch page.
  await goLive.click();
  await watch.waitForFunction(() => !document.getElementById('replay-link').hidden, null, { timeout: WAIT });
  const replay = await watch.locator('#replay-href').getAttribute('href');

  const vod = await context.newPage();
  await vod.goto(replay);
  await watchFatal(vod, 'vitrineVod.hls');
  await vod.waitForFunction(() => Number.isFinite(document.getElementById('player').duration), null, { timeout: WAIT });
  const duration = await vod.evaluate(() => document.getElementById('player').duration);
  assert.ok(duration > 3, `replay of ${duration} s`);
  assert.ok(await vod.evaluate(() => document.getElementById('player').poster.endsWith('/poster.jpg')));
  await vod.evaluate(() => {
    const v = document.getElementById('player');
    window.__ended = false;
    v.addEventListener('ended', () => { window.__ended = true; });
    v.currentTime = 0;
    v.playbackRate = 2;
    return v.play();
  });
  await vod.waitForFunction(() => window.__ended, null, { timeout: 90_000 }).catch(async (e) => {
    // Say where playback stopped, for a failure that is rare and not reproduced alone.
    const state = await vod.evaluate(() => {
      const v = document.getElementById('player');
      const ranges = [...Array(v.buffered.length).keys()].map((i) => [v.buffered.start(i), v.buffered.end(i)]);
      return { currentTime: v.currentTime, duration: v.duration, paused: v.paused, readyState: v.readyState,
        networkState: v.networkState, error: v.error?.message, buffered: ranges, fatal: window.__fatal };
    });
    throw new Error(`${e.message}; the replay stopped: ${JSON.stringify(state)}`);
  });
  const end = await vod.evaluate(() => document.getElementById('player').currentTime);
  assert.ok(Math.abs(end - duration) < 0.5, `stopped at ${end} of ${duration}`);
  assert.deepEqual(await vod.evaluate(() => window.__fatal), []);
  await context.close();
});
