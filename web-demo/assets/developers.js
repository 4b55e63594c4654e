// The developer portal: the signed-in account's apps, API keys and grants through the JSON API
// (the session cookie plus the page's CSRF token), and the API reference rendered from the
// OpenAPI document. Secrets appear once, in the box that follows the action that made them.
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const init = { method, headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin' };
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
  await Promise.all([loadApps(), loadKeys(), loadGrants()]);
  document.body.dataset.ready = 'true';
}

main().catch((err) => {
  $('app-error').textContent = err.message;
});
