// The watch page's hold on room events (web-demo/assets/in-sync.js), without a browser: events
// wait for the picture in their order, go at once without a delay, and never wait longer than
// the cap however far behind a paused or stalled player reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inSync } from '../web-demo/assets/in-sync.js';

// Resolves with the events dispatched once `count` have come.
function collector(count) {
  const got = [];
  let done;
  const all = new Promise((resolve) => { done = resolve; });
  return { got, all, dispatch: (e) => { got.push({ e, at: Date.now() }); if (got.length === count) done(got); } };
}

test('without a delay, events are shown at once and in order', () => {
  const c = collector(2);
  const push = inSync(() => 0, c.dispatch);
  push('a');
  push('b');
  assert.deepEqual(c.got.map((g) => g.e), ['a', 'b']);
});

test('events wait for the picture, in their order', async () => {
  const c = collector(2);
  const push = inSync(() => 150, c.dispatch);
  const pushed = Date.now();
  push('a');
  push('b');
  assert.equal(c.got.length, 0, 'held while the picture is behind');
  await c.all;
  assert.deepEqual(c.got.map((g) => g.e), ['a', 'b']);
  assert.ok(c.got[0].at - pushed >= 150, `shown after ${c.got[0].at - pushed} ms`);
});

test('a player that reads hours behind holds events no longer than the cap', { timeout: 5_000 }, async () => {
  const c = collector(1);
  const push = inSync(() => 3_600_000, c.dispatch, { maxHoldMs: 200 });
  const pushed = Date.now();
  push('hello');
  await c.all;
  const held = c.got[0].at - pushed;
  assert.ok(held >= 200 && held < 2_000, `held ${held} ms`);
});
