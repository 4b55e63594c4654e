// The seller pins a product as a flash sale from the studio; a buyer on the watch page joins
// the chat, buys with a sandbox test card and sees the confirmation; a second buyer sees the
// stock drop and the anonymised purchase; the seller sees the order arrive live.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServerAndBrowser, WAIT } from './harness.mjs';

const env = useServerAndBrowser();

const text = (page, id) => page.locator(`#${id}`).textContent();

test('a buyer buys the pinned product in the chat; the room and the seller see it', async () => {
  // Seller: the studio lists the demo product; add one more and pin it as a flash sale.
  const seller = await (await env.browser.newContext()).newPage();
  await seller.goto(env.urls.studio);
  await seller.waitForFunction(() => document.querySelectorAll('#products tr').length >= 1, null, { timeout: WAIT });
  await seller.fill('#p-sku', 'HAT-1');
  await seller.fill('#p-title', 'Wool hat');
  await seller.fill('#p-price', '25.00');
  await seller.fill('#p-stock', '20');
  await seller.click('#add-product');
  await seller.waitForFunction(() => [...document.querySelectorAll('#products td')].some((td) => td.textContent === 'Wool hat'), null, { timeout: WAIT });
  await seller.fill('#pin-sale', '19.00');
  await seller.fill('#pin-cap', '5');
  await seller.fill('#pin-limit', '2');
  await seller.fill('#pin-minutes', '30');
  await seller.click('#pin');
  await seller.waitForFunction(() => document.getElementById('pinned').textContent.startsWith('Wool hat'), null, { timeout: WAIT });
  assert.equal(await text(seller, 'pinned-available'), '5');

  // Two buyers, each in their own browser context (own storage, own guest identity).
  const ann = await (await env.browser.newContext()).newPage();
  const bob = await (await env.browser.newContext()).newPage();
  for (const [page, name] of [[ann, 'Ann'], [bob, 'Bob']]) {
    await page.goto(env.urls.watch);
    await page.locator('#product').waitFor({ state: 'visible', timeout: WAIT });
    await page.fill('#display-name', name);
    await page.click('#join');
    await page.locator('#chat-form').waitFor({ state: 'visible', timeout: WAIT });
  }
  assert.equal(await text(bob, 'product-title'), 'Wool hat');
  assert.equal(await text(bob, 'product-stock'), '5 left');
  assert.match(await text(bob, 'product-price'), /19\.00/);
  assert.match(await text(bob, 'product-countdown'), /ends in \d+:\d\d/);

  // Ann chats, Bob reads it.
  await ann.fill('#chat-input', 'Love this hat!');
  await ann.press('#chat-input', 'Enter');
  await bob.waitForFunction(() => document.getElementById('chat-log').textContent.includes('Love this hat!'), null, { timeout: WAIT });

  // Ann buys with the sandbox card that approves, via /buy typed in the chat.
  await ann.fill('#chat-input', '/buy');
  await ann.press('#chat-input', 'Enter');
  await ann.locator('#buy-dialog').waitFor({ state: 'visible', timeout: WAIT });
  await ann.fill('#buy-quantity', '2');
  await ann.fill('#card-number', '4242 4242 4242 4242');
  await ann.click('#pay');
  await ann.waitForFunction(() => document.getElementById('buy-result').textContent.startsWith('Order confirmed'), null, { timeout: WAIT });
  assert.match(await text(ann, 'buy-result'), /2 x Wool hat, \$38\.00/);

  // Bob sees the stock drop and the anonymised purchase.
  await bob.waitForFunction(() => document.getElementById('product-stock').textContent === '3 left', null, { timeout: WAIT });
  await bob.waitForFunction(() => document.getElementById('chat-log').textContent.includes('Someone just bought it - 3 left'), null, { timeout: WAIT });
  assert.ok(!(await text(bob, 'chat-log')).includes('Ann bought'), 'purchases are anonymous');

  // A declined card is reported and takes nothing.
  await bob.click('#buy');
  await bob.fill('#card-number', '4000 0000 0000 0002');
  await bob.click('#pay');
  await bob.waitForFunction(() => document.getElementById('buy-result').textContent === 'Your card was declined', null, { timeout: WAIT });
  assert.equal(await text(bob, 'product-stock'), '3 left');

  // The seller sees the paid order arrive and the new availability.
  await seller.waitForFunction(() => [...document.querySelectorAll('#orders tr')].some((tr) => tr.textContent.includes('$38.00') && tr.textContent.includes('paid')), null, { timeout: WAIT });
  await seller.waitForFunction(() => document.getElementById('pinned-available').textContent === '3', null, { timeout: WAIT });
});
