// The buyer's player: WHEP playback (autoplay muted, unmute button), live/ended state, and
// reconnection when the connection drops or the seller comes back; the chat and the pinned
// product live in shop.js.
import { play, streamStatus } from '/assets/webrtc.js';
import { startShop } from '/assets/shop.js';

const $ = (id) => document.getElementById(id);
const streamId = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const player = $('player');
let session = null;
let retryMs = 1000;
let lastState = null;

function overlay(title, text) {
  $('overlay').hidden = !title;
  $('overlay-title').textContent = title || '';
  $('overlay-text').textContent = text || '';
}

function badge(state) {
  const b = $('state');
  b.textContent = state;
  b.className = `badge ${state === 'live' ? 'live' : state === 'connecting' ? 'connecting' : ''}`;
}

async function connect() {
  try {
    session = await play(`${location.origin}/whep/${encodeURIComponent(streamId)}`, (stream) => {
      if (player.srcObject !== stream) player.srcObject = stream;
    });
    retryMs = 1000;
    session.pc.addEventListener('connectionstatechange', () => {
      const s = session?.pc.connectionState;
      $('connection').textContent = s || '-';
      if (s === 'failed' || s === 'closed') reconnectSoon();
    });
  } catch (e) {
    overlay('Cannot play', e.message);
    reconnectSoon();
  }
}

function reconnectSoon() {
  const old = session;
  session = null;
  if (old) old.pc.close();
  setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, 15000);
}

function render(state) {
  badge(state);
  $('status').textContent = state;
  if (state === 'live') overlay(null);
  else if (state === 'ended') overlay('Stream ended', 'The seller has stopped streaming. Stay here: it resumes when they come back.');
  else overlay('Starting soon', 'The seller is not live yet.');
  if (state === 'live' && lastState && lastState !== 'live' && !session) connect();
  lastState = state;
}

async function poll() {
  try {
    const s = await streamStatus(streamId);
    $('title').textContent = s.title;
    document.title = `${s.title} - Vitrine`;
    $('viewers').textContent = s.viewers;
    $('viewers-badge').textContent = `${s.viewers} watching`;
    render(s.state);
  } catch (e) {
    overlay('Stream not found', e.message);
  }
  setTimeout(poll, 1500);
}

$('unmute').addEventListener('click', () => {
  player.muted = !player.muted;
  $('unmute').textContent = player.muted ? 'Tap to unmute' : 'Mute';
  player.play().catch(() => {});
});
window.addEventListener('pagehide', () => session?.stop());
const shop = startShop(streamId);
window.vitrineWatch = { get session() { return session; }, get state() { return lastState; }, shop };

poll();
connect();
