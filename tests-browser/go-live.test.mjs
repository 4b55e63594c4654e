// A seller goes live from the studio page; a buyer's watch page decodes video and receives
// audio; stopping ends it on the watch page. Real server binary, real headless Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BINARY = process.env.VITRINE_BIN || new URL('../target/debug/vitrine', import.meta.url).pathname;
const WAIT = 30_000;

let server;
let browser;
let dataDir;
const urls = {};

function startServer() {
  dataDir = mkdtempSync(join(tmpdir(), 'vitrine-browser-'));
  server = spawn(BINARY, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--demo'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not print its URLs: ${out}`)), WAIT);
    server.stdout.on('data', (chunk) => {
      out += chunk;
      const studio = out.match(/Studio \(go live\):\s+(\S+)/);
      const watch = out.match(/Watch page:\s+(\S+)/);
      if (studio && watch) {
        clearTimeout(timer);
        urls.studio = studio[1];
        urls.watch = watch[1];
        resolve();
      }
    });
    server.on('exit', (code) => reject(new Error(`server exited early with ${code}: ${out}`)));
  });
}

before(async () => {
  await startServer();
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--disable-background-networking',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    const code = await exited;
    assert.equal(code, 0, 'server shuts down cleanly on SIGTERM');
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

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
  const context = await browser.newContext();
  const studio = await context.newPage();
  await studio.goto(urls.studio);
  const goLive = studio.locator('#golive');
  await goLive.waitFor();
  await studio.waitForFunction(() => !document.getElementById('golive').disabled, null, { timeout: WAIT });
  await goLive.click();
  await studio.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: WAIT });

  const watch = await context.newPage();
  await watch.goto(urls.watch);
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
