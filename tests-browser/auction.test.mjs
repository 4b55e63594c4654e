// The seller auctions the pinned product from the studio; two buyers on the watch page bid
// (the suggested next bid, then a typed amount), each sees the other take the lead and the
// countdown, the hammer names the winner in the room, the winner pays the order it made from
// the auction panel, and the seller sees the auction sold and the paid order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { joinAsBuyer, useServerAndBrowser, WAIT } from './harness.mjs';

const env = useServerAndBrowser('');

const text = (page, id) => page.locator(`#${id}`).textContent();
const until = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: WAIT });

test('a live auction in the room: bids, the hammer, and the winner pays', async () => {
  const seller = await (await env.browser.newContext()).newPage();
  await seller.goto(env.urls.studio);
  await until(seller, () => document.querySelectorAll('#products tr').length >= 1);
  await seller.fill('#p-sku', 'WATCH-1');
  await seller.fill('#p-title', 'Vintage watch');
  await seller.fill('#p-price', '200.00');
  await seller.fill('#p-stock', '1');
  await seller.click('#add-product');
  await until(seller, () => [...document.querySelectorAll('#products td')].some((td) => td.textContent === 'Vintage watch'));
  await seller.click('#pin');
  await until(seller, () => document.getElementById('pinned').textContent.startsWith('Vintage watch'));

  const ann = await (await env.browser.newContext({ locale: 'en-US' })).newPage();
  const bob = await (await env.browser.newContext({ locale: 'en-US' })).newPage();
  for (const [page, name] of [[ann, 'Ann'], [bob, 'Bob']]) await joinAsBuyer(page, env.urls.watch, name);
  assert.ok(await ann.locator('#auction').isHidden(), 'no auction yet');

  // The seller starts a 12-second auction from $10.00 in $1.00 steps; late bids add 3 s.
  await seller.fill('#auction-start', '10.00');
  await seller.fill('#auction-increment', '1.00');
  await seller.fill('#auction-seconds', '12');
  await seller.fill('#auction-extend', '3');
  await seller.click('#start-auction');
  for (const page of [ann, bob]) {
    await page.locator('#auction').waitFor({ state: 'visible', timeout: WAIT });
  }
  assert.equal(await text(ann, 'auction-bid'), 'Bid $10.00');
  assert.match(await text(ann, 'auction-countdown'), /^0:1\d left$/);

  // Ann takes the suggested bid; Bob sees her lead and outbids her with a typed amount.
  await ann.click('#auction-bid');
  await until(ann, () => document.getElementById('auction-result').textContent === 'You lead!');
  await until(bob, () => document.getElementById('auction-bidder').textContent === 'by Ann');
  assert.equal(await text(bob, 'auction-current'), '$10.00');
  assert.equal(await text(bob, 'auction-bid'), 'Bid $11.00');
  await bob.fill('#auction-amount', '10.50');
  await bob.press('#auction-amount', 'Enter');
  await until(bob, () => document.getElementById('auction-result').textContent === 'Someone bid more: try again');
  await bob.fill('#auction-amount', '15');
  await bob.press('#auction-amount', 'Enter');
  await until(bob, () => document.getElementById('auction-result').textContent === 'You lead!');
  await until(ann, () => document.getElementById('auction-bidder').textContent === 'by Bob');
  assert.equal(await text(ann, 'auction-current'), '$15.00');
  await until(seller, () => document.getElementById('auction-state').textContent.startsWith('$15.00 by Bob'));

  // The hammer: everyone is told who won; Bob pays the order it made.
  for (const page of [ann, bob]) {
    await until(page, () => document.getElementById('chat-log').textContent.includes('Sold to Bob for $15.00!'));
  }
  assert.equal(await text(ann, 'auction-label'), 'Sold for');
  assert.ok(await ann.locator('#auction-pay').isHidden(), 'only the winner pays');
  await until(bob, () => !document.getElementById('auction-pay').hidden);
  assert.equal(await text(bob, 'auction-result'), 'You won! Pay $15.00 to get it.');
  await bob.fill('#auction-card', '4242 4242 4242 4242');
  await bob.click('#auction-pay-button');
  await until(bob, () => document.getElementById('auction-result').textContent.startsWith('Paid $15.00'));
  await until(seller, () => document.getElementById('auction-state').textContent === 'sold to Bob for $15.00');
  await until(seller, () => [...document.querySelectorAll('#orders tr')].some((tr) => tr.textContent.includes('$15.00')));
});
