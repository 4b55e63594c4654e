// The developer portal: the signed-in account's apps, API keys, grants, webhook endpoints (with
// their delivery logs) and money (balance, payouts, ledger statement) through the JSON API (the
// session cookie plus the page's CSRF token), and the API reference rendered from the OpenAPI
// document. Secrets appear once, in the box that follows the action that made them.
import { loadMinorUnits, minorUnits, money as formatMoney } from '/assets/chat.js';

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { 'X-CSRF-Token': csrf, ...headers }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.detail || data.title || `HTTP ${r.status}`);
  return data;
}

function el(tag, { dataset, ...props } = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  Object.assign(node.dataset, dataset || {});
  for (const c of children) node.append(c);
  return node;
}

function button(label, onClick, className = 'small secondary') {
  return el('button', { type: 'button', className, textContent: label, onclick: onClick });
}

function when(ts) {
  return ts ? new Date(ts).toLocaleString() : '—';
}

function showSecret(title, value) {
  $('secret-title').textContent = title;
  $('secret-value').textContent = value;
  $('secret-box').hidden = false;
  $('secret-box').scrollIntoView({ block: 'nearest' });
}
$('secret-done').onclick = () => {
  $('secret-value').textContent = '';
  $('secret-box').hidden = true;
};

async function loadApps() {
  const { apps } = await api('GET', '/api/v1/apps');
  $('app-rows').replaceChildren(...apps.map((a) => el('tr', { dataset: { id: a.id } },
    el('td', { textContent: a.name }),
    el('td', {}, el('code', { textContent: a.id })),
    el('td', { textContent: a.client_type }),
    el('td', { textContent: a.tier }),
    el('td', { textContent: a.redirect_uris.join(' ') }),
    el('td', {},
      ...(a.client_type === 'confidential' ? [button('Roll secret', async () => {
        const { client_secret } = await api('POST', `/api/v1/apps/${a.id}/secret`);
        showSecret(`New client secret of ${a.name}`, client_secret);
      })] : []),
      button('Delete', async () => {
        if (!confirm(`Delete ${a.name}? Every seller's grant to it ends.`)) return;
        await api('DELETE', `/api/v1/apps/${a.id}`);
        await loadApps();
      })),
  )));
}

$('app-form').onsubmit = async (e) => {
  e.preventDefault();
  $('app-error').textContent = '';
  try {
    const app = await api('POST', '/api/v1/apps', {
      name: $('app-name').value,
      redirect_uris: $('app-redirects').value.split('\n').map((s) => s.trim()).filter(Boolean),
      client_type: $('app-type').value,
    });
    if (app.client_secret) showSecret(`Client secret of ${app.name}`, app.client_secret);
    $('app-form').reset();
    await loadApps();
  } catch (err) {
    $('app-error').textContent = err.message;
  }
};

async function loadKeys() {
  const { api_keys: keys } = await api('GET', '/api/v1/api-keys');
  $('key-rows').replaceChildren(...keys.map((k) => el('tr', { dataset: { id: k.id } },
    el('td', { textContent: k.name }),
    el('td', { textContent: k.mode }),
    el('td', {}, el('code', { textContent: k.hint })),
    el('td', { textContent: k.scopes.join(' ') }),
    el('td', { textContent: when(k.created_at) }),
    el('td', { textContent: when(k.last_used_at) }),
    el('td', {},
      button('Roll', async () => {
        const rolled = await api('POST', `/api/v1/api-keys/${k.id}/roll`);
        showSecret(`New secret of ${rolled.name}`, rolled.secret);
        await loadKeys();
      }),
      button('Revoke', async () => {
        await api('DELETE', `/api/v1/api-keys/${k.id}`);
        await loadKeys();
      })),
  )));
}

$('key-form').onsubmit = async (e) => {
  e.preventDefault();
  $('key-error').textContent = '';
  const scopes = [...document.querySelectorAll('#key-scopes input:checked')].map((i) => i.value);
  try {
    const key = await api('POST', '/api/v1/api-keys', {
      name: $('key-name').value,
      mode: $('key-mode').value,
      ...(scopes.length ? { scopes } : {}),
    });
    showSecret(`Secret of ${key.name} (${key.mode})`, key.secret);
    $('key-form').reset();
    await loadKeys();
  } catch (err) {
    $('key-error').textContent = err.message;
  }
};

