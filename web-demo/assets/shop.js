// The buyer's side of the show: the live chat, the pinned product card with live stock and
// countdown, and the buy flow (card form, purchase over the chat, confirmation).
import { ChatConnection, money, requestId, el, loadMinorUnits, BUYER_KEY, savedBuyer, guestBuyer } from '/assets/chat.js';
import { inSync } from '/assets/in-sync.js';
import { startAuction } from '/assets/auction.js';

const $ = (id) => document.getElementById(id);
const REACTIONS = ['❤️', '🔥', '👏', '😂', '😮', '🛍️'];
const CURRENCY_KEY = 'vitrine.currency';

// The currency a region's buyers pay in, for the first guess from the browser's language; the
// buyer can pick another, and the choice is kept.
const REGION_CURRENCY = {
  US: 'USD', GB: 'GBP', JP: 'JPY', KW: 'KWD', CA: 'CAD', AU: 'AUD', CH: 'CHF', CN: 'CNY', IN: 'INR',
  BR: 'BRL', MX: 'MXN', KR: 'KRW', SE: 'SEK', NO: 'NOK', DK: 'DKK', PL: 'PLN', SG: 'SGD', HK: 'HKD',
  NZ: 'NZD', ZA: 'ZAR', AE: 'AED', SA: 'SAR', BH: 'BHD', JO: 'JOD', OM: 'OMR', TR: 'TRY',
  DE: 'EUR', FR: 'EUR', ES: 'EUR', IT: 'EUR', NL: 'EUR', BE: 'EUR', AT: 'EUR', IE: 'EUR', PT: 'EUR', FI: 'EUR', GR: 'EUR',
};

function guessCurrency(known) {
  const saved = localStorage.getItem(CURRENCY_KEY);
  if (saved && known.includes(saved)) return saved;
  for (const tag of navigator.languages || [navigator.language]) {
    const region = (() => { try { return new Intl.Locale(tag).maximize().region; } catch { return null; } })();
    const c = region && REGION_CURRENCY[region];
    if (c && known.includes(c)) return c;
  }
  return null;
}

// Room events shown in step with the picture (see in-sync.js); the rest at once.
const SHOWN_IN_SYNC = ['chat', 'reaction', 'pin', 'purchase', 'moderation'];

