// Captions on the watch and replay pages. WebRTC viewers read the chat's `caption` events: a
// partial is replaced by the next caption of its utterance, a final stays until the next one
// (or a few seconds of quiet). HLS viewers get the stream's WebVTT subtitle rendition through
// hls.js, which the browser draws. The viewer's choice of language is remembered.
const CHOICE_KEY = 'vitrine.captions';
// A caption stays this long after the last word when nothing follows.
const LINGER_MS = 6000;

export function languageName(code) {
  try {
    const names = new Intl.DisplayNames([navigator.language || 'en'], { type: 'language' });
    return names.of(code) || code;
  } catch {
    return code;
  }
}

/**
 * `select`: the language menu (Off plus languages); `box`: the element captions are written in
 * (WebRTC). Returns {setLanguages(list), onCaption(event), attachHls(hls), detachHls(), state}.
 */
export function startCaptions({ select, box }) {
  let languages = [];
  let hls = null;
  let lastFinal = '';
  let partial = '';
  let utterance = null;
  let timer = null;
  const state = { lang: localStorage.getItem(CHOICE_KEY) || '', shown: '' };

  function render() {
    const text = [lastFinal, partial].filter(Boolean).join('\n');
    state.shown = text;
    box.textContent = text;
    box.hidden = !text || !state.lang || !!hls;
    box.classList.toggle('partial', !!partial);
    clearTimeout(timer);
    if (text) timer = setTimeout(() => { lastFinal = ''; partial = ''; render(); }, LINGER_MS);
  }

  function fillMenu() {
    const options = [new Option('Off', '')];
    for (const code of languages) options.push(new Option(languageName(code), code));
    select.replaceChildren(...options);
    select.value = languages.includes(state.lang) ? state.lang : '';
    select.disabled = languages.length === 0;
  }

  // hls.js picks its subtitle track itself whenever its list changes: tell it the preference
  // (it then picks ours), and select directly for tracks already listed.
  function applyHls() {
    if (!hls) return;
    const lang = select.value;
    hls.subtitleDisplay = !!lang;
    hls.setSubtitleOption?.(lang ? { lang } : { id: -1 });
    const index = hls.subtitleTracks.findIndex((t) => t.lang === lang);
    if (hls.subtitleTrack !== index) hls.subtitleTrack = index;
  }

  select.addEventListener('change', () => {
    state.lang = select.value;
    localStorage.setItem(CHOICE_KEY, state.lang);
    lastFinal = '';
    partial = '';
    render();
    applyHls();
  });

  return {
    state,
    setLanguages(list) {
      const next = (list || []).slice();
      if (next.join() === languages.join()) return;
      languages = next;
      fillMenu();
      applyHls();
    },
    onCaption(m) {
      if (!state.lang || m.lang !== state.lang) return;
      if (m.kind === 'final') {
        lastFinal = m.text;
        if (m.utterance === utterance || utterance === null) partial = '';
        utterance = null;
      } else {
        if (utterance !== null && m.utterance !== utterance) lastFinal = '';
        utterance = m.utterance;
        partial = m.text;
      }
      render();
    },
    attachHls(player) {
      hls = player;
      if (!hls) return;
      render();
      hls.on(window.Hls.Events.SUBTITLE_TRACKS_UPDATED, () => setTimeout(applyHls));
      applyHls();
    },
    detachHls() {
      hls = null;
      render();
    },
  };
}