async function loadGrants() {
  const { grants } = await api('GET', '/api/v1/grants');
  $('grant-rows').replaceChildren(...grants.map((g) => el('tr', {},
    el('td', { textContent: g.app_name }),
    el('td', { textContent: g.scopes.join(' ') }),
    el('td', { textContent: when(g.created_at) }),
    el('td', {}, button('Revoke access', async () => {
      await api('DELETE', `/api/v1/grants/${g.id}`);
      await loadGrants();
    })),
  )));
}

// Money: integer minor units of a currency, never floats, with the server's minor units.
// money(4900, 'USD') -> "$49.00", money(2397, 'JPY') -> "¥2,397".
const money = (amount, currency, signed = false) => formatMoney({ amount, currency }, { signed });

// Reads "100", "100.5" or "100.50" as minor units of `currency`, from its digits (no floats).
function toMinor(text, currency) {
  const digits = minorUnits(currency);
  const m = /^(\d+)(?:\.(\d*))?$/.exec(text.trim());
  if (!m) throw new Error('Amount: a number such as 100.00');
  const fraction = m[2] || '';
  if (fraction.length > digits) {
    throw new Error(digits ? `Amount: ${currency} has ${digits} decimal places` : `Amount: ${currency} has no decimal places`);
  }
  const amount = Number(m[1] + fraction.padEnd(digits, '0'));
  if (amount <= 0) throw new Error('Amount: more than zero');
  if (!Number.isSafeInteger(amount)) throw new Error('Amount: too large');
  return amount;
}

function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function state(value) {
  return el('span', { className: `state ${value}`, textContent: value });
}

// Runs a section's action, showing a failure in the section's error element.
async function guarded(errorId, action) {
  $(errorId).textContent = '';
  try {
    await action();
  } catch (err) {
    $(errorId).textContent = err.message;
  }
}

// Webhooks: the endpoints, and the delivery log of the one selected (refreshed while shown).
const hooks = { selected: null, seq: 0, shown: '', timer: null };
const hookPath = (id) => `/api/v1/webhooks/endpoints/${enc(id)}`;

async function loadEventTypes() {
  const { event_types: types } = await api('GET', '/api/v1/webhooks/event-types');
  $('hook-events').append(...types.map((t) => el('label', { className: 'check' }, el('input', { type: 'checkbox', value: t }), ` ${t}`)));
}

async function loadHooks() {
  const { endpoints } = await api('GET', '/api/v1/webhooks/endpoints');
  if (hooks.selected && !endpoints.some((h) => h.id === hooks.selected)) closeDeliveries();
  $('hook-rows').replaceChildren(...endpoints.map((h) => el('tr', { dataset: { id: h.id, status: h.status }, className: h.id === hooks.selected ? 'selected' : '' },
    el('td', {}, el('code', { textContent: h.url })),
    el('td', { textContent: h.description }),
    el('td', { textContent: h.event_types.length ? h.event_types.join(' ') : 'all' }),
    el('td', {}, state(h.status), ...(h.disabled_reason ? [el('div', { className: 'muted', textContent: h.disabled_reason })] : [])),
    el('td', { textContent: when(h.created_at) }),
    el('td', {},
      button('Deliveries', () => guarded('hook-error', () => openDeliveries(h))),
      button(h.status === 'enabled' ? 'Disable' : 'Enable', () => guarded('hook-error', async () => {
        await api('PATCH', hookPath(h.id), { status: h.status === 'enabled' ? 'disabled' : 'enabled' });
        await loadHooks();
      })),
      button('Rotate', () => guarded('hook-error', async () => {
        const { secret } = await api('POST', `${hookPath(h.id)}/rotate-secret`);
        showSecret(`New signing secret of ${h.url} (the previous one keeps signing for 24 hours)`, secret);
      })),
      button('Delete', () => guarded('hook-error', async () => {
        if (!confirm(`Delete the endpoint ${h.url}? Its pending deliveries are dropped.`)) return;
        await api('DELETE', hookPath(h.id));
        await loadHooks();
      }))),
  )));
}

$('hook-form').onsubmit = (e) => {
  e.preventDefault();
  const eventTypes = [...document.querySelectorAll('#hook-events input:checked')].map((i) => i.value);
  return guarded('hook-error', async () => {
    const hook = await api('POST', '/api/v1/webhooks/endpoints', {
      url: $('hook-url').value.trim(),
      description: $('hook-description').value.trim(),
      event_types: eventTypes,
    });
    showSecret(`Signing secret of ${hook.url}`, hook.secret);
    $('hook-form').reset();
    await loadHooks();
  });
};

