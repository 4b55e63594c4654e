// A seller goes live from the studio page; a buyer's watch page decodes video and receives
// audio; stopping ends it on the watch page. Real server binary, real headless Chromium.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServerAndBrowser, WAIT } from './harness.mjs';

const env = useServerAndBrowser();

// Samples the watch page's inbound RTP stats into window.__inbound four times a second, so
// that waits below are plain synchronous predicates over the latest sample.
async function sampleInbound(page) {
  await page.evaluate(() => {
    window.__inbound = { framesDecoded: 0, audioPackets: 0 };
    setInterval(async () => {
      const pc = window.vitrineWatch.session?.pc;
      if (!pc) return;
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') window.__inbound.framesDecoded = s.framesDecoded || 0;
        if (s.type === 'inbound-rtp' && s.kind === 'audio') window.__inbound.audioPackets = s.packetsReceived || 0;
      });
    }, 250);
  });
}

test('studio goes live, watch page plays, stop ends it', async () => {
  const context = await env.browser.newContext();
  const studio = await context.newPage();
  await studio.goto(env.urls.studio);
  const goLive = studio.locator('#golive');
  await goLive.waitFor();
  await studio.waitForFunction(() => !document.getElementById('golive').disabled, null, { timeout: WAIT });
  await goLive.click();
  await studio.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: WAIT });

  const watch = await context.newPage();
  await watch.goto(env.urls.watch);
  await watch.waitForFunction(() => document.getElementById('player').videoWidth > 0, null, { timeout: WAIT });
  await sampleInbound(watch);
  await watch.waitForFunction(() => window.__inbound.framesDecoded > 0, null, { timeout: WAIT });
  const first = await watch.evaluate(() => ({ ...window.__inbound }));
  await watch.waitForFunction(
    (before) => window.__inbound.framesDecoded > before + 30 && window.__inbound.audioPackets > 0,
    first.framesDecoded,
    { timeout: WAIT },
  );
  const later = await watch.evaluate(() => ({ ...window.__inbound }));
  assert.ok(await watch.evaluate(() => document.getElementById('player').videoWidth > 0), 'video has a size');
  assert.ok(later.framesDecoded > first.framesDecoded + 30, 'frames keep being decoded');
  assert.ok(later.audioPackets > 0, 'audio packets arrive');
  // An ICE restart through PATCH (RFC 9725 §4.4) keeps the same session playing.
  const generation = await watch.evaluate(() => window.vitrineWatch.session.etag);
  await watch.evaluate(() => window.vitrineWatch.session.restartIce());
  assert.notEqual(await watch.evaluate(() => window.vitrineWatch.session.etag), generation, 'a new ETag');
  await watch.waitForFunction(
    (before) => window.__inbound.framesDecoded > before + 30,
    await watch.evaluate(() => window.__inbound.framesDecoded),
    { timeout: WAIT },
  );
  await watch.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: WAIT });
  await studio.waitForFunction(() => Number(document.getElementById('viewers').textContent) >= 1, null, { timeout: WAIT });

  await goLive.click();
  await watch.waitForFunction(() => document.getElementById('state').textContent === 'ended', null, { timeout: WAIT });
  assert.equal(await watch.locator('#overlay-title').textContent(), 'Stream ended');

  // The seller comes back: the same watch page resumes without a reload.
  const beforeReturn = await watch.evaluate(() => window.__inbound.framesDecoded);
  await goLive.click();
  await studio.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: WAIT });
  await watch.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: WAIT });
  await watch.waitForFunction(
    (before) => window.__inbound.framesDecoded > before + 30,
    beforeReturn,
    { timeout: WAIT },
  );
  assert.equal(await watch.locator('#overlay').isHidden(), true, 'no overlay while live');
  await context.close();
});
