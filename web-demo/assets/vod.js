// The replay page: the stream's finished recording over HLS (hls.js), with its poster, a quality
// menu, a subtitles menu and its length; a clear message while there is no replay yet.
import { streamStatus } from '/assets/webrtc.js';
import { playHls } from '/assets/hls-player.js';
import { languageName } from '/assets/captions.js';
import { loadTimeline, followTimeline } from '/assets/replay-timeline.js';

const $ = (id) => document.getElementById(id);
const streamId = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const player = $('player');
window.vitrineVod = { hls: null, ready: false, timeline: null };

function overlay(title, text) {
  $('overlay').hidden = !title;
  $('overlay-title').textContent = title || '';
  $('overlay-text').textContent = text || '';
}

async function load() {
  $('watch-link').href = `/watch/${encodeURIComponent(streamId)}`;
  let s;
  try {
    s = await streamStatus(streamId);
  } catch (e) {
    overlay('Replay not found', e.message);
    return;
  }
  $('title').textContent = s.title;
  document.title = `${s.title} (replay) - Vitrine`;
  if (!s.replay) {
    overlay(s.state === 'live' ? 'Still live' : 'No replay yet',
      s.state === 'live' ? 'The replay is ready when the seller stops.' : 'This stream has no recording.');
    setTimeout(load, 5000);
    return;
  }
  if (s.replay.poster_url) player.poster = s.replay.poster_url;
  player.addEventListener('loadedmetadata', () => {
    const d = player.duration;
    if (Number.isFinite(d)) $('length').textContent = `${Math.floor(d / 60)}:${String(Math.round(d % 60)).padStart(2, '0')}`;
  });
  const vod = playHls(player, s.replay.master_url, { quality: $('quality') });
  window.vitrineVod = { hls: vod.hls, ready: true, timeline: null };
  if (vod.hls) subtitles(vod.hls);
  const events = await loadTimeline(streamId);
  window.vitrineVod.timeline = events;
  followTimeline(player, events, streamId);
}

// The replay's subtitle tracks (one per language), drawn by the browser once picked.
function subtitles(hls) {
  const menu = $('subtitles');
  hls.on(window.Hls.Events.SUBTITLE_TRACKS_UPDATED, (_event, data) => {
    menu.replaceChildren(new Option('Off', '-1'));
    data.subtitleTracks.forEach((t, i) => menu.append(new Option(languageName(t.lang || t.name), String(i))));
    menu.disabled = data.subtitleTracks.length === 0;
    menu.value = String(hls.subtitleTrack);
  });
  menu.addEventListener('change', () => {
    hls.subtitleTrack = Number(menu.value);
    hls.subtitleDisplay = hls.subtitleTrack >= 0;
  });
}

load();
