// A viewer whose network lets no UDP through still watches: the WHEP answer the watch page
// receives keeps only the server's passive TCP candidates (as if every UDP path failed), and
// Chromium reaches the node's one shared ICE-TCP port (RFC 6544, RFC 4571 framing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServerAndBrowser, metric, goLive, keepsDecoding, WAIT } from './harness.mjs';

const env = useServerAndBrowser();

// An SDP without its UDP candidates, and how many TCP ones it kept.
function tcpOnly(sdp) {
  const lines = sdp.split('\r\n').filter((l) => !/^a=candidate:\S+ \d+ udp /i.test(l));
  return { sdp: lines.join('\r\n'), tcp: lines.filter((l) => /^a=candidate:\S+ \d+ tcp /i.test(l)).length };
}

test('a watch page whose answer offers only TCP plays over the shared ICE-TCP port', async () => {
  const context = await env.browser.newContext();
  await goLive(context, env.urls.studio);
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
  const path = await watch.evaluate(async () => {
    const report = await window.vitrineWatch.session.pc.getStats();
    let pair;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    const remote = pair && report.get(pair.remoteCandidateId);
    return { protocol: remote?.protocol, tcpType: remote?.tcpType };
  });
  assert.equal(path.protocol, 'tcp', 'the selected pair reaches the server over TCP');
  assert.equal(path.tcpType, 'passive', 'the server candidate is passive');
  await keepsDecoding(watch);
  assert.ok(await metric(env.urls.base, 'vitrine_ice_tcp_connections_total') >= 1, 'the node handed a TCP connection to the session');
  await context.close();
});
