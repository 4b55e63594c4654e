// The seller's studio: camera/mic preview with device choice, go live / stop over WHIP,
// connection state and live viewer count.
import { keepConnected, publish, streamStatus } from '/assets/webrtc.js';
import { startStudioShop } from '/assets/studio-shop.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
let streamId = params.get('stream') || '';
let streamKey = fragment.get('key') || '';
let media = null;
let live = null;

if (!streamId || !streamKey) {
  $('credentials').hidden = false;
  $('stream-id').value = streamId;
}

function setState(text, cls) {
  const badge = $('state');
  badge.textContent = text;
  badge.className = `badge ${cls || ''}`;
}

function fillDevices(select, devices, current) {
  select.replaceChildren(...devices.map((d, i) => {
    const o = document.createElement('option');
    o.value = d.deviceId;
    o.textContent = d.label || `${d.kind} ${i + 1}`;
    o.selected = d.deviceId === current;
    return o;
  }));
}

async function openDevices() {
  const constraints = {
    video: $('camera').value ? { deviceId: { exact: $('camera').value } } : { width: 1280, height: 720 },
    audio: $('microphone').value ? { deviceId: { exact: $('microphone').value } } : true,
  };
  const next = await navigator.mediaDevices.getUserMedia(constraints);
  if (media) media.getTracks().forEach((t) => t.stop());
  media = next;
  $('preview').srcObject = media;
  $('no-camera').hidden = true;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const videoTrack = media.getVideoTracks()[0];
  const audioTrack = media.getAudioTracks()[0];
  fillDevices($('camera'), devices.filter((d) => d.kind === 'videoinput'), videoTrack?.getSettings().deviceId);
  fillDevices($('microphone'), devices.filter((d) => d.kind === 'audioinput'), audioTrack?.getSettings().deviceId);
  $('golive').disabled = false;
}

async function replaceTracks() {
  if (!live) return;
  for (const sender of live.pc.getSenders()) {
    const track = media.getTracks().find((t) => t.kind === sender.track?.kind);
    if (track) await sender.replaceTrack(track);
  }
}

// After a lost connection, the studio publishes again: at once, then after these pauses (its
// node may have just died, and the cluster takes a moment to stop sending publishers there).
const REPUBLISH_PAUSES_MS = [1000, 2000, 4000, 8000];
// Refusals that another try would only repeat (a bad or revoked key, an unknown stream).
const FINAL_STATUSES = [400, 401, 403, 404, 415, 422];
// Set while the studio tries to get back on air; the button cancels it.
let reconnecting = null;

// One publish of the stream (its id and key known); throws what refused it.
async function connect() {
  $('error').textContent = '';
  $('golive').disabled = true;
  setState('connecting', 'connecting');
  try {
    live = await publish(`${location.origin}/whip/${encodeURIComponent(streamId)}`, streamKey, media);
  } finally {
    $('golive').disabled = false;
  }
  const current = live;
  current.pc.addEventListener('connectionstatechange', () => {
    if (live !== current) return;
    const s = current.pc.connectionState;
    $('connection').textContent = s || '-';
    if (s === 'connected') setState('live', 'live');
    if (s === 'disconnected' || s === 'failed') setState('reconnecting', 'connecting');
  });
  // A lost connection first restarts ICE through the session (the stream stays live); when
  // that fails, the studio publishes again from scratch.
  keepConnected(current, () => republish(current));
  $('golive').textContent = 'Stop';
  $('golive').classList.add('secondary');
}

function offAir(state, message) {
  live = null;
  setState(state, '');
  $('error').textContent = message;
  $('golive').textContent = 'Go live';
  $('golive').classList.remove('secondary');
}

async function goLive() {
  if (!streamId) streamId = $('stream-id').value.trim();
  if (!streamKey) streamKey = $('stream-key').value.trim();
  if (!streamId || !streamKey) { $('error').textContent = 'Enter the stream id and key.'; return; }
  try {
    await connect();
  } catch (e) {
    offAir('offline', `Could not go live: ${e.message}`);
  }
}

async function republish(lost) {
  if (live !== lost) return;
  live = null;
  lost.stop();
  const attempt = { cancelled: false };
  reconnecting = attempt;
  let last = null;
  for (const pause of [0, ...REPUBLISH_PAUSES_MS]) {
    if (pause) {
      setState('reconnecting', 'connecting');
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
    if (attempt.cancelled) return;
    try {
      await connect();
      reconnecting = null;
      return;
    } catch (e) {
      last = e;
      live = null;
      if (FINAL_STATUSES.includes(e.status)) break;
    }
  }
  reconnecting = null;
  offAir('connection lost', `Connection lost (${last?.message || 'no answer'}). Press Go live to reconnect.`);
}

async function stop() {
  const session = live;
  live = null;
  await session.stop();
  setState('ended', '');
  $('connection').textContent = 'closed';
  $('golive').textContent = 'Go live';
  $('golive').classList.remove('secondary');
}

$('golive').addEventListener('click', () => {
  if (reconnecting) {
    reconnecting.cancelled = true;
    reconnecting = null;
    offAir('ended', '');
    return;
  }
  return live ? stop() : goLive();
});
$('camera').addEventListener('change', () => openDevices().then(replaceTracks).catch((e) => { $('error').textContent = e.message; }));
$('microphone').addEventListener('change', () => openDevices().then(replaceTracks).catch((e) => { $('error').textContent = e.message; }));
window.addEventListener('pagehide', () => live?.stop());

async function pollViewers() {
  if (streamId) {
    $('watch-link').href = `/watch/${encodeURIComponent(streamId)}`;
    try {
      const s = await streamStatus(streamId);
      $('viewers').textContent = s.viewers;
      $('viewers-badge').textContent = `${s.viewers} watching`;
    } catch { /* shown on the next poll */ }
  }
  setTimeout(pollViewers, 2000);
}

openDevices().catch((e) => { $('error').textContent = `Camera unavailable: ${e.message}`; });
pollViewers();
const shop = startStudioShop(streamId, fragment.get('token'));
window.vitrineStudio = { get session() { return live; }, shop };
