// Glass-to-glass latency: the studio page publishes a canvas whose frames carry the wall-clock
// time (tests-browser/glass.mjs); a watch page plays it over WebRTC, then another over HLS
// (hls.js), each for SECONDS after a warm-up, and reads the time back from every presented
// frame. Prints one JSON line per mode: {"label" (the mode),"samples","p50_ms","p95_ms",...},
// with the fields of the JSON object EXTRA added (the run's settings).
//   node loadtest/glass.mjs STUDIO_URL WATCH_URL [SECONDS] [EXTRA]
import { launchBrowser } from '../tests-browser/harness.mjs';
import { installClockCamera, readClock, ages } from '../tests-browser/glass.mjs';

const [studioUrl, watchUrl, seconds = '30', extra = '{}'] = process.argv.slice(2);
if (!studioUrl || !watchUrl) {
  console.error('usage: node loadtest/glass.mjs STUDIO_URL WATCH_URL [SECONDS]');
  process.exit(2);
}
const WARM_UP_MS = 8_000;
const browser = await launchBrowser();
const context = await browser.newContext();
await installClockCamera(context);
const studio = await context.newPage();
await studio.goto(studioUrl);
await studio.waitForFunction(() => !document.getElementById('golive').disabled, null, { timeout: 30_000 });
await studio.locator('#golive').click();
await studio.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: 30_000 });

// How late each part fetched by the page arrived: the median of its response's end minus the
// wall-clock end of its media (PDT of its segment + its index x the part target + one part),
// and of its request's start minus the same.
async function partDelivery(page) {
  const entries = await page.evaluate(() => performance.getEntriesByType('resource')
    .map((e) => ({ url: e.name, start: performance.timeOrigin + e.requestStart, end: performance.timeOrigin + e.responseEnd })));
  const playlistUrl = entries.map((e) => e.url).find((u) => /\/audio\/index\.m3u8/.test(u)) || '';
  const base = playlistUrl.replace(/\?.*$/, '');
  if (!base) return {};
  const text = await (await fetch(base)).text();
  const target = Number(text.match(/PART-TARGET=([0-9.]+)/)[1]) * 1000;
  const segment = Number(text.match(/#EXT-X-TARGETDURATION:(\d+)/)[1]) * 1000;
  const first = text.match(/#EXT-X-PROGRAM-DATE-TIME:(\S+)\n#EXTINF:[^\n]*\ns(\d+)\.m4s/);
  const [pdt0, msn0] = [Date.parse(first[1]), Number(first[2])];
  const late = { audio: [], video: [] };
  const asked = { audio: [], video: [] };
  for (const e of entries) {
    const m = e.url.match(/\/([^/]+)\/p(\d+)\.(\d+)\.m4s/);
    if (!m) continue;
    const end = pdt0 + (Number(m[2]) - msn0) * segment + (Number(m[3]) + 1) * target;
    const kind = m[1] === 'audio' ? 'audio' : 'video';
    late[kind].push(e.end - end);
    asked[kind].push(e.start - end);
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return {
    video_part_arrives_ms: Math.round(median(late.video)), video_part_asked_ms: Math.round(median(asked.video)),
    audio_part_arrives_ms: Math.round(median(late.audio)), audio_part_asked_ms: Math.round(median(asked.audio)),
  };
}

for (const [mode, query] of [['webrtc', ''], ['hls', '?hls=1']]) {
  const watch = await context.newPage();
  const fetched = { parts: 0, segments: 0, playlists: 0 };
  watch.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    if (/\/p\d+\.\d+\.m4s$/.test(path)) fetched.parts += 1;
    else if (/\/s\d+\.m4s$/.test(path)) fetched.segments += 1;
    else if (path.endsWith('index.m3u8')) fetched.playlists += 1;
  });
  await watch.goto(`${watchUrl}${query}`);
  await watch.waitForFunction(() => document.getElementById('player').currentTime > 0, null, { timeout: 60_000 });
  await readClock(watch);
  await watch.evaluate(() => {
    window.__stalls = [];
    const hls = window.vitrineWatch?.hls;
    hls?.on(window.Hls.Events.ERROR, (_e, d) => { if (d.details === 'bufferStalledError') window.__stalls.push(Date.now()); });
  });
  await new Promise((resolve) => setTimeout(resolve, WARM_UP_MS));
  await watch.evaluate(() => { window.__ages = []; });
  await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000));
  // hls.js's own view: how far behind its live edge it plays, and its target.
  const player = await watch.evaluate(() => {
    const hls = window.vitrineWatch?.hls;
    const v = document.getElementById('player');
    const ahead = v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0;
    return hls ? { hls_latency_s: hls.latency, hls_target_latency_s: hls.targetLatency, buffered_ahead_s: ahead,
      stalls: window.__stalls.length } : {};
  });
  const delivery = mode === 'hls' ? await partDelivery(watch) : {};
  const row = { label: mode, ...JSON.parse(extra), ...(await ages(watch)), ...player, ...(mode === 'hls' ? fetched : {}), ...delivery };
  console.log(JSON.stringify(row));
  await watch.close();
}
await browser.close();
