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

// Video frames a watch page's WebRTC session has decoded so far.
export function framesDecoded(page) {
  return page.evaluate(async () => {
    let frames = 0;
    (await window.vitrineWatch.session.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0;
    });
    return frames;
  });
}

// Waits until a watch page has decoded `more` frames beyond those it has now.
export async function keepsDecoding(page, more = 30) {
  const before = await framesDecoded(page);
  await page.waitForFunction(
    async ([n, wanted]) => {
      let frames = 0;
      (await window.vitrineWatch.session.pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0;
      });
      return frames > n + wanted;
    },
    [before, more],
    { timeout: WAIT, polling: 250 },
  );
}
