// The developer portal's webhooks and money: a seller adds a webhook endpoint pointing at a
// receiver run by this test (its signing secret shown once), a paid order is delivered, signed
// with that secret, and shows in the delivery log; a replay arrives again with the same
// webhook-id; the endpoint is rotated, disabled, enabled and deleted. Then the balance, a payout
// refused for want of balance, a sale in JPY (no minor unit), payouts and the statement.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHmac, randomUUID } from 'node:crypto';
import { useServerAndBrowser, WAIT } from './harness.mjs';

// Webhook targets on 127.0.0.1 over http are refused unless the deployment allows them.
const env = useServerAndBrowser('[webhooks]\nallow_private_targets = true\n');

// An HTTP server on a random local port that records every request it gets.
async function startReceiver() {
  const got = [];
  const waiters = new Set();
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      got.push({ method: req.method, path: req.url, headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      for (const w of waiters) w();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    got,
    url: `http://127.0.0.1:${server.address().port}/hooks`,
    // Resolves with the requests once there are at least `n`; fails after WAIT.
    atLeast(n, what) {
      if (got.length >= n) return Promise.resolve(got);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${what} (${got.length} request(s) so far)`));
        }, WAIT);
        function check() {
          if (got.length < n) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(got);
        }
        waiters.add(check);
      });
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

const receiver = await startReceiver();
after(() => receiver.close());

// The JSON API with a bearer token.
async function call(method, path, token, body, headers = {}) {
  const r = await fetch(`${env.urls.base}${path}`, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body ? { 'Content-Type': 'application/json' } : {}),
      ...headers,
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, data: await r.json().catch(() => null) };
}

// A product of the demo seller, bought once by a new guest buyer with the approving card.
async function paidOrder(sku, amount, currency) {
  const product = await call('POST', '/api/v1/products', env.urls.sellerToken,
    { sku, title: `Test ${sku}`, price: { amount, currency }, stock: 10 });
  assert.equal(product.status, 201, JSON.stringify(product.data));
  const buyer = await call('POST', '/api/v1/buyers', null, { display_name: 'Ann' });
  assert.equal(buyer.status, 201, JSON.stringify(buyer.data));
  const order = await call('POST', '/api/v1/orders', buyer.data.token,
    { product_id: product.data.id, quantity: 1, payment: { card_number: '4242424242424242' } },
    { 'Idempotency-Key': randomUUID() });
  assert.equal(order.status, 201, JSON.stringify(order.data));
  assert.equal(order.data.status, 'paid');
  return order.data;
}

async function signIn() {
  const page = await (await env.browser.newContext({ locale: 'en-US' })).newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${env.urls.base}/developers`);
  await page.fill('input[name="api_token"]', env.urls.sellerToken);
  await page.click('button[type="submit"]');
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: WAIT });
  assert.equal(new URL(page.url()).pathname, '/developers');
  // The sections loaded through the portal session.
  assert.equal(await page.locator('#hook-error').textContent(), '');
  assert.equal(await page.locator('#payout-error').textContent(), '');
  return { page, errors };
}

// Standard Webhooks: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed with the secret.
function signedWith(request, secret) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const h = request.headers;
  const mac = createHmac('sha256', key).update(`${h['webhook-id']}.${h['webhook-timestamp']}.${request.body}`).digest('base64');
  return h['webhook-signature'].split(' ').includes(`v1,${mac}`);
}

