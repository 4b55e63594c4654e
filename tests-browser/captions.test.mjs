// Captions in a real browser: the seller's microphone speaks known phrases (espeak-ng, played by
// Chromium's fake microphone) and the server's Whisper worker captions them. A WebRTC viewer
// turns captions on and reads them over the video (chat caption events); switching to HLS shows
// the stream's English WebVTT track through hls.js; the replay page lists its subtitles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useServerAndBrowser, goLive, WAIT } from './harness.mjs';

const PHRASES = [
  'Welcome to the live sale.',
  'This red jacket is half price today.',
  'Press the buy button to order one now.',
];
// Words any of the phrases' captions will hold (tiny.en may miss one or two of them).
const WORDS = /sale|jacket|price|today|button|order|welcome/i;

// The phrases with pauses between, as 48 kHz 16-bit WAV for the fake microphone.
function speech() {
  const dir = mkdtempSync(join(tmpdir(), 'vitrine-speech-'));
  const parts = PHRASES.map((text, i) => {
    const wav = join(dir, `p${i}.wav`);
    execFileSync('espeak-ng', ['-v', 'en', '-s', '130', '-g', '3', '-w', wav, text]);
    return wav;
  });
  const pause = join(dir, 'pause.wav');
  execFileSync('sox', ['-n', '-r', '22050', '-c', '1', '-b', '16', pause, 'trim', '0', '1.5']);
  const out = join(dir, 'speech.wav');
  execFileSync('sox', [pause, ...parts.flatMap((p) => [p, pause]), '-r', '48000', '-b', '16', out]);
  return out;
}

const env = useServerAndBrowser(`
[hls]
finalize_after_secs = 2
x264_preset = "ultrafast"
[[hls.renditions]]
height = 240
bitrate_kbps = 300
[subtitles]
enabled = true
threads = 2
`, { microphone: speech() });

// Whether a text track of the page's video holds a cue matching WORDS.
const trackSays = () => [...document.getElementById('player').textTracks]
  .some((t) => t.mode === 'showing' && [...(t.cues || [])].some((c) => /sale|jacket|price|today|button|order|welcome/i.test(c.text)));

test('captions over WebRTC, then as an HLS subtitle track, then on the replay', async () => {
  const context = await env.browser.newContext();
  const studio = await goLive(context, env.urls.studio);

  // WebRTC: the captions menu offers English; picked, the seller's words appear over the video.
  const watch = await context.newPage();
  await watch.goto(env.urls.watch);
  await watch.waitForFunction(() => [...document.getElementById('captions-lang').options].some((o) => o.value === 'en'), null, { timeout: WAIT });
  assert.equal(await watch.locator('#captions').isHidden(), true, 'captions are off until picked');
  await watch.selectOption('#captions-lang', 'en');
  await watch.waitForFunction((re) => new RegExp(re, 'i').test(window.vitrineWatch.captions.shown), WORDS.source, { timeout: 90_000 });
  assert.equal(await watch.locator('#captions').isVisible(), true);
  console.log(`# WebRTC caption: ${await watch.evaluate(() => window.vitrineWatch.captions.shown)}`);

  // HLS: the English subtitle rendition is picked (the viewer's choice is kept) and drawn.
  await watch.selectOption('#transport', 'hls');
  await watch.waitForFunction(() => window.vitrineWatch.hls?.subtitleTracks?.some((t) => t.lang === 'en'), null, { timeout: 60_000 });
  await watch.waitForFunction(trackSays, null, { timeout: 90_000 });
  assert.equal(await watch.evaluate(() => window.vitrineWatch.hls.subtitleTrack), 0);

  // The replay page lists the subtitles; picked, their cues load.
  await studio.locator('#golive').click();
  await watch.waitForFunction(() => !document.getElementById('replay-link').hidden, null, { timeout: WAIT });
  const vod = await context.newPage();
  await vod.goto(await watch.locator('#replay-href').getAttribute('href'));
  await vod.waitForFunction(() => [...document.getElementById('subtitles').options].some((o) => /English/.test(o.text)), null, { timeout: WAIT });
  const english = await vod.evaluate(() => [...document.getElementById('subtitles').options].find((o) => /English/.test(o.text)).value);
  await vod.selectOption('#subtitles', english);
  await vod.evaluate(() => document.getElementById('player').play());
  await vod.waitForFunction(trackSays, null, { timeout: 60_000 });
  await context.close();
});
