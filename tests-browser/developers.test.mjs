// The developer portal: a seller signs in with the account token, registers an app (its client
// secret shown once), creates a test-mode API key and uses it, rolls and revokes it, and reads
// the API reference rendered from the OpenAPI document.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServerAndBrowser, WAIT } from './harness.mjs';

const env = useServerAndBrowser();

test('register an app, manage API keys and read the reference in the portal', async () => {
  const page = await (await env.browser.newContext()).newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${env.urls.base}/developers`);
  // Signed out: the sign-in form, which comes back to the portal.
  await page.fill('input[name="api_token"]', 'vt_wrong');
  await page.click('button[type="submit"]');
  assert.match(await page.locator('.error').textContent(), /not a Vitrine account token/);
  await page.fill('input[name="api_token"]', env.urls.sellerToken);
  await page.click('button[type="submit"]');
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: WAIT });
  assert.equal(new URL(page.url()).pathname, '/developers');

  // Register an app: the secret is shown once, the app is listed without it.
  await page.fill('#app-name', 'Acme ERP');
  await page.fill('#app-redirects', 'https://erp.example.com/oauth/callback');
  await page.click('#app-create');
  await page.locator('#secret-box').waitFor({ state: 'visible', timeout: WAIT });
  const clientSecret = await page.locator('#secret-value').textContent();
  assert.match(clientSecret, /^vcs_[0-9a-f]{48}$/);
  await page.waitForFunction(() => document.querySelector('#app-rows tr')?.textContent.includes('Acme ERP'), null, { timeout: WAIT });
  assert.ok(!(await page.locator('#app-rows').textContent()).includes(clientSecret));
  await page.click('#secret-done');

  // A redirect URI that is not https is refused with the server's reason.
  await page.fill('#app-name', 'Bad');
  await page.fill('#app-redirects', 'http://erp.example.com/cb');
  await page.click('#app-create');
  await page.waitForFunction(() => document.getElementById('app-error').textContent.includes('https'), null, { timeout: WAIT });

  // A test-mode key, read-only on products; it works against the API.
  await page.fill('#key-name', 'Staging sync');
  await page.selectOption('#key-mode', 'test');
  await page.check('#key-scopes input[value="products:read"]');
  await page.click('#key-create');
  await page.waitForFunction(() => document.getElementById('secret-value').textContent.startsWith('vk_test_'), null, { timeout: WAIT });
  const key = await page.locator('#secret-value').textContent();
  await page.click('#secret-done');
  const call = (k, path = '/api/v1/products') => fetch(`${env.urls.base}${path}`, { headers: { Authorization: `Bearer ${k}` } });
  assert.equal((await call(key)).status, 200);
  assert.equal((await call(key, '/api/v1/orders')).status, 403);
  await page.waitForFunction(() => document.querySelector('#key-rows tr')?.textContent.includes('products:read'), null, { timeout: WAIT });

  // Roll: a new secret; the old one stops working. Revoke: the row goes, the key stops.
  await page.locator('#key-rows tr', { hasText: 'Staging sync' }).getByText('Roll').click();
  await page.waitForFunction((old) => {
    const v = document.getElementById('secret-value').textContent;
    return v.startsWith('vk_test_') && v !== old;
  }, key, { timeout: WAIT });
  const rolled = await page.locator('#secret-value').textContent();
  await page.click('#secret-done');
  assert.equal((await call(key)).status, 401);
  assert.equal((await call(rolled)).status, 200);
  await page.locator('#key-rows tr', { hasText: 'Staging sync' }).getByText('Revoke').click();
  await page.waitForFunction(() => !document.getElementById('key-rows').textContent.includes('Staging sync'), null, { timeout: WAIT });
  assert.equal((await call(rolled)).status, 401);

  // The reference lists the operations with their scopes.
  const op = page.locator('details.operation[data-path="/api/v1/orders/{id}/refund"][data-method="post"]');
  await op.locator('summary').click();
  assert.equal(await op.locator('code.scope').textContent(), 'orders:write');
  assert.ok(await page.locator('details.operation').count() > 30);
  assert.deepEqual(errors, []);
});
