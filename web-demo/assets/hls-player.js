// HLS playback through hls.js (served by this server, never a CDN): live LL-HLS with a quality
// menu and a live-latency readout, and replays. Safari plays HLS natively and gets the same
// element without hls.js.
const LEVEL_AUTO = -1;

/**
 * Plays `url` in `video`. `quality` (a <select>) lists Auto and every rendition; `latency`
 * (any element) shows how far behind live the player is. Returns {hls, destroy()}.
 */
export function playHls(video, url, { quality, latency, onFatal } = {}) {
  const Hls = window.Hls;
  if (!Hls || !Hls.isSupported()) {
    if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = url;
      return { hls: null, destroy() { video.removeAttribute('src'); video.load(); } };
    }
    throw new Error('This browser cannot play HLS');
  }
  const hls = new Hls({
    lowLatencyMode: true,
    backBufferLength: 30,
    enableWorker: true,
    maxLiveSyncPlaybackRate: 1.5,
    liveSyncOnStallIncrease: 0.25,
  });
  let timer = null;
  const label = (level) => `${level.height}p`;
  hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
    if (quality) {
      quality.replaceChildren(new Option('Auto', String(LEVEL_AUTO)));
      data.levels
        .map((level, index) => ({ level, index }))
        .sort((a, b) => b.level.height - a.level.height)
        .forEach(({ level, index }) => quality.append(new Option(label(level), String(index))));
      quality.value = String(LEVEL_AUTO);
      quality.hidden = data.levels.length < 2;
    }
    video.play().catch(() => {});
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
    const level = hls.levels[data.level];
    if (quality && level && hls.autoLevelEnabled) quality.options[0].text = `Auto (${label(level)})`;
  });
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
    else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    else onFatal?.(data);
  });
  if (quality) {
    quality.onchange = () => { hls.currentLevel = Number(quality.value); };
  }
  if (latency) {
    timer = setInterval(() => {
      const behind = hls.latency;
      latency.textContent = Number.isFinite(behind) && behind > 0 ? `${behind.toFixed(1)} s behind live` : '';
    }, 1000);
  }
  hls.loadSource(url);
  hls.attachMedia(video);
  return {
    hls,
    destroy() {
      clearInterval(timer);
      if (latency) latency.textContent = '';
      if (quality) quality.hidden = true;
      hls.destroy();
    },
  };
}