test('add a webhook endpoint, see a delivery in its log, replay it, rotate, disable and delete it', async () => {
  const { page, errors } = await signIn();
  const types = await page.locator('#hook-events input[type="checkbox"]').evaluateAll((inputs) => inputs.map((i) => i.value));
  assert.ok(types.includes('order.paid') && types.includes('stream.started'), types.join(' '));

  // Add an endpoint for paid orders only: the secret is shown once, the row lists the endpoint.
  await page.fill('#hook-url', receiver.url);
  await page.fill('#hook-description', 'ERP');
  await page.check('#hook-events input[value="order.paid"]');
  await page.click('#hook-create');
  await page.locator('#secret-box').waitFor({ state: 'visible', timeout: WAIT });
  await page.waitForFunction(() => document.getElementById('secret-value').textContent.startsWith('whsec_'), null, { timeout: WAIT });
  const secret = await page.locator('#secret-value').textContent();
  assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);
  const row = page.locator('#hook-rows tr', { hasText: receiver.url });
  await row.waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#hook-rows tr').count(), 1);
  assert.equal(await row.locator('.state').textContent(), 'enabled');
  assert.match(await row.textContent(), /ERP/);
  assert.match(await row.textContent(), /order\.paid/);
  assert.ok(!(await page.locator('#hook-rows').textContent()).includes(secret));
  await page.click('#secret-done');
  assert.equal(await page.locator('#secret-value').textContent(), '');
  // What the server stored, through the API.
  const listed = await call('GET', '/api/v1/webhooks/endpoints', env.urls.sellerToken);
  assert.equal(listed.status, 200);
  assert.equal(listed.data.endpoints.length, 1);
  const endpoint = listed.data.endpoints[0];
  assert.deepEqual([endpoint.url, endpoint.description, endpoint.event_types, endpoint.status], [receiver.url, 'ERP', ['order.paid'], 'enabled']);
  assert.equal(await row.getAttribute('data-id'), endpoint.id);

  // Its delivery log, empty so far.
  await row.getByRole('button', { name: 'Deliveries', exact: true }).click();
  await page.locator('#delivery-log').waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await page.locator('#delivery-rows tr').count(), 0);

  // A paid order: the receiver gets order.paid, signed with the secret the page showed.
  const order = await paidOrder('HOOK-1', 2500, 'EUR');
  const [first] = await receiver.atLeast(1, 'the order.paid delivery');
  const message = JSON.parse(first.body);
  assert.equal(first.method, 'POST');
  assert.equal(message.type, 'order.paid');
  assert.equal(message.data.id, order.id);
  const webhookId = first.headers['webhook-id'];
  assert.match(webhookId, /^msg_/);
  assert.ok(signedWith(first, secret), 'signed with the secret shown once');

  // The log shows it delivered (the page refreshes the log while it is open).
  const delivery = page.locator(`#delivery-rows tr[data-event="${webhookId}"]`);
  await page.waitForFunction((id) => document.querySelector(`#delivery-rows tr[data-event="${id}"]`)?.dataset.status === 'succeeded', webhookId, { timeout: WAIT });
  assert.equal(await page.locator('#delivery-rows tr').count(), 1, 'only the subscribed event');
  assert.equal(await delivery.locator('.state').textContent(), 'succeeded');
  const cells = await delivery.locator('td').allTextContents();
  assert.equal(cells[0], webhookId);
  assert.equal(cells[1], 'order.paid');
  assert.equal(cells[3], '1', 'one attempt');
  assert.equal(cells[4], '200', 'the last response');

  // Replay: the receiver gets the same message again, with the same webhook-id; the log updates.
  const before = await delivery.getAttribute('data-updated');
  await delivery.getByRole('button', { name: 'Replay', exact: true }).click();
  const [, again] = await receiver.atLeast(2, 'the replayed delivery');
  assert.equal(again.headers['webhook-id'], webhookId);
  assert.equal(again.body, first.body);
  assert.ok(signedWith(again, secret));
  await page.waitForFunction(([id, old]) => {
    const tr = document.querySelector(`#delivery-rows tr[data-event="${id}"]`);
    return tr && tr.dataset.status === 'succeeded' && tr.dataset.updated !== old;
  }, [webhookId, before], { timeout: WAIT });
  assert.equal(await page.locator('#hook-error').textContent(), '');

  // Rotate: a new secret, shown once.
  await row.getByRole('button', { name: 'Rotate', exact: true }).click();
  await page.waitForFunction((old) => {
    const v = document.getElementById('secret-value').textContent;
    return v.startsWith('whsec_') && v !== old;
  }, secret, { timeout: WAIT });
  await page.click('#secret-done');

  // Disable: the row says so; a replay is refused with the server's reason.
  await row.getByRole('button', { name: 'Disable', exact: true }).click();
  await page.waitForFunction(() => document.querySelector('#hook-rows tr')?.dataset.status === 'disabled', null, { timeout: WAIT });
  assert.equal(await row.locator('.state').textContent(), 'disabled');
  assert.equal(await row.getByRole('button', { name: 'Enable', exact: true }).count(), 1);
  assert.equal((await call('GET', `/api/v1/webhooks/endpoints/${endpoint.id}`, env.urls.sellerToken)).data.status, 'disabled');
  await delivery.getByRole('button', { name: 'Replay', exact: true }).click();
  await page.waitForFunction(() => document.getElementById('hook-error').textContent.includes('disabled'), null, { timeout: WAIT });

  // Enable again, then delete (after confirming): the row and the log go.
  await row.getByRole('button', { name: 'Enable', exact: true }).click();
  await page.waitForFunction(() => document.querySelector('#hook-rows tr')?.dataset.status === 'enabled', null, { timeout: WAIT });
  assert.equal(await page.locator('#hook-error').textContent(), '');
  page.once('dialog', (d) => d.accept());
  await row.getByRole('button', { name: 'Delete', exact: true }).click();
  await page.waitForFunction(() => document.querySelectorAll('#hook-rows tr').length === 0, null, { timeout: WAIT });
  assert.ok(await page.locator('#delivery-log').isHidden());
  assert.deepEqual((await call('GET', '/api/v1/webhooks/endpoints', env.urls.sellerToken)).data.endpoints, []);
  assert.deepEqual(errors, []);
});

