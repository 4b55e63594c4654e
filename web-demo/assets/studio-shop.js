// The seller's side of the show: products, pinning (flash sale price, quantity cap, per-buyer
// limit, duration), auctions of the pinned product, and the live orders list fed by the chat's
// seller events.
import { ChatConnection, money, el } from '/assets/chat.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'vitrine.seller';

function minorUnits(text, currency) {
  const digits = new Intl.NumberFormat(undefined, { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  const value = Number(String(text).replace(',', '.'));
  if (!Number.isFinite(value) || value < 0) throw new Error('enter a price like 49.00');
  return Math.round(value * 10 ** digits);
}

export function startStudioShop(streamId, tokenFromLink) {
  if (tokenFromLink) sessionStorage.setItem(TOKEN_KEY, tokenFromLink);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let products = [];
  let pin = null;
  let chat = null;
  const orders = new Map();

  async function api(method, path, body) {
    const r = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    const data = text ? JSON.parse(text) : null;
    if (!r.ok) throw new Error(data?.detail || data?.title || r.statusText);
    return data;
  }

  function renderProducts() {
    $('products').replaceChildren(...products.map((p) => el('tr', {},
      el('td', {}, p.sku), el('td', {}, p.title), el('td', {}, money(p.price)), el('td', { 'data-stock': p.id }, p.stock),
      el('td', {}, el('button', { class: 'small secondary', type: 'button', onclick: () => { $('pin-product').value = p.id; $('pin-sale').focus(); } }, 'Select')))));
    const selected = $('pin-product').value;
    $('pin-product').replaceChildren(...products.map((p) => el('option', { value: p.id }, `${p.title} (${p.sku})`)));
    if (selected) $('pin-product').value = selected;
  }

  function renderPin() {
    $('pinned').textContent = pin ? `${pin.title}${pin.sale_price ? ` at ${money(pin.sale_price)}` : ''}` : 'nothing';
    $('pinned-available').textContent = pin ? String(pin.available) : '-';
    $('unpin').disabled = !pin;
  }

  function renderAuction(a) {
    $('auction-state').textContent = !a ? 'none'
      : a.status === 'open' ? `${a.current_bid ? `${money(a.current_bid)} by ${a.bidder}` : `from ${money(a.start_price)}`} (${a.bid_count} bids)`
        : a.bidder ? `sold to ${a.bidder} for ${money(a.current_bid)}` : 'ended without bids';
  }

  function renderOrders() {
    const rows = [...orders.values()].sort((a, b) => b.created_at - a.created_at).slice(0, 50);
    $('orders').replaceChildren(...rows.map((o) => el('tr', { 'data-order': o.id },
      el('td', {}, `#${o.id.slice(-6)}`), el('td', {}, o.quantity), el('td', {}, money(o.total)), el('td', {}, o.status))));
  }

  // Units sold per minute of the show, live and from the replay, as stacked bars.
  async function renderSales() {
    let minutes;
    try {
      ({ minutes } = await api('GET', `/api/v1/streams/${encodeURIComponent(streamId)}/sales`));
    } catch {
      return;
    }
    const most = Math.max(1, ...minutes.map((m) => m.live_units + m.replay_units + m.api_units));
    // Heights through the CSSOM: the page's policy refuses style attributes.
    const part = (cls, units) => {
      const span = el('span', { class: cls, 'data-units': units });
      span.style.height = `${(100 * units) / most}%`;
      return span;
    };
    const bar = (m) => el('div', { class: 'bar', 'data-minute': m.minute, title: `minute ${m.minute}: ${m.live_units} live, ${m.replay_units} replay` },
      part('replay', m.replay_units), part('live', m.live_units + m.api_units), el('small', {}, String(m.minute)));
    $('sales-chart').replaceChildren(...minutes.map(bar));
  }

  async function load() {
    try {
      products = (await api('GET', '/api/v1/products')).products;
      renderProducts();
      for (const o of (await api('GET', '/api/v1/orders')).orders) {
        if (!o.stream_id || o.stream_id === streamId) orders.set(o.id, o);
      }
      renderOrders();
      renderSales();
      $('token-box').hidden = true;
    } catch (e) {
      $('product-error').textContent = `Cannot load products: ${e.message}`;
      $('token-box').hidden = false;
      return;
    }
    chat?.close();
    chat = new ChatConnection(streamId, token, (m) => {
      if (m.type === 'welcome') { pin = m.pin; renderPin(); renderAuction(m.auction); }
      if (m.type?.startsWith('auction_')) renderAuction(m.auction);
      if (m.type === 'pin') { pin = m.pin; renderPin(); }
      if ((m.type === 'stock' || m.type === 'purchase') && pin && m.product_id === pin.product_id) {
        pin.available = m.available; renderPin();
      }
      if (m.type === 'order') { orders.set(m.order.id, m.order); renderOrders(); renderSales(); }
    });
  }

  $('use-token').addEventListener('click', () => {
    token = $('api-token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $('product-error').textContent = '';
    load();
  });

  $('product-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('product-error').textContent = '';
    try {
      const currency = $('p-currency').value.trim().toUpperCase();
      const product = await api('POST', '/api/v1/products', {
        sku: $('p-sku').value.trim(),
        title: $('p-title').value.trim(),
        price: { amount: minorUnits($('p-price').value, currency), currency },
        stock: Number($('p-stock').value),
        image_url: $('p-image').value.trim() || undefined,
      });
      products.unshift(product);
      renderProducts();
      $('pin-product').value = product.id;
      e.target.reset();
      $('p-currency').value = currency;
    } catch (err) {
      $('product-error').textContent = err.message;
    }
  });

  $('pin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('pin-error').textContent = '';
    try {
      const product = products.find((p) => p.id === $('pin-product').value);
      if (!product) throw new Error('choose a product');
      const body = { product_id: product.id };
      if ($('pin-sale').value) body.sale_price = { amount: minorUnits($('pin-sale').value, product.price.currency), currency: product.price.currency };
      if ($('pin-cap').value) body.quantity_cap = Number($('pin-cap').value);
      if ($('pin-limit').value) body.per_buyer_limit = Number($('pin-limit').value);
      if ($('pin-minutes').value) body.ends_at = Date.now() + Number($('pin-minutes').value) * 60000;
      await api('POST', `/api/v1/streams/${encodeURIComponent(streamId)}/pins`, body);
    } catch (err) {
      $('pin-error').textContent = err.message;
    }
  });

  $('auction-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('auction-error').textContent = '';
    try {
      const product = pin && products.find((p) => p.id === pin.product_id);
      if (!product) throw new Error('pin the product to auction first');
      const currency = product.price.currency;
      await api('POST', `/api/v1/streams/${encodeURIComponent(streamId)}/auctions`, {
        product_id: product.id,
        start_price: { amount: minorUnits($('auction-start').value, currency), currency },
        min_increment: { amount: minorUnits($('auction-increment').value, currency), currency },
        duration_secs: Number($('auction-seconds').value),
        extend_secs: Number($('auction-extend').value || 0),
        sudden_death: $('auction-sudden').checked,
      });
    } catch (err) {
      $('auction-error').textContent = err.message;
    }
  });

  $('unpin').addEventListener('click', async () => {
    if (!pin) return;
    try {
      await api('DELETE', `/api/v1/streams/${encodeURIComponent(streamId)}/pins/${encodeURIComponent(pin.pin_id)}`);
    } catch (err) {
      $('pin-error').textContent = err.message;
    }
  });

  if (token && streamId) load();
  else $('token-box').hidden = false;
  return { get pin() { return pin; }, get orders() { return orders; } };
}