function lastResponse(d) {
  const code = d.last_status_code == null ? '' : String(d.last_status_code);
  const error = d.last_error && d.last_error !== `HTTP ${code}` ? d.last_error : '';
  return [code, error].filter(Boolean).join(' · ') || '—';
}

async function loadDeliveries() {
  const id = hooks.selected;
  if (!id) return;
  const seq = ++hooks.seq;
  // A later load, another endpoint or none (deleted) may have taken over meanwhile.
  const current = () => seq === hooks.seq && id === hooks.selected;
  let deliveries;
  try {
    ({ deliveries } = await api('GET', `${hookPath(id)}/deliveries`));
  } catch (err) {
    if (current()) throw err;
    return;
  }
  if (!current()) return;
  const snapshot = JSON.stringify(deliveries);
  if (snapshot === hooks.shown) return;
  hooks.shown = snapshot;
  $('delivery-empty').hidden = deliveries.length > 0;
  $('delivery-rows').replaceChildren(...deliveries.map((d) => el('tr', { dataset: { event: d.event_id, status: d.status, updated: d.updated_at } },
    el('td', {}, el('code', { textContent: d.event_id })),
    el('td', { textContent: d.event_type }),
    el('td', {}, state(d.status)),
    el('td', { className: 'num', textContent: String(d.attempts) }),
    el('td', { textContent: lastResponse(d) }),
    el('td', { textContent: when(d.next_attempt_at) }),
    el('td', { textContent: when(d.updated_at) }),
    el('td', {}, button('Replay', () => guarded('hook-error', async () => {
      await api('POST', `${hookPath(id)}/deliveries/${enc(d.event_id)}/replay`);
      await loadDeliveries();
    }))),
  )));
}

async function openDeliveries(h) {
  hooks.selected = h.id;
  hooks.shown = '';
  for (const tr of $('hook-rows').children) tr.classList.toggle('selected', tr.dataset.id === h.id);
  $('delivery-title').textContent = `Deliveries to ${h.url}`;
  $('delivery-rows').replaceChildren();
  $('delivery-empty').hidden = true;
  $('delivery-log').hidden = false;
  clearInterval(hooks.timer);
  hooks.timer = setInterval(() => {
    if (!document.hidden) loadDeliveries().catch((err) => { $('hook-error').textContent = err.message; });
  }, 2000);
  await loadDeliveries();
}

function closeDeliveries() {
  clearInterval(hooks.timer);
  hooks.selected = null;
  hooks.shown = '';
  hooks.seq++;
  $('delivery-rows').replaceChildren();
  $('delivery-log').hidden = true;
}

$('delivery-refresh').onclick = () => guarded('hook-error', loadDeliveries);

// Money: balances by currency, payouts, and the ledger statement.
async function loadMoney() {
  const [{ balances }, { payouts }, { entries }] = await Promise.all([
    api('GET', '/api/v1/balance'), api('GET', '/api/v1/payouts'), api('GET', '/api/v1/ledger'),
    loadMinorUnits(),
  ]);
  $('balance').replaceChildren(...(balances.length ? balances.map((b) => el('div', { className: 'balance', dataset: { currency: b.currency } },
    el('span', { textContent: b.currency }),
    el('span', { className: 'amount', dataset: { field: 'available' }, textContent: money(b.available, b.currency) }),
    el('span', { textContent: 'available' }),
    el('span', { dataset: { field: 'in_transit' }, textContent: `${money(b.in_transit, b.currency)} in transit` }),
  )) : [el('p', { className: 'muted', textContent: 'No balance yet: paid orders add to it.' })]));
  $('payout-currencies').replaceChildren(...balances.map((b) => el('option', { value: b.currency })));
  if (!$('payout-currency').value && balances.length) $('payout-currency').value = balances[0].currency;
  $('payout-rows').replaceChildren(...payouts.map((p) => el('tr', { dataset: { id: p.id, status: p.status } },
    el('td', { textContent: when(p.created_at) }),
    el('td', { className: 'num', textContent: money(p.amount.amount, p.amount.currency) }),
    el('td', { className: 'num', textContent: money(p.fee.amount, p.fee.currency) }),
    el('td', { className: 'num', textContent: money(p.net.amount, p.net.currency) }),
    el('td', { textContent: p.method }),
    el('td', {}, state(p.status), ...(p.failure ? [el('div', { className: 'muted', textContent: p.failure })] : [])),
    el('td', {}, el('code', { textContent: p.id })),
  )));
  $('ledger-rows').replaceChildren(...entries.map((l) => el('tr', { dataset: { id: l.id, kind: l.kind } },
    el('td', { textContent: when(l.created_at) }),
    el('td', { textContent: l.kind }),
    el('td', {}, el('code', { textContent: l.reference })),
    el('td', { className: 'num', textContent: money(l.available_change, l.currency, true) }),
  )));
}