// `onCaption` hears the room's live `caption` events; `delayMs()` says how far behind real time
// the viewer's picture is (0 over WebRTC).
export function startShop(streamId, { onCaption, delayMs = () => 0 } = {}) {
  let chat = null;
  let pin = null;
  let pending = null; // request id of the purchase in flight
  let awaiting = null; // id of the order whose payment the processor confirms later
  let countdown = null;
  let currency = null; // the buyer's currency, when exchange rates are configured
  let quoteFor = 0; // which pin render the shown conversion belongs to
  let dialogQuote = 0; // which dialog update the shown total belongs to
  let quotedCurrency = null; // the currency the open dialog showed a total in

  const buyer = savedBuyer;
  const auction = startAuction({ send: (m) => chat.send(m), system: (text, cls) => system(text, cls), buyer });

  function line(node) {
    const log = $('chat-log');
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(node);
    while (log.children.length > 200) log.firstChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function chatLine(m) {
    const li = el('li', { 'data-id': m.id }, el('span', { class: `who ${m.from.role}` }, m.from.name), m.text);
    line(li);
  }

  function system(text, cls = 'system') {
    line(el('li', { class: cls }, text));
  }

  function renderStock(available) {
    const s = $('product-stock');
    if (available <= 0) { s.textContent = 'Sold out'; s.className = 'stock out'; }
    else { s.textContent = `${available} left`; s.className = available <= 10 ? 'stock low' : 'stock'; }
    $('buy').disabled = available <= 0 || saleEnded();
  }

  function saleEnded() {
    return pin?.ends_at && pin.ends_at <= Date.now();
  }

  function tick() {
    if (!pin?.ends_at) { $('product-countdown').textContent = ''; return; }
    const left = Math.max(0, pin.ends_at - Date.now());
    const m = Math.floor(left / 60000);
    const s = Math.floor((left % 60000) / 1000);
    $('product-countdown').textContent = left > 0 ? `ends in ${m}:${String(s).padStart(2, '0')}` : 'sale ended';
    if (left <= 0) $('buy').disabled = true;
  }

  function renderPin(next) {
    pin = next;
    clearInterval(countdown);
    $('product').hidden = !pin;
    if (!pin) return;
    $('product-title').textContent = pin.title;
    $('product-price').textContent = money(pin.sale_price || pin.price);
    $('product-list-price').textContent = pin.sale_price ? money(pin.price) : '';
    const img = $('product-image');
    img.hidden = !pin.image_url;
    if (pin.image_url) img.src = pin.image_url;
    renderStock(pin.available);
    tick();
    countdown = setInterval(tick, 1000);
    renderLocalPrice();
  }

  // What the buyer pays in their own currency: the server's conversion (its rounding, its
  // rates), shown beside the seller's price. The order locks the rate when it is placed.
  async function localPrice(price) {
    if (!currency || !price || currency === price.currency) return null;
    const q = new URLSearchParams({ amount: String(price.amount), from: price.currency, to: currency });
    const r = await fetch(`/api/v1/public/fx/convert?${q}`);
    if (!r.ok) return null;
    return (await r.json()).to;
  }

  async function renderLocalPrice() {
    const mine = ++quoteFor;
    const local = await localPrice(pin && (pin.sale_price || pin.price)).catch(() => null);
    if (mine !== quoteFor) return;
    $('product-local-price').hidden = !local;
    $('product-local-price').textContent = local ? `≈ ${money(local)}` : '';
  }

  async function loadCurrencies() {
    const r = await fetch('/api/v1/public/fx/rates').catch(() => null);
    if (!r?.ok) return; // rates not loaded (or stale): prices stay in the seller's currency
    const table = await r.json();
    if (!table.base) return; // no rates configured: an empty table
    const known = [...new Set([table.base, ...Object.keys(table.rates)])].sort();
    currency = guessCurrency(known);
    const select = $('currency');
    select.replaceChildren(el('option', { value: '' }, 'Seller\'s currency'), ...known.map((c) => el('option', { value: c }, c)));
    select.value = currency || '';
    $('currency-choice').hidden = false;
    select.addEventListener('change', () => {
      currency = select.value || null;
      if (currency) localStorage.setItem(CURRENCY_KEY, currency); else localStorage.removeItem(CURRENCY_KEY);
      renderLocalPrice();
    });
    renderLocalPrice();
  }

  // Availability as checkout has it now, by product: a pin shown late shows today's stock.
  const liveStock = new Map();
  const showInSync = inSync(delayMs, (m) => show(m));

  function onEvent(m) {
    // Stock is shown live, whatever else waits for the picture.
    if (m.type === 'stock' || m.type === 'purchase') {
      liveStock.set(m.product_id, m.available);
      if (pin && m.product_id === pin.product_id) { pin.available = m.available; renderStock(m.available); }
      if (m.type === 'stock') return;
    }
    if (SHOWN_IN_SYNC.includes(m.type)) showInSync(m);
    else show(m);
  }

  function show(m) {
    switch (m.type) {
      case 'welcome':
        if (!m.resumed) $('chat-log').replaceChildren();
        if (m.gap) system('Some messages were missed while you were away.');
        for (const e of m.history) show(e);
        renderPin(m.pin);
        // Only an open auction comes with the welcome; an ended one stays as the history left it
        // (the winner's "pay now" with it).
        if (m.auction) auction.render(m.auction);
        if (m.you.role !== 'viewer') {
          $('join-form').hidden = true;
          $('chat-form').hidden = false;
          $('reactions').hidden = false;
        }
        break;
      case 'chat': chatLine(m); break;
      case 'caption': onCaption?.(m); break;
      case 'pin':
        if (m.pin && liveStock.has(m.pin.product_id)) m.pin.available = liveStock.get(m.pin.product_id);
        renderPin(m.pin);
        if (m.pin) system(`Now showing: ${m.pin.title}`);
        break;
      case 'purchase':
        {
          const who = (m.orders || 1) > 1 ? `${m.orders} people just bought it` : 'Someone just bought it';
          system(m.available > 0 ? `${who} - ${m.available} left` : `${who} - sold out!`, 'purchase');
        }
        break;
      case 'moderation':
        if (m.action === 'delete') document.querySelector(`#chat-log [data-id="${CSS.escape(m.message_id)}"]`)?.remove();
        if (m.action === 'slow_mode') system(m.seconds ? `Slow mode: one message every ${m.seconds} s` : 'Slow mode is off');
        break;
      case 'order.confirmed':
        if (m.request_id === pending) pending = null;
        if (m.order.status === 'payment_pending') awaitPayment(m.order).catch(() => {});
        else confirmed(m.order);
        break;
      case 'order':
        // Only its buyer and the seller receive an order: a payment confirmed later has its answer.
        if (m.order.id === awaiting && m.order.status !== 'payment_pending') settledLater(m.order);
        auction.onMessage(m);
        break;
      case 'order.failed': {
        if (m.request_id === pending) pending = null;
        const why = { sold_out: 'Sold out', payment_declined: 'Your card was declined', limit_exceeded: 'You reached the per-buyer limit', sale_ended: 'The sale has ended', payment_timeout: 'The payment timed out; nothing was charged', not_pinned: 'This product is no longer on sale here' }[m.reason] || m.detail;
        $('buy-result').textContent = why;
        $('buy-result').className = 'buy-result fail';
        $('buy').disabled = !pin || pin.available <= 0;
        break;
      }
      case 'error':
        system(m.code === 'slow_mode' || m.code === 'rate_limited' ? `Slow down: try again in ${Math.ceil((m.retry_after_ms || 1000) / 1000)} s` : m.message);
        break;
      default: auction.onMessage(m); break;
    }
  }

  function confirmed(order) {
    $('buy-result').textContent = `Order confirmed: ${order.quantity} x ${pin?.title || 'item'}, ${money(order.charged || order.presentment?.total || order.total)} (#${order.id.slice(-6)})`;
    $('buy-result').className = 'buy-result ok';
    $('buy').disabled = !pin || pin.available <= 0;
  }

  // The processor confirms this order's payment later: the buyer's step (3-D Secure) is linked,
  // and the room's `order` event brings the answer.
  async function awaitPayment(order) {
    awaiting = order.id;
    $('buy-result').className = 'buy-result';
    $('buy-result').textContent = 'Waiting for your bank to confirm the payment...';
    const r = await fetch(`/api/v1/orders/${encodeURIComponent(order.id)}`, { headers: { authorization: `Bearer ${buyer()?.token}` } });
    const body = r.ok ? await r.json() : null;
    if (!body || awaiting !== order.id) return;
    if (body.status !== 'payment_pending') { settledLater(body); return; }
    if (!body.next_action?.url) return;
    const link = el('a', { id: 'confirm-payment', href: body.next_action.url, target: '_blank', rel: 'noopener' }, 'Confirm the payment with your bank');
    $('buy-result').replaceChildren('Your bank asks you to confirm this payment: ', link);
  }

  function settledLater(order) {
    awaiting = null;
    if (order.status === 'paid') { confirmed(order); return; }
    $('buy-result').textContent = 'The payment was not completed; nothing was charged';
    $('buy-result').className = 'buy-result fail';
    $('buy').disabled = !pin || pin.available <= 0;
  }

  function connect(token) {
    chat?.close();
    chat = new ChatConnection(streamId, token, onEvent, (state, reason) => {
      $('chat-state').textContent = state === 'open' ? '' : state;
      if (state === 'refused') {
        system(reason || 'You cannot join this chat.');
        if (reason === 'invalid token') { localStorage.removeItem(BUYER_KEY); $('join-form').hidden = false; $('chat-form').hidden = true; }
      }
    });
  }

  async function join(name) {
    connect(await guestBuyer(name));
  }

  function openCheckout() {
    if (!pin) return;
    if (!buyer()) { $('display-name').focus(); system('Enter your name to buy.'); return; }
    $('buy-title').textContent = pin.title;
    $('buy-price').textContent = money(pin.sale_price || pin.price);
    $('buy-quantity').max = String(Math.max(1, Math.min(10, pin.per_buyer_limit || 10, pin.available)));
    $('buy-local').hidden = true;
    $('buy-local-hint').hidden = true;
    quotedCurrency = null;
    updateDialogTotal();
    $('buy-dialog').showModal();
    $('card-number').focus();
  }

  // The dialog's total in the buyer's currency, for the quantity chosen.
  async function updateDialogTotal() {
    const mine = ++dialogQuote;
    const price = pin && (pin.sale_price || pin.price);
    const quantity = Number($('buy-quantity').value) || 1;
    const local = await localPrice(price && { amount: price.amount * quantity, currency: price.currency }).catch(() => null);
    if (mine !== dialogQuote) return; // a later quantity's answer wins
    quotedCurrency = local ? local.currency : null;
    $('buy-local').hidden = !local;
    $('buy-local-hint').hidden = !local;
    $('buy-local-price').textContent = local ? money(local) : '';
  }
  $('buy-quantity').addEventListener('input', updateDialogTotal);

  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    join($('display-name').value.trim()).catch((err) => system(`Could not join: ${err.message}`));
  });
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('chat-input').value.trim();
    if (!text) return;
    $('chat-input').value = '';
    if (text === '/buy') { openCheckout(); return; }
    chat.send({ type: 'chat', text });
  });
  $('reactions').append(...REACTIONS.map((emoji) => el('button', { type: 'button', onclick: () => chat.send({ type: 'react', emoji }) }, emoji)));
  $('buy').addEventListener('click', openCheckout);
  $('buy-form').addEventListener('submit', (e) => {
    if (e.submitter?.value !== 'pay') return;
    const quantity = Number($('buy-quantity').value) || 1;
    pending = requestId();
    $('buy').disabled = true;
    $('buy-result').textContent = 'Paying...';
    $('buy-result').className = 'buy-result';
    const order = { type: 'buy', request_id: pending, product_id: pin.product_id, quantity, card_number: $('card-number').value };
    // Only in a currency the buyer was shown a total in: otherwise in the seller's.
    if (quotedCurrency) order.currency = quotedCurrency;
    chat.send(order);
  });

  const saved = buyer();
  if (saved) $('display-name').value = saved.name;
  connect(saved?.token);
  loadMinorUnits().then(() => { if (pin) renderPin(pin); });
  loadCurrencies();
  return { get pin() { return pin; }, get chat() { return chat; } };
}
