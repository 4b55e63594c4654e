// The watch page's live auction: the current bid, the leading bidder and the countdown, a bid
// button that offers the least next bid (or a typed amount), and once the hammer falls the
// winner's "pay now" for the order it made (POST /api/v1/orders/{id}/pay).
import { el, money, minorUnits, requestId } from '/assets/chat.js';

const $ = (id) => document.getElementById(id);

const REFUSED = {
  too_low: 'Someone bid more: try again',
  auction_ended: 'Too late: the auction has ended',
  already_highest: 'You already hold the highest bid',
  rate_limited: 'Slow down: too many bids',
};

// Integer minor units from a decimal the buyer typed, for a currency of `digits` decimals.
function minor(text, digits) {
  const m = /^\s*(\d+)(?:[.,](\d*))?\s*$/.exec(text);
  if (!m) return null;
  const frac = (m[2] || '').padEnd(digits, '0');
  if (frac.length > digits) return null;
  return Number(m[1]) * 10 ** digits + Number(frac || '0');
}

// `send` writes a chat frame, `system` adds a line to the chat log, `buyer()` is the signed-in
// guest ({ token, name }) or null.
export function startAuction({ send, system, buyer }) {
  let auction = null;
  let ticking = null;
  let pending = null; // request id of the bid in flight
  let myOrder = null; // the order a won auction made for this buyer

  function tick() {
    if (!auction) return;
    const left = Math.max(0, auction.ends_at - Date.now());
    const s = Math.ceil(left / 1000);
    $('auction-countdown').textContent = auction.status === 'open'
      ? (left > 0 ? `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')} left` : 'closing...')
      : 'ended';
    $('auction-countdown').className = left <= 10000 && auction.status === 'open' ? 'countdown urgent' : 'countdown';
  }

  function render(next) {
    auction = next;
    clearInterval(ticking);
    $('auction').hidden = !auction;
    if (!auction) return;
    const open = auction.status === 'open';
    $('auction-current').textContent = money(auction.current_bid || auction.start_price);
    $('auction-label').textContent = auction.current_bid ? (open ? 'Current bid' : 'Sold for') : (open ? 'Starting at' : 'No bids');
    $('auction-bidder').textContent = auction.bidder ? `by ${auction.bidder}` : '';
    $('auction-count').textContent = `${auction.bid_count} bid${auction.bid_count === 1 ? '' : 's'}`;
    $('auction-bid').textContent = `Bid ${money(auction.next_min_bid)}`;
    $('auction-bid').disabled = !open || pending !== null;
    $('auction-custom').hidden = !open;
    $('auction-sudden').hidden = !auction.sudden_death;
    tick();
    if (open) ticking = setInterval(tick, 250);
  }

  function bid(amount) {
    if (!auction || auction.status !== 'open') return;
    if (!buyer()) { $('display-name').focus(); system('Enter your name to bid.'); return; }
    pending = requestId();
    $('auction-bid').disabled = true;
    $('auction-result').textContent = 'Bidding...';
    $('auction-result').className = 'buy-result';
    send({ type: 'bid', request_id: pending, auction_id: auction.id, amount });
  }

  async function pay() {
    const card = $('auction-card').value;
    $('auction-result').textContent = 'Paying...';
    const r = await fetch(`/api/v1/orders/${encodeURIComponent(myOrder)}/pay`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${buyer()?.token}` },
      body: JSON.stringify({ payment: { card_number: card } }),
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok && body.status === 'payment_pending') {
      // The bank confirms later: its check is linked, and the room's `order` event brings the answer.
      $('auction-result').className = 'buy-result';
      $('auction-result').textContent = 'Waiting for your bank to confirm the payment...';
      if (body.next_action?.url) {
        const link = el('a', { href: body.next_action.url, target: '_blank', rel: 'noopener' }, 'Confirm the payment with your bank');
        $('auction-result').replaceChildren('Your bank asks you to confirm this payment: ', link);
      }
      $('auction-pay').hidden = true;
      return;
    }
    const ok = r.ok && body.status === 'paid';
    $('auction-result').textContent = ok ? `Paid ${money(body.total)} (#${body.id.slice(-6)})` : (body.detail || body.title || 'Payment failed');
    $('auction-result').className = ok ? 'buy-result ok' : 'buy-result fail';
    $('auction-pay').hidden = !!ok;
  }

  $('auction-bid').addEventListener('click', () => auction && bid(auction.next_min_bid));
  $('auction-custom').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!auction) return;
    const amount = minor($('auction-amount').value, minorUnits(auction.next_min_bid.currency));
    if (amount === null) { $('auction-result').textContent = 'Type an amount like 12.50'; return; }
    bid({ amount, currency: auction.next_min_bid.currency });
  });
  $('auction-pay').addEventListener('submit', (e) => { e.preventDefault(); pay(); });

  // Handles a chat message if it is the auction's; true when it was.
  function onMessage(m) {
    switch (m.type) {
      case 'auction_started':
        render(m.auction);
        $('auction-result').textContent = '';
        $('auction-pay').hidden = true;
        system(`Auction started: bids from ${money(m.auction.start_price)}`, 'purchase');
        return true;
      case 'auction_bid':
        if (!auction || auction.id === m.auction.id) render(m.auction);
        if (m.auction.bidder !== buyer()?.name) $('auction-result').textContent = '';
        return true;
      case 'auction_ended':
        render(m.auction);
        system(m.auction.bidder ? `Sold to ${m.auction.bidder} for ${money(m.auction.current_bid)}!` : 'The auction ended without bids', 'purchase');
        return true;
      case 'bid.accepted':
        if (m.request_id === pending) pending = null;
        $('auction-result').textContent = 'You lead!';
        $('auction-result').className = 'buy-result ok';
        // The room's announcements may already be ahead of this reply.
        if (!auction || m.auction.bid_count >= auction.bid_count) render(m.auction);
        return true;
      case 'bid.refused':
        if (m.request_id === pending) pending = null;
        $('auction-result').textContent = REFUSED[m.reason] || m.detail;
        $('auction-result').className = 'buy-result fail';
        render(auction);
        return true;
      case 'order':
        // Only its buyer and the seller receive an order: the hammer's is this buyer's win.
        if (myOrder === m.order.id && m.order.status !== 'pending' && m.order.status !== 'payment_pending') {
          const paid = m.order.status === 'paid';
          $('auction-result').textContent = paid ? `Paid ${money(m.order.total)} (#${m.order.id.slice(-6)})` : 'The payment was not completed';
          $('auction-result').className = paid ? 'buy-result ok' : 'buy-result fail';
          $('auction-pay').hidden = paid;
        }
        if (auction?.order_id === m.order.id && m.order.status === 'pending') {
          myOrder = m.order.id;
          $('auction-result').textContent = `You won! Pay ${money(m.order.total)} to get it.`;
          $('auction-result').className = 'buy-result ok';
          $('auction-pay').hidden = false;
        }
        return true;
      default:
        return false;
    }
  }

  return { render, onMessage };
}