$('money-refresh').onclick = () => guarded('payout-error', loadMoney);

$('payout-form').onsubmit = (e) => {
  e.preventDefault();
  return guarded('payout-error', async () => {
    const currency = $('payout-currency').value.trim().toUpperCase();
    if (!/^[A-Z]{3}$/.test(currency)) throw new Error('Currency: a three-letter ISO 4217 code such as USD');
    const amount = toMinor($('payout-amount').value, currency);
    // A fresh key for each submit; the button is off meanwhile, so a double click pays once.
    $('payout-create').disabled = true;
    try {
      await api('POST', '/api/v1/payouts', { amount: { amount, currency }, method: $('payout-method').value }, { 'Idempotency-Key': idempotencyKey() });
    } finally {
      $('payout-create').disabled = false;
    }
    $('payout-amount').value = '';
    await loadMoney();
  });
};

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'options'];

function schemaText(schema) {
  if (!schema) return '';
  if (schema.$ref) return schema.$ref.split('/').pop();
  if (schema.type === 'array') return `${schemaText(schema.items)}[]`;
  if (schema.allOf) return schema.allOf.map(schemaText).join(' & ');
  if (schema.anyOf) return schema.anyOf.map(schemaText).join(' | ');
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (schema.type === 'object' && schema.properties) {
    return `{ ${Object.entries(schema.properties).map(([k, v]) => `${k}: ${schemaText(v)}`).join(', ')} }`;
  }
  return schema.type || 'any';
}

function renderReference(doc) {
  const ops = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const params = [...(item.parameters || []), ...(op.parameters || [])];
      const body = op.requestBody?.content && Object.entries(op.requestBody.content)[0];
      const security = (op.security || []).map((s) => Object.entries(s).map(([name, scopes]) => scopes.length ? `${name} (${scopes.join(', ')})` : name).join(' + ')).join(' or ');
      ops.push(el('details', { className: 'operation', dataset: { path, method } },
        el('summary', {}, el('span', { className: `method ${method}`, textContent: method.toUpperCase() }), ' ', el('code', { textContent: path }), ' ', op.summary || ''),
        ...(op['x-required-scope'] ? [el('p', {}, 'Scope: ', el('code', { className: 'scope', textContent: op['x-required-scope'] }))] : []),
        ...(security ? [el('p', { textContent: `Auth: ${security}` })] : []),
        ...(params.length ? [el('p', { textContent: `Parameters: ${params.map((p) => `${p.name} (${p.in}${p.required ? ', required' : ''})`).join(', ')}` })] : []),
        ...(body ? [el('p', { textContent: `Body (${body[0]}): ${schemaText(body[1].schema)}` })] : []),
        el('ul', {}, ...Object.entries(op.responses || {}).map(([code, r]) => {
          const content = r.content && Object.entries(r.content)[0];
          return el('li', { textContent: `${code} ${r.description || (r.$ref ? r.$ref.split('/').pop() : '')}${content ? ` — ${schemaText(content[1].schema)}` : ''}` });
        })),
      ));
    }
  }
  $('operations').replaceChildren(...ops);
  $('schemas').replaceChildren(...Object.entries(doc.components?.schemas || {}).map(([name, s]) =>
    el('details', { className: 'schema' }, el('summary', { textContent: name }), el('pre', { textContent: schemaText(s) }))));
}

async function main() {
  const doc = await (await fetch('/api/openapi.json')).json();
  const scopes = Object.keys(doc.components.securitySchemes.oauth2.flows.authorizationCode.scopes);
  $('key-scopes').append(...scopes.map((s) => el('label', { className: 'check' }, el('input', { type: 'checkbox', value: s }), ` ${s}`)));
  renderReference(doc);
  // Webhooks and money report their own failures, so that the rest of the portal still works.
  await Promise.all([
    loadApps(), loadKeys(), loadGrants(),
    guarded('hook-error', () => Promise.all([loadEventTypes(), loadHooks()])),
    guarded('payout-error', loadMoney),
  ]);
  document.body.dataset.ready = 'true';
}

main().catch((err) => {
  $('app-error').textContent = err.message;
});
