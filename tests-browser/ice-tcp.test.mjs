// A viewer whose network lets no UDP through still watches: the WHEP answer the watch page
// receives keeps only the server's passive TCP candidates (as if every UDP path failed), and
// Chromium reaches the node's one shared ICE-TCP port (RFC 6544, RFC 4571 framing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServerAndBrowser, WAIT } from './harness.mjs';

const env = useServerAndBrowser();

// The value of the sample named exactly `name` in the node's Prometheus text (0 when absent).
async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

// An SDP without its UDP candidates, and how many TCP ones it kept.
function tcpOnly(sdp) {
  const lines = sdp.split('\r\n').filter((l) => !/^a=candidate:\S+ \d+ udp /i.test(l));
  return { sdp: lines.join('\r\n'), tcp: lines.filter((l) => /^a=candidate:\S+ \d+ tcp /i.test(l)).length };
}

test('a watch page whose answer offers only TCP plays over the shared ICE-TCP port', async () => {
  const context = await env.browser.newContext();
  const studio = await context.newPage();
  await studio.goto(env.urls.studio);
  await studio.waitForFunction(() => !document.getElementById('golive').disabled, null, { timeout: WAIT });
  await studio.locator('#golive').click();
  await studio.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: WAIT });
  assert.equal(await metric(env.urls.base, 'vitrine_ice_tcp_connections_total'), 0, 'the publisher came over UDP');

  const watch = await context.newPage();
  let kept = -1;
  await watch.route('**/whep/*', async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    const response = await route.fetch();
    const answer = tcpOnly(await response.text());
    kept = answer.tcp;
    await route.fulfill({ response, body: answer.sdp });
  });
  await watch.goto(env.urls.watch);
  await watch.waitForFunction(() => document.getElementById('player').videoWidth > 0, null, { timeout: WAIT });
  assert.ok(kept > 0, `the answer carried passive TCP candidates (${kept})`);

  // The pair in use is a TCP one, and it keeps delivering frames.
  const path = () => watch.evaluate(async () => {
    const report = await window.vitrineWatch.session.pc.getStats();
    let pair;
    let frames = 0;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
      if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0;
    });
    const remote = pair && report.get(pair.remoteCandidateId);
    return { protocol: remote?.protocol, port: remote?.port, tcpType: remote?.tcpType, frames };
  });
  const first = await path();
  assert.equal(first.protocol, 'tcp', 'the selected pair reaches the server over TCP');
  assert.equal(first.tcpType, 'passive', 'the server candidate is passive');
  await watch.waitForFunction(
    async (before) => {
      let frames = 0;
      (await window.vitrineWatch.session.pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0;
      });
      return frames > before + 30;
    },
    first.frames,
    { timeout: WAIT, polling: 250 },
  );
  assert.ok(await metric(env.urls.base, 'vitrine_ice_tcp_connections_total') >= 1, 'the node handed a TCP connection to the session');
  await context.close();
});
