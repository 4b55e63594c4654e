// The chat connection shared by the watch page and the studio: protocol v1 over a websocket
// (see docs/chat-protocol.md), with reconnection that resumes from the last event seen.

export class ChatConnection {
  // onEvent(message) receives every server message (welcome, room events, replies).
  constructor(streamId, token, onEvent, onState) {
    this.streamId = streamId;
    this.token = token;
    this.onEvent = onEvent;
    this.onState = onState || (() => {});
    this.lastId = null;
    this.retryMs = 500;
    this.closedByUs = false;
    this.queue = [];
    this.open();
  }

  open() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/ws/streams/${encodeURIComponent(this.streamId)}/chat`);
    this.ws = ws;
    this.onState('connecting');
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ type: 'hello', protocol: 1, token: this.token || undefined, resume_from: this.lastId || undefined }));
    });
    ws.addEventListener('message', (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg.type === 'welcome') {
        this.retryMs = 500;
        this.onState('open');
        if (msg.last_event_id) this.lastId = msg.last_event_id;
        for (const queued of this.queue.splice(0)) ws.send(queued);
      } else if (msg.id) {
        this.lastId = msg.id;
      }
      this.onEvent(msg);
    });
    ws.addEventListener('close', (e) => {
      if (this.closedByUs) return;
      // 4003: invalid token or banned; reconnecting would only repeat it.
      if (e.code === 4003) { this.onState('refused', e.reason); return; }
      this.onState('reconnecting', e.reason);
      setTimeout(() => this.open(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10000);
    });
  }

  send(message) {
    const text = JSON.stringify(message);
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    else this.queue.push(text);
  }

  close() {
    this.closedByUs = true;
    this.ws.close(1000);
  }
}

// Decimal places of each currency's minor unit as the server counts them (ISO 4217), from
// its currency table, fetched once. Until it has arrived the browser's own data is used, which
// differs from ISO 4217 for a few currencies (IDR, HUF, IQD ...).
const MINOR_UNITS = new Map();
let minorUnitsLoaded = null;

export function loadMinorUnits() {
  minorUnitsLoaded ??= fetch('/api/v1/public/currencies')
    .then((r) => (r.ok ? r.json() : { currencies: [] }))
    .then((table) => { for (const c of table.currencies) MINOR_UNITS.set(c.code, c.minor_units); })
    .catch(() => {});
  return minorUnitsLoaded;
}

export function minorUnits(currency) {
  return MINOR_UNITS.get(currency)
    ?? new Intl.NumberFormat(undefined, { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
}

// Integer minor units as an exact decimal string ("4900", 2 -> "49.00"): no float arithmetic.
function decimal(amount, digits) {
  const sign = amount < 0 ? '-' : '';
  const text = String(Math.abs(amount)).padStart(digits + 1, '0');
  return digits ? `${sign}${text.slice(0, -digits)}.${text.slice(-digits)}` : `${sign}${text}`;
}

// Formats integer minor units in their currency ({amount: 4900, currency: "USD"} -> "$49.00");
// `signed` shows + on gains, as a statement does.
export function money(m, { signed = false } = {}) {
  if (!m) return '';
  const digits = minorUnits(m.currency);
  const format = new Intl.NumberFormat(undefined, {
    style: 'currency', currency: m.currency, minimumFractionDigits: digits, maximumFractionDigits: digits,
    ...(signed ? { signDisplay: 'exceptZero' } : {}),
  });
  return format.format(decimal(m.amount, digits));
}

// Where a guest buyer's token and name are kept (the watch and replay pages share it).
export const BUYER_KEY = 'vitrine.buyer';

// The guest buyer this browser is, if any: { token, name }.
export function savedBuyer() {
  try { return JSON.parse(localStorage.getItem(BUYER_KEY)); } catch { return null; }
}

// Becomes a new guest buyer named `name` (kept for the next visit); its token.
export async function guestBuyer(name) {
  const r = await fetch('/api/v1/buyers', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ display_name: name }),
  });
  const body = await r.json();
  if (!r.ok) throw new Error(body.detail || body.title);
  localStorage.setItem(BUYER_KEY, JSON.stringify({ token: body.token, name: body.display_name }));
  return body.token;
}

// A request id for a purchase: the idempotency key that makes a double tap buy once.
export function requestId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
