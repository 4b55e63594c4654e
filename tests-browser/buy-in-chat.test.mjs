// The seller pins a product as a flash sale from the studio; a buyer on the watch page joins
// the chat, buys with a sandbox test card and sees the confirmation; a second buyer sees the
// stock drop and the anonymised purchase, and buys in yen, the currency of his browser's
// region: the card shows the converted price, he is charged in yen at the locked rate, and the
// seller sees the order in dollars; the seller sees the orders arrive live; a card whose bank
// asks for 3-D Secure is confirmed once the buyer has answered the check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinAsBuyer, useServerAndBrowser, WAIT } from './harness.mjs';

const rates = join(mkdtempSync(join(tmpdir(), 'vitrine-rates-')), 'rates.json');
writeFileSync(rates, JSON.stringify({
  base: 'USD', source: 'Test bank', as_of: '2026-12-01T16:00:00Z',
  rates: { USD: '1', JPY: '150', EUR: '0.92', KWD: '0.3071' },
}));
const env = useServerAndBrowser(`[currency]\nrates_file = ${JSON.stringify(rates)}\n`);

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
  const ann = await (await env.browser.newContext({ locale: 'en-US' })).newPage();
  const bob = await (await env.browser.newContext({ locale: 'ja-JP' })).newPage();
  for (const [page, name] of [[ann, 'Ann'], [bob, 'Bob']]) await joinAsBuyer(page, env.urls.watch, name);
  assert.equal(await text(bob, 'product-title'), 'Wool hat');
  assert.equal(await text(bob, 'product-stock'), '5 left');
  assert.match(await text(bob, 'product-price'), /19\.00/);
  assert.match(await text(bob, 'product-countdown'), /ends in \d+:\d\d/);
  // Bob's browser is Japanese: the card offers yen and shows 19.00 USD at 150 as 2,850 yen.
  await bob.waitForFunction(() => !document.getElementById('product-local-price').hidden, null, { timeout: WAIT });
  assert.equal(await bob.locator('#currency').inputValue(), 'JPY');
  assert.match(await text(bob, 'product-local-price'), /^≈ [¥￥]2,850$/);
  assert.ok(await ann.locator('#product-local-price').isHidden(), 'a dollar buyer sees no conversion');

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

  // Bob pays in yen: the dialog shows what he pays, the confirmation what he was charged.
  await bob.click('#buy');
  await bob.waitForFunction(() => !document.getElementById('buy-local').hidden, null, { timeout: WAIT });
  assert.match(await text(bob, 'buy-local-price'), /^[¥￥]2,850$/);
  await bob.fill('#card-number', '4242 4242 4242 4242');
  await bob.click('#pay');
  await bob.waitForFunction(() => document.getElementById('buy-result').textContent.startsWith('Order confirmed'), null, { timeout: WAIT });
  assert.match(await text(bob, 'buy-result'), /1 x Wool hat, [¥￥]2,850/);

  // The seller sees the paid orders arrive, in dollars, and the new availability.
  await seller.waitForFunction(() => [...document.querySelectorAll('#orders tr')].some((tr) => tr.textContent.includes('$38.00') && tr.textContent.includes('paid')), null, { timeout: WAIT });
  await seller.waitForFunction(() => [...document.querySelectorAll('#orders tr')].some((tr) => tr.textContent.includes('$19.00') && tr.textContent.includes('paid')), null, { timeout: WAIT });
  await seller.waitForFunction(() => document.getElementById('pinned-available').textContent === '2', null, { timeout: WAIT });

  // A card whose bank asks for 3-D Secure: the order waits while Bob answers the check on the
  // bank's page, then is confirmed on the watch page without a reload.
  await bob.click('#buy');
  await bob.fill('#card-number', '4000 0000 0000 3220');
  await bob.click('#pay');
  const check = bob.locator('#confirm-payment');
  await check.waitFor({ state: 'visible', timeout: WAIT });
  assert.match(await text(bob, 'buy-result'), /confirm this payment/);
  const bank = await bob.context().newPage();
  await bank.goto(new URL(await check.getAttribute('href'), env.urls.watch).href);
  await bank.click('button[value=approve]');
  await bank.waitForFunction(() => document.body.textContent.includes('was approved'), null, { timeout: WAIT });
  await bob.waitForFunction(() => document.getElementById('buy-result').textContent.startsWith('Order confirmed'), null, { timeout: WAIT });
  await seller.waitForFunction(() => document.getElementById('pinned-available').textContent === '1', null, { timeout: WAIT });
});
