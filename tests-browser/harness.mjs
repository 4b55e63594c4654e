// What every browser test shares: the real server binary started with --demo (its printed
// URLs are the entry points) and headless Chromium with fake media devices.
import assert from 'node:assert/strict';
import { before, after } from 'node:test';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const BINARY = process.env.VITRINE_BIN || new URL('../target/debug/vitrine', import.meta.url).pathname;
export const WAIT = 30_000;

// `config` (TOML text), when given, is written to a file the server reads. Captions are off
// unless it has a [subtitles] table (Whisper would caption every test's fake microphone).
// `extra` flags are added to `vitrine serve` (a cluster node's, for example).
export async function startServer(config = '', extra = []) {
  const dataDir = mkdtempSync(join(tmpdir(), 'vitrine-browser-'));
  // One shared ICE port per server, as by default, but any free one: test files run at once.
  const port = extra.includes('--ice-udp-port') ? [] : ['--ice-udp-port', '0'];
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--demo', ...port, ...extra];
  const toml = /^\[subtitles\]/m.test(config) ? config : `${config}\n[subtitles]\nenabled = false\n`;
  writeFileSync(join(dataDir, 'vitrine.toml'), toml);
  args.push('--config', join(dataDir, 'vitrine.toml'));
  const server = spawn(BINARY, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  const urls = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not print its URLs: ${out}`)), WAIT);
    server.stdout.on('data', (chunk) => {
      out += chunk;
      const studio = out.match(/Studio \(go live\):\s+(\S+)/);
      const watch = out.match(/Watch page:\s+(\S+)/);
      const token = out.match(/Seller API token:\s+(\S+)/);
      if (studio && watch && token) {
        clearTimeout(timer);
        resolve({ studio: studio[1], watch: watch[1], sellerToken: token[1], base: new URL(watch[1]).origin, dataDir });
      }
    });
    server.on('exit', (code) => reject(new Error(`server exited early with ${code}: ${out}`)));
  });
  return {
    urls,
    /** Kills the process the hard way (SIGKILL), as a crash would, and waits for it to go. */
    async kill() {
      if (server.exitCode !== null || server.signalCode !== null) return;
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (server.exitCode === null && server.signalCode === null) {
        const exited = new Promise((resolve) => server.once('exit', resolve));
        server.kill('SIGTERM');
        const code = await exited;
        assert.equal(code, 0, 'server shuts down cleanly on SIGTERM');
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// `microphone`: a WAV file the fake microphone plays (looped) instead of a beep.
export function launchBrowser({ microphone } = {}) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      ...(microphone ? [`--use-file-for-fake-audio-capture=${microphone}`] : []),
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
}

// Starts a server and a browser before the file's tests and stops both after them; the returned
// object's `urls` and `browser` are filled in once `before` has run.
export function useServerAndBrowser(config, browserOptions) {
  const env = { urls: null, browser: null };
  let server;
  before(async () => {
    server = await startServer(config);
    env.urls = server.urls;
    env.browser = await launchBrowser(browserOptions);
  });
  after(async () => {
    await env.browser?.close();
    await server?.stop();
  });
  return env;
}

// Opens the watch page at `url` in `page` and joins its chat as a guest buyer named `name`.
export async function joinAsBuyer(page, url, name) {
  await page.goto(url);
  await page.locator('#product').waitFor({ state: 'visible', timeout: WAIT });
  await page.fill('#display-name', name);
  await page.click('#join');
  await page.locator('#chat-form').waitFor({ state: 'visible', timeout: WAIT });
}

// The value of the sample named exactly `name` in a server's Prometheus text (0 when absent).
export async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

// Opens the studio at `url` in `context`, goes live and waits until the page says it is.
export async function goLive(context, url) {
  const studio = await context.newPage();
  await studio.goto(url);
  await studio.waitForFunction(() => !document.getElementById('golive').disabled, null, { timeout: WAIT });
  await studio.locator('#golive').click();
  await studio.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: WAIT });
  return studio;
}

// Samples, every 50 ms, the video frames a watch page has decoded over all its WebRTC sessions
// (a new session counts from zero again) into window.__decoded, and keeps the history as
// [time, frames] pairs in window.__frames. Waits read these with synchronous predicates:
// Playwright's waitForFunction takes a promise as a truthy answer, so an async predicate
// would never wait.
export async function trackFrames(page) {
  await page.evaluate(() => {
    if (window.__frames) return;
    window.__frames = [];
    window.__decoded = 0;
    let seen = null;
    let carried = 0;
    let last = 0;
    setInterval(async () => {
      const pc = window.vitrineWatch.session?.pc;
      let n = 0;
      if (pc) {
        try {
          (await pc.getStats()).forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0;
          });
        } catch {
          return;
        }
      }
      if (pc !== seen) {
        carried += last;
        seen = pc;
        last = 0;
      }
      if (pc) last = n;
      window.__decoded = carried + last;
      window.__frames.push([Date.now(), window.__decoded]);
    }, 50);
  });
}

// Video frames a watch page has decoded so far, all its sessions together.
export async function framesDecoded(page) {
  await trackFrames(page);
  await page.waitForFunction(() => window.__frames.length > 0, null, { timeout: WAIT });
  return page.evaluate(() => window.__decoded);
}

// Waits until a watch page has decoded `more` frames beyond those it has now.
export async function keepsDecoding(page, more = 30) {
  const before = await framesDecoded(page);
  await page.waitForFunction(([n, wanted]) => window.__decoded > n + wanted, [before, more], { timeout: WAIT });
}

// The longest time after `since` (ms since the epoch) that a tracked watch page decoded no new
// frame (trackFrames must have been running since before `since`).
export function longestFreeze(page, since) {
  return page.evaluate((t0) => {
    let longest = 0;
    let changedAt = null;
    let frames = -1;
    for (const [t, n] of window.__frames) {
      if (n === frames) continue;
      if (changedAt !== null && t >= t0) longest = Math.max(longest, t - Math.max(changedAt, t0));
      changedAt = t;
      frames = n;
    }
    return longest;
  }, since);
}
