// The HLS ladder follows the camera, not the first frames: Chromium publishes the studio's
// 1280x720 camera starting at a quarter of its size (as a browser does while its bandwidth
// estimate ramps up, or under CPU load), then at full size; within 10 s of going live the
// master playlist lists the 720p, 480p and 360p renditions, each of which ffprobe reads at
// its height.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useServerAndBrowser, goLive, metric, WAIT } from './harness.mjs';

const env = useServerAndBrowser(`
[hls]
x264_preset = "ultrafast"
[[hls.renditions]]
height = 720
bitrate_kbps = 1200
[[hls.renditions]]
height = 480
bitrate_kbps = 600
[[hls.renditions]]
height = 360
bitrate_kbps = 300
`);

async function text(url) {
  const response = await fetch(url);
  assert.equal(response.status, 200, `${url}: ${response.status}`);
  return response.text();
}

async function bytes(url) {
  const response = await fetch(url);
  assert.equal(response.status, 200, `${url}: ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

// The height ffprobe reads in a rendition's init segment followed by its first segment.
async function probedHeight(dir, playlistUrl) {
  const playlist = await text(playlistUrl);
  const init = playlist.match(/#EXT-X-MAP:URI="([^"]+)"/)[1];
  const segment = playlist.split('\n').find((l) => l && !l.startsWith('#'));
  assert.ok(segment, `a segment listed in ${playlistUrl}`);
  const file = join(dir, `${playlistUrl.split('/').at(-2)}.mp4`);
  writeFileSync(file, Buffer.concat([
    await bytes(new URL(init, playlistUrl)),
    await bytes(new URL(segment, playlistUrl)),
  ]));
  const probe = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries',
    'stream=height', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  assert.equal(probe.status, 0, probe.stderr);
  return Number(probe.stdout.trim());
}

test('a 720p camera gets the 720p, 480p and 360p ladder within 10 s of going live', async () => {
  const context = await env.browser.newContext();
  // The studio's video sender starts at 320x180.
  await context.addInitScript(() => {
    const add = RTCPeerConnection.prototype.addTransceiver;
    RTCPeerConnection.prototype.addTransceiver = function (track, init = {}) {
      if (track?.kind === 'video') init = { ...init, sendEncodings: [{ scaleResolutionDownBy: 4 }] };
      return add.call(this, track, init);
    };
  });
  const studio = await goLive(context, env.urls.studio);
  const camera = await studio.evaluate(() => document.getElementById('preview').srcObject
    .getVideoTracks()[0].getSettings());
  assert.deepEqual([camera.width, camera.height], [1280, 720], 'the studio opened the camera at 720p');
  const wentLive = Date.now();
  const sent = () => studio.evaluate(async () => {
    let size = null;
    (await window.vitrineStudio.session.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.frameHeight) size = [s.frameWidth, s.frameHeight];
    });
    return size;
  });
  // Then at full size, once the server planned its ladder (its encoder run started).
  for (const until = Date.now() + WAIT; await metric(env.urls.base, 'vitrine_hls_pipelines') < 1;) {
    assert.ok(Date.now() < until, 'the HLS run started');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await studio.evaluate(async () => {
    const sender = window.vitrineStudio.session.pc.getSenders().find((s) => s.track?.kind === 'video');
    const params = sender.getParameters();
    params.encodings[0].scaleResolutionDownBy = 1;
    await sender.setParameters(params);
  });

  const stream = new URL(env.urls.watch).pathname.split('/').pop();
  const master = `${env.urls.base}/hls/${stream}/master.m3u8`;
  // The master is answered once every rendition has a segment (a blocking wait: no sleep).
  const body = await text(master);
  const took = Date.now() - wentLive;
  console.log(`# the master playlist answered ${took} ms after going live`);
  const heights = [...body.matchAll(/RESOLUTION=\d+x(\d+)/g)].map((m) => Number(m[1]));
  assert.deepEqual(heights, [720, 480, 360], body);
  assert.ok(took <= 10_000, `the ladder took ${took} ms`);

  const dir = mkdtempSync(join(tmpdir(), 'vitrine-ladder-'));
  try {
    const playlists = body.split('\n').filter((l) => l.endsWith('.m3u8') && !l.startsWith('#'));
    const probed = [];
    for (const p of playlists) probed.push(await probedHeight(dir, new URL(p, master).href));
    assert.deepEqual(probed, [720, 480, 360]);
    console.log(`# the publisher now sends ${await sent()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await studio.locator('#golive').click();
  await context.close();
});

test('a publish that declares an impossible capture size is refused with a problem', async () => {
  const stream = new URL(env.urls.watch).pathname.split('/').pop();
  const key = new URL(env.urls.studio).hash.match(/key=([^&]+)/)[1];
  const response = await fetch(`${env.urls.base}/whip/${stream}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${decodeURIComponent(key)}`,
      'Vitrine-Capture-Size': '99999x1' },
    body: 'v=0\r\n',
  });
  assert.equal(response.status, 400);
  const problem = await response.json();
  assert.ok(problem.type.endsWith('/invalid-capture-size'), JSON.stringify(problem));
});