test('balance, a refused payout, a sale in JPY, payouts and the statement', async () => {
  const { page, errors } = await signIn();
  const yen = (n) => `¥${n.toLocaleString('en-US')}`;

  // No JPY yet: the balance section renders without it, and a payout is refused by the server.
  assert.notEqual((await page.locator('#balance').textContent()).trim(), '');
  assert.equal(await page.locator('#balance [data-currency="JPY"]').count(), 0);
  await page.fill('#payout-amount', '12.5');
  await page.fill('#payout-currency', 'JPY');
  await page.selectOption('#payout-method', 'standard');
  await page.click('#payout-create');
  await page.waitForFunction(() => document.getElementById('payout-error').textContent.includes('no decimal places'), null, { timeout: WAIT });
  await page.fill('#payout-amount', '5000');
  await page.click('#payout-create');
  await page.waitForFunction(() => document.getElementById('payout-error').textContent.includes('the available balance is less than the payout'), null, { timeout: WAIT });
  assert.equal(await page.locator('#payout-rows tr').count(), 0);

  // A sale in JPY (no minor unit): the balance is shown in whole yen.
  const order = await paidOrder('YEN-1', 2500, 'JPY');
  const balance = await call('GET', '/api/v1/balance', env.urls.sellerToken);
  const jpy = balance.data.balances.find((b) => b.currency === 'JPY');
  assert.ok(jpy && jpy.available > 1100 && jpy.available < 2500, JSON.stringify(balance.data));
  await page.click('#money-refresh');
  const available = page.locator('#balance [data-currency="JPY"] [data-field="available"]');
  await available.waitFor({ timeout: WAIT });
  assert.equal(await available.textContent(), yen(jpy.available));
  const sale = page.locator('#ledger-rows tr[data-kind="sale"]', { hasText: order.id });
  assert.equal(await sale.locator('td').nth(3).textContent(), `+${yen(jpy.available)}`);

  // A standard payout of 1,000 yen: listed, taken from the balance, on the statement.
  await page.fill('#payout-amount', '1000');
  await page.fill('#payout-currency', 'JPY');
  await page.selectOption('#payout-method', 'standard');
  await page.click('#payout-create');
  await page.waitForFunction(() => document.querySelectorAll('#payout-rows tr').length === 1, null, { timeout: WAIT });
  assert.equal(await page.locator('#payout-error').textContent(), '');
  const payout = page.locator('#payout-rows tr').first();
  const cells = await payout.locator('td').allTextContents();
  assert.deepEqual(cells.slice(1, 5), [yen(1000), yen(0), yen(1000), 'standard']);
  assert.match(cells[5], /^(in_transit|paid)$/);
  const payoutId = await payout.getAttribute('data-id');
  assert.equal(cells[6], payoutId);
  await page.waitForFunction(([sel, text]) => document.querySelector(sel)?.textContent === text,
    ['#balance [data-currency="JPY"] [data-field="available"]', yen(jpy.available - 1000)], { timeout: WAIT });
  assert.match(await page.locator('#balance [data-currency="JPY"] [data-field="in_transit"]').textContent(), /^¥(1,000|0) in transit$/);
  const entry = page.locator('#ledger-rows tr[data-kind="payout"]', { hasText: payoutId });
  assert.equal(await entry.locator('td').nth(3).textContent(), `-${yen(1000)}`);
  const listed = await call('GET', '/api/v1/payouts', env.urls.sellerToken);
  assert.deepEqual(listed.data.payouts.map((p) => [p.id, p.amount, p.method]), [[payoutId, { amount: 1000, currency: 'JPY' }, 'standard']]);

  // An instant payout arrives at once, less its fee.
  await page.fill('#payout-amount', '100');
  await page.selectOption('#payout-method', 'instant');
  await page.click('#payout-create');
  await page.waitForFunction(() => document.querySelectorAll('#payout-rows tr').length === 2, null, { timeout: WAIT });
  const instant = page.locator('#payout-rows tr').first();
  const row = await instant.locator('td').allTextContents();
  assert.equal(row[1], yen(100));
  assert.equal(row[4], 'instant');
  assert.equal(row[5], 'paid');
  const fee = (await call('GET', `/api/v1/payouts/${await instant.getAttribute('data-id')}`, env.urls.sellerToken)).data.fee.amount;
  assert.ok(fee > 0);
  assert.deepEqual(row.slice(2, 4), [yen(fee), yen(100 - fee)]);
  assert.equal(await page.locator('#payout-error').textContent(), '');
  assert.deepEqual(errors, []);
});
