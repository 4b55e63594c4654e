// The show's room on the replay page: a seller goes live from the studio, a buyer says
// something in the chat, the seller pins a product as a flash sale; after the seller stops,
// the replay page lists the product with a link to its moment, and shows the chat line and
// the pin card only once the video has reached the moments they were made at (seeking back
// hides them again); the product on screen is bought from the replay, the order says so, and
// the studio's sales chart shows it in its minute.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServerAndBrowser, goLive, WAIT } from './harness.mjs';

const env = useServerAndBrowser(`
[hls]
finalize_after_secs = 2
x264_preset = "ultrafast"
[[hls.renditions]]
height = 240
bitrate_kbps = 300
`);

// Waits, with an LL-HLS blocking reload, until segment `msn` of the stream's 240p rendition is
// complete (asking again while the rendition does not exist yet).
async function segment(stream, msn) {
  for (const until = Date.now() + WAIT; Date.now() < until;) {
    const r = await fetch(`${env.urls.base}/hls/${stream}/240p/index.m3u8?_HLS_msn=${msn}`);
    if (r.status === 200) return r.text();
    if (r.status === 404) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`segment ${msn} never came`);
}

test('the replay shows the show\'s chat and pins at their moments, and jumps to a product', async () => {
  const context = await env.browser.newContext();
  const studio = await goLive(context, env.urls.studio);
  const stream = new URL(env.urls.watch).pathname.split('/').at(-1);
  await segment(stream, 1);

  // A buyer says something in the room (a browser websocket, as the watch page does).
  const { token } = await (await fetch(`${env.urls.base}/api/v1/buyers`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ display_name: 'Fan' }),
  })).json();
  const page = await context.newPage();
  await page.goto(env.urls.watch);
  await page.evaluate(async ({ stream, token }) => {
    const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/ws/streams/${stream}/chat`);
    await new Promise((resolve) => { ws.onopen = resolve; });
    const welcome = new Promise((resolve) => { ws.onmessage = resolve; });
    ws.send(JSON.stringify({ type: 'hello', token }));
    await welcome;
    const echoed = new Promise((resolve) => {
      ws.onmessage = (m) => { if (JSON.parse(m.data).type === 'chat') resolve(); };
    });
    ws.send(JSON.stringify({ type: 'chat', text: 'does it come in blue?' }));
    await echoed;
    ws.close();
  }, { stream, token });
  const playlist = await segment(stream, 2);

  // The seller pins a product as a flash sale, a segment later.
  const auth = { Authorization: `Bearer ${env.urls.sellerToken}`, 'Content-Type': 'application/json' };
  const { products } = await (await fetch(`${env.urls.base}/api/v1/products`, { headers: auth })).json();
  const product = products[0];
  const sale = { amount: Math.max(1, Math.floor(product.price.amount / 2)), currency: product.price.currency };
  const pinned = await fetch(`${env.urls.base}/api/v1/streams/${stream}/pins`, {
    method: 'POST', headers: auth, body: JSON.stringify({ product_id: product.id, quantity_cap: 5, sale_price: sale }),
  });
  assert.equal(pinned.status, 201);
  const lastMsn = Number(playlist.match(/#EXT-X-MEDIA-SEQUENCE:(\d+)/)[1]) + (playlist.match(/#EXTINF/g) || []).length;
  await segment(stream, lastMsn + 1);

  // The seller stops; the replay page follows the timeline.
  await studio.locator('#golive').click();
  const vod = await context.newPage();
  await vod.goto(`${env.urls.base}/vod/${stream}`);
  await vod.waitForFunction(() => window.vitrineVod?.timeline, null, { timeout: 60_000 });
  const timeline = await vod.evaluate(() => window.vitrineVod.timeline);
  const chat = timeline.find((e) => e.type === 'chat');
  const pin = timeline.find((e) => e.type === 'sale');
  assert.ok(chat && pin, `timeline: ${JSON.stringify(timeline)}`);
  assert.equal(chat.text, 'does it come in blue?');
  assert.ok(chat.at_ms < pin.at_ms, `chat at ${chat.at_ms} ms, pin at ${pin.at_ms} ms`);

  // At the start, neither is shown yet.
  await vod.waitForFunction(() => Number.isFinite(document.getElementById('player').duration), null, { timeout: WAIT });
  await vod.evaluate(() => {
    const v = document.getElementById('player');
    v.pause();
    v.currentTime = 0;
  });
  await vod.waitForFunction(() => document.getElementById('replay-chat').children.length === 0
    && document.getElementById('replay-pin').hidden, null, { timeout: WAIT });
  // The product's moment is listed; following it shows the pin card and the earlier chat line.
  const moment = vod.locator('#moments a');
  assert.match(await moment.textContent(), new RegExp(product.title));
  await moment.click();
  await vod.waitForFunction(() => !document.getElementById('replay-pin').hidden, null, { timeout: WAIT });
  const at = await vod.evaluate(() => document.getElementById('player').currentTime);
  assert.ok(Math.abs(at * 1000 - pin.at_ms) < 1500, `jumped to ${at} s for a pin at ${pin.at_ms} ms`);
  assert.equal(await vod.locator('#replay-pin-title').textContent(), product.title);
  // Today's stock, not the show's.
  await vod.waitForFunction(() => /\d+ left/.test(document.getElementById('replay-pin-stock').textContent), null, { timeout: WAIT });
  assert.match(await vod.locator('#replay-pin-sale').textContent(), /flash sale \(ended\)/);
  assert.equal(await vod.locator('#replay-chat li').count(), 1);
  assert.match(await vod.locator('#replay-chat li').textContent(), /does it come in blue\?/);
  // The product on screen is bought from the replay: an order that says so, at that moment.
  await vod.evaluate(() => document.getElementById('player').pause());
  await vod.fill('#replay-buyer', 'Late fan');
  await vod.fill('#replay-card', '4242 4242 4242 4242');
  await vod.click('#replay-buy-button');
  await vod.waitForFunction(() => document.getElementById('replay-buy-result').dataset.order, null, { timeout: WAIT });
  const orderId = await vod.evaluate(() => document.getElementById('replay-buy-result').dataset.order);
  const buyerToken = await vod.evaluate(() => JSON.parse(localStorage.getItem('vitrine.buyer')).token);
  const order = await (await fetch(`${env.urls.base}/api/v1/orders/${orderId}`, {
    headers: { Authorization: `Bearer ${buyerToken}` },
  })).json();
  assert.equal(order.source, 'replay');
  assert.equal(order.stream_id, stream);
  assert.equal(order.unit_price.amount, product.price.amount, 'the catalog price: the sale is over');
  assert.ok(Math.abs(order.media_ms - pin.at_ms) < 3000, `bought at ${order.media_ms} ms, pin at ${pin.at_ms} ms`);

  // The studio charts it: a unit sold from the replay in the minute of the pin.
  const minute = Math.floor(order.media_ms / 60000);
  await studio.waitForSelector(`#sales-chart .bar[data-minute="${minute}"] span.replay[data-units="1"]`, { timeout: WAIT });

  // Back to before the chat line: the room is as it was then.
  await vod.evaluate((ms) => {
    const v = document.getElementById('player');
    v.pause();
    v.currentTime = ms / 2000;
  }, chat.at_ms);
  await vod.waitForFunction(() => document.getElementById('replay-pin').hidden, null, { timeout: WAIT });
  assert.equal(await vod.locator('#replay-chat li').count(), 0);
  await context.close();
});
