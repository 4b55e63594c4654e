// The buyer's player: WHEP playback (autoplay muted, unmute button), or HLS when the viewer picks
// it or WebRTC cannot connect (quality menu, latency readout); live/ended state, reconnection
// when the connection drops or the seller comes back, and the replay link once there is one.
// Captions (chat events over WebRTC, WebVTT over HLS) are in captions.js; the chat and the
// pinned product live in shop.js.
import { keepConnected, play, streamStatus } from '/assets/webrtc.js';
import { playHls } from '/assets/hls-player.js';
import { startShop } from '/assets/shop.js';
import { startCaptions } from '/assets/captions.js';

const $ = (id) => document.getElementById(id);
const streamId = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const player = $('player');
let session = null;
let hlsPlayer = null;
let hlsUrl = null;
let mode = new URLSearchParams(location.search).get('hls') === '1' ? 'hls' : 'webrtc';
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
  if (mode !== 'webrtc' || session) return;
  try {
    const current = await play(`${location.origin}/whep/${encodeURIComponent(streamId)}`, (stream) => {
      if (player.srcObject !== stream) player.srcObject = stream;
    });
    if (mode !== 'webrtc') { current.stop(); return; }
    session = current;
    retryMs = 1000;
    $('connection').textContent = 'WebRTC';
    const watched = session;
    watched.pc.addEventListener('connectionstatechange', () => {
      if (session === watched) $('connection').textContent = `WebRTC ${watched.pc.connectionState}`;
    });
    // A lost connection first restarts ICE on the same session (a network change, a NAT
    // rebinding); only when that fails is a new session negotiated.
    keepConnected(watched, () => { if (session === watched) reconnectSoon(); });
  } catch (e) {
    // The server has no room for another WebRTC viewer (503), or WebRTC is blocked (a strict
    // firewall, no UDP): HLS still plays over plain HTTPS.
    if (hlsUrl && (e.status === 503 || lastState === 'live')) {
      switchTo('hls', e.status === 503 ? 'HLS (WebRTC full)' : 'HLS (WebRTC unavailable)');
      return;
    }
    overlay('Cannot play', e.message);
    // Too many attempts (429) or full without HLS yet: try again when the server says.
    reconnectSoon(e.retryAfterMs);
  }
}

function reconnectSoon(atLeastMs = 0) {
  const old = session;
  session = null;
  if (old) old.pc.close();
  if (mode !== 'webrtc') return;
  setTimeout(connect, Math.max(retryMs, atLeastMs || 0));
  retryMs = Math.min(retryMs * 2, 15000);
}

function startHls() {
  if (mode !== 'hls' || hlsPlayer || !hlsUrl) return;
  try {
    hlsPlayer = playHls(player, hlsUrl, {
      quality: $('quality'),
      latency: $('latency'),
      onFatal: () => { stopHls(); setTimeout(startHls, 2000); },
    });
    window.vitrineWatch.hls = hlsPlayer.hls;
    captions.attachHls(hlsPlayer.hls);
  } catch (e) {
    overlay('Cannot play', e.message);
  }
}

function stopHls() {
  hlsPlayer?.destroy();
  hlsPlayer = null;
  captions.detachHls();
}

function switchTo(next, label) {
  mode = next;
  $('transport').value = next;
  if (next === 'hls') {
    const old = session;
    session = null;
    old?.stop();
    player.srcObject = null;
    $('connection').textContent = label || 'HLS';
    startHls();
  } else {
    stopHls();
    player.removeAttribute('src');
    connect();
  }
}

function render(state) {
  badge(state);
  $('status').textContent = state;
  if (state === 'live') overlay(null);
  else if (state === 'ended') overlay('Stream ended', 'The seller has stopped streaming. Stay here: it resumes when they come back.');
  else overlay('Starting soon', 'The seller is not live yet.');
  if (state === 'live' && lastState !== 'live') {
    if (mode === 'webrtc' && !session && lastState) connect();
    if (mode === 'hls') { stopHls(); startHls(); }
  }
  lastState = state;
}

async function poll() {
  try {
    const s = await streamStatus(streamId);
    $('title').textContent = s.title;
    document.title = `${s.title} - Vitrine`;
    $('viewers').textContent = s.viewers;
    $('viewers-badge').textContent = `${s.viewers} watching`;
    hlsUrl = s.hls_url || null;
    captions.setLanguages(s.caption_languages);
    $('transport').querySelector('option[value="hls"]').disabled = !hlsUrl;
    $('replay-link').hidden = !(s.replay && s.state !== 'live');
    if (s.replay) $('replay-href').href = s.replay.vod_url;
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
$('transport').addEventListener('change', () => switchTo($('transport').value));
window.addEventListener('pagehide', () => { session?.stop(); stopHls(); });
const captions = startCaptions({ select: $('captions-lang'), box: $('captions') });
// How far behind real time the picture is: over HLS, now less the program date time of the
// frame on screen (the server's wall clock when that frame reached it); over WebRTC, nothing.
function pictureDelayMs() {
  const shown = mode === 'hls' ? hlsPlayer?.hls?.playingDate : null;
  return shown ? Math.max(0, Date.now() - shown.getTime()) : 0;
}
const shop = startShop(streamId, { onCaption: (m) => captions.onCaption(m), delayMs: pictureDelayMs });
window.vitrineWatch = { get session() { return session; }, get state() { return lastState; }, get mode() { return mode; }, shop, hls: null, captions: captions.state, delayMs: pictureDelayMs };

$('transport').value = mode;
poll();
connect();
