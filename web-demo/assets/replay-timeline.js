// The show's room on the replay: the chat lines, pins and flash sales of the live show, from
// the stream's timeline (their moments on the recording), shown as the video reaches them;
// seeking shows the room as it was at that moment. A list of the products shown, each with a
// link that jumps to the moment it was pinned.
import { el, money, savedBuyer, guestBuyer } from '/assets/chat.js';

const $ = (id) => document.getElementById(id);
// Pages fetched at most (a page is up to 1,000 events).
const MAX_PAGES = 50;
// Chat lines shown at once.
const SHOWN_LINES = 100;

export async function loadTimeline(streamId) {
  const events = [];
  let from = 0;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const r = await fetch(`/api/v1/public/streams/${encodeURIComponent(streamId)}/timeline?from_ms=${from}&limit=1000`);
    if (!r.ok) break;
    const body = await r.json();
    // A page starts where the last one stopped: an event at that millisecond may come twice.
    for (const e of body.events) {
      if (!events.some((k) => k.at_ms === e.at_ms && k.id === e.id && k.type === e.type)) events.push(e);
    }
    if (body.next_from_ms === undefined) break;
    from = body.next_from_ms;
  }
  return events;
}

function clock(ms) {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

// The pin in force at `ms`: the last pin, sale or unpin at or before it.
function pinAt(events, ms) {
  let pin = null;
  for (const e of events) {
    if (e.at_ms > ms) break;
    if (e.type === 'pin' || e.type === 'sale') pin = e;
    if (e.type === 'unpin') pin = null;
  }
  return pin;
}

// A product's price and stock now (a replay sells at today's price), asked at most every 10 s.
const known = new Map();
async function productNow(id) {
  const hit = known.get(id);
  if (hit && Date.now() - hit.at < 10_000) return hit.product;
  const r = await fetch(`/api/v1/public/products/${encodeURIComponent(id)}`);
  const product = r.ok ? await r.json() : null;
  known.set(id, { at: Date.now(), product });
  return product;
}

function showPin(event) {
  const card = $('replay-pin');
  card.hidden = !event;
  if (!event) return;
  const p = event.pin;
  $('replay-pin-title').textContent = p.title;
  $('replay-pin-price').textContent = money(p.price);
  $('replay-pin-stock').textContent = '';
  // A flash sale of the show is over: its price is shown as what it was.
  $('replay-pin-sale').textContent = p.sale_price ? `${money(p.sale_price)} in the show's flash sale (ended)` : '';
  productNow(p.product_id).then((now) => {
    if ($('replay-pin-title').textContent !== p.title) return; // another pin by now
    if (!now) {
      $('replay-pin-stock').textContent = 'No longer sold';
      $('replay-buy-button').disabled = true;
      return;
    }
    $('replay-pin-price').textContent = money(now.price);
    $('replay-pin-stock').textContent = now.available > 0 ? `${now.available} left` : 'Sold out';
    $('replay-buy-button').disabled = now.available <= 0;
  }).catch(() => {});
}

function showChat(events, ms) {
  const lines = events.filter((e) => e.type === 'chat' && e.at_ms <= ms).slice(-SHOWN_LINES);
  $('replay-chat').replaceChildren(...lines.map((e) => el('li', { 'data-at': e.at_ms },
    el('span', { class: `who ${e.from?.role || ''}` }, e.from?.name || ''), e.text)));
  const log = $('replay-chat');
  log.scrollTop = log.scrollHeight;
}

function showMoments(events, player) {
  const pins = events.filter((e) => e.type === 'pin' || e.type === 'sale');
  $('moments-panel').hidden = pins.length === 0;
  $('moments').replaceChildren(...pins.map((e) => el('li', {},
    el('a', {
      href: `#t=${Math.floor(e.at_ms / 1000)}`,
      'data-at': e.at_ms,
      onclick: (ev) => {
        ev.preventDefault();
        player.currentTime = e.at_ms / 1000;
        player.play().catch(() => {});
      },
    }, `${clock(e.at_ms)} ${e.pin.title}`))));
}

// Buying the product on screen from the replay: an order at the catalog price, saying it came
// from this replay at this moment.
function buyFromReplay(streamId, player, current) {
  $('replay-buy').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const pin = current();
    if (!pin) return;
    const result = $('replay-buy-result');
    result.textContent = 'Paying...';
    try {
      const token = savedBuyer()?.token || await guestBuyer($('replay-buyer').value);
      const r = await fetch('/api/v1/orders', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}`, 'Idempotency-Key': crypto.randomUUID() },
        body: JSON.stringify({
          product_id: pin.pin.product_id, quantity: 1, stream_id: streamId, source: 'replay',
          media_ms: Math.floor(player.currentTime * 1000), payment: { card_number: $('replay-card').value },
        }),
      });
      const body = await r.json();
      if (!r.ok) throw new Error(body.detail || body.title);
      result.textContent = `Paid ${money(body.total)}: order ${body.id}`;
      result.dataset.order = body.id;
    } catch (e) {
      result.textContent = e.message;
    }
  });
}

// Follows `player`: the room as it was at the picture's moment.
export function followTimeline(player, events, streamId) {
  let current = null;
  buyFromReplay(streamId, player, () => current);
  showMoments(events, player);
  let shown = -1;
  const render = () => {
    const ms = Math.floor(player.currentTime * 1000);
    if (ms === shown) return;
    shown = ms;
    current = pinAt(events, ms);
    showPin(current);
    showChat(events, ms);
  };
  for (const name of ['timeupdate', 'seeked', 'loadedmetadata']) player.addEventListener(name, render);
  render();
}
