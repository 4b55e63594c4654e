// WHIP and WHEP clients (RFC 9725 and the WHEP draft) for the studio and watch pages.
// Each call returns a session with the peer connection, a restartIce() that restarts ICE through
// PATCH (RFC 9725 §4.4) and a stop() that DELETEs the resource. The ICE servers (TURN with
// time-limited credentials) come from the endpoint's `Link` headers (RFC 9725 §4.6).

const GATHER_TIMEOUT_MS = 2000;
const SDPFRAG = 'application/trickle-ice-sdpfrag';
// How long a connection may stay disconnected before ICE is restarted (the browser says
// "disconnected" only after seconds without an answer; a restart costs one PATCH, and
// re-publishing soon after a node dies matters more), and how long a restart may take before
// the session is given up.
const DISCONNECTED_GRACE_MS = 500;
const RESTART_TIMEOUT_MS = 5000;
// A connection that receives nothing (no RTCP reports, which the server sends every second, no
// media, no ICE answers) for this long is restarted though the browser still calls it
// connected: it would take it several seconds more to notice that a node died.
const SILENCE_MS = 2000;
const SILENCE_CHECK_MS = 250;

function iceGathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    pc.addEventListener('icegatheringstatechange', check);
    setTimeout(done, GATHER_TIMEOUT_MS);
  });
}

async function problemText(response) {
  try {
    const p = await response.json();
    return p.detail || p.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** The ICE servers of `Link: <url>; rel="ice-server"; username=".."; credential=".."` values. */
export function iceServersFromLinks(header) {
  if (!header) return [];
  const servers = [];
  // Link values are comma separated; a comma never occurs inside our quoted parameters or URLs.
  for (const link of header.split(/,(?=\s*<)/)) {
    const url = /^\s*<([^>]*)>/.exec(link)?.[1];
    const params = {};
    for (const m of link.matchAll(/;\s*([a-z-]+)="?([^";]*)"?/gi)) params[m[1].toLowerCase()] = m[2];
    if (!url || params.rel !== 'ice-server') continue;
    const server = { urls: url };
    if (params.username) server.username = params.username;
    if (params.credential) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Asks the endpoint for its ICE servers (OPTIONS); none when it offers none or fails. */
async function discoverIceServers(url, token) {
  try {
    const response = await fetch(url, { method: 'OPTIONS', headers: authHeaders(token) });
    return iceServersFromLinks(response.headers.get('Link'));
  } catch {
    return [];
  }
}

async function newPeerConnection(url, token) {
  return new RTCPeerConnection({ iceServers: await discoverIceServers(url, token) });
}

async function negotiate(pc, url, token, extraHeaders = {}) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  const headers = { 'Content-Type': 'application/sdp', ...extraHeaders };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, { method: 'POST', headers, body: pc.localDescription.sdp });
  if (response.status !== 201) {
    // The status and Retry-After let the caller tell "full, watch over HLS" (503) and "too
    // many attempts, wait" (429) from a real failure.
    const error = new Error(await problemText(response));
    error.status = response.status;
    error.retryAfterMs = (Number(response.headers.get('Retry-After')) || 0) * 1000;
    throw error;
  }
  // Relative to where the answer came from: a 307 may have sent the offer to another node.
  const location = new URL(response.headers.get('Location'), response.url || url).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
  // Fresh TURN credentials for a later ICE restart.
  const servers = iceServersFromLinks(response.headers.get('Link'));
  if (servers.length) pc.setConfiguration({ ...pc.getConfiguration(), iceServers: servers });
  return { location, etag: response.headers.get('ETag') };
}

/** The ICE part of a local description as a trickle fragment: credentials, then the first
 *  media section's m= and mid lines with its candidates (max-bundle, RFC 9725 §4.4). */
function iceFragment(sdp) {
  const lines = sdp.split(/\r?\n/);
  const out = lines.filter((l) => l.startsWith('a=ice-ufrag:') || l.startsWith('a=ice-pwd:')).slice(0, 2);
  const first = lines.findIndex((l) => l.startsWith('m='));
  const next = lines.findIndex((l, i) => i > first && l.startsWith('m='));
  const section = lines.slice(first, next < 0 ? undefined : next);
  out.push(section[0], ...section.filter((l) => l.startsWith('a=mid:') || l.startsWith('a=candidate:')));
  return `${out.join('\r\n')}\r\na=end-of-candidates\r\n`;
}

/** Applies the server's restart fragment: its new credentials and candidates. */
async function applyRestartAnswer(pc, fragment) {
  const lines = fragment.split(/\r?\n/);
  const value = (key) => lines.find((l) => l.startsWith(key))?.slice(key.length);
  const ufrag = value('a=ice-ufrag:');
  const pwd = value('a=ice-pwd:');
  if (!ufrag || !pwd) throw new Error('ICE restart answer without credentials');
  const sdp = pc.currentRemoteDescription.sdp
    .split(/\r?\n/)
    .filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates')
    .map((l) => (l.startsWith('a=ice-ufrag:') ? `a=ice-ufrag:${ufrag}`
      : l.startsWith('a=ice-pwd:') ? `a=ice-pwd:${pwd}` : l))
    .join('\r\n');
  await pc.setRemoteDescription({ type: 'answer', sdp });
  const mid = value('a=mid:') ?? '0';
  for (const line of lines.filter((l) => l.startsWith('a=candidate:'))) {
    await pc.addIceCandidate({ candidate: line.slice(2), sdpMid: mid, usernameFragment: ufrag });
  }
}

function session(pc, negotiated, token) {
  let { etag } = negotiated;
  const { location } = negotiated;
  return {
    pc,
    location,
    /** Restarts ICE on this connection through PATCH; throws when the server refuses. */
    async restartIce() {
      pc.restartIce();
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      await iceGathered(pc);
      const response = await fetch(location, {
        method: 'PATCH',
        // `*`: whatever ICE generation the server has, this restart replaces it.
        headers: { 'Content-Type': SDPFRAG, 'If-Match': '*', ...authHeaders(token) },
        body: iceFragment(pc.localDescription.sdp),
      });
      if (response.status !== 200) throw new Error(await problemText(response));
      etag = response.headers.get('ETag') || etag;
      await applyRestartAnswer(pc, await response.text());
    },
    get etag() { return etag; },
    async stop() {
      try { await fetch(location, { method: 'DELETE', headers: authHeaders(token) }); } catch { /* server gone */ }
      pc.close();
    },
  };
}

/**
 * Keeps `live` connected: after DISCONNECTED_GRACE_MS disconnected, or on failure, restarts ICE
 * through PATCH; `onLost()` is called (once) when that fails, does not reconnect within
 * RESTART_TIMEOUT_MS, or the connection closes, for the caller's full reconnect. A DTLS
 * transport the server closed (its node drains and ends the session) is lost at once: no ICE
 * restart brings it back, and the browser would report the connection as up for seconds.
 */
export function keepConnected(live, onLost) {
  const { pc } = live;
  let timer = null;
  let done = false;
  // A restart under way: its own deadline decides, whatever states the connection passes.
  let restarting = false;
  const lost = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    clearInterval(silence);
    pc.removeEventListener('connectionstatechange', check);
    onLost();
  };
  const restart = async () => {
    restarting = true;
    try {
      await live.restartIce();
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (pc.connectionState !== 'connected') lost();
        else restarting = false;
      }, RESTART_TIMEOUT_MS);
    } catch {
      lost();
    }
  };
  // Bytes received on the connection's transports, and when they last grew.
  let received = -1;
  let grew = Date.now();
  const silence = setInterval(async () => {
    // A connection the page closed itself (stop, a switch to HLS) fires no event: stop here.
    if (done || pc.signalingState === 'closed') {
      clearInterval(silence);
      return;
    }
    let bytes = 0;
    try {
      (await pc.getStats()).forEach((s) => { if (s.type === 'transport') bytes += s.bytesReceived || 0; });
    } catch {
      return;
    }
    const now = Date.now();
    if (bytes !== received) {
      received = bytes;
      grew = now;
    } else if (!restarting && pc.connectionState === 'connected' && now - grew >= SILENCE_MS) {
      grew = now;
      clearTimeout(timer);
      restart();
    }
  }, SILENCE_CHECK_MS);
  function check() {
    const s = pc.connectionState;
    if (s === 'connected') restarting = false;
    if (s === 'closed') { lost(); return; }
    if (restarting) return;
    clearTimeout(timer);
    if (s === 'failed') restart();
    else if (s === 'disconnected') timer = setTimeout(restart, DISCONNECTED_GRACE_MS);
  }
  pc.addEventListener('connectionstatechange', check);
  const transports = new Set([...pc.getSenders(), ...pc.getReceivers()].map((x) => x.transport).filter(Boolean));
  for (const transport of transports) {
    transport.addEventListener('statechange', () => {
      if (transport.state === 'closed' || transport.state === 'failed') lost();
    });
  }
}

/** Publishes `stream` (a MediaStream) to a WHIP endpoint. */
export async function publish(url, streamKey, stream) {
  const pc = await newPeerConnection(url, streamKey);
  const senders = stream.getTracks().map((track) =>
    pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] }).sender);
  // The camera's size: the HLS ladder is planned from it, not from the first (small) frames
  // a browser sends while its bandwidth estimate ramps up.
  const settings = stream.getVideoTracks()[0]?.getSettings() || {};
  const declared = settings.width && settings.height
    ? { 'Vitrine-Capture-Size': `${settings.width}x${settings.height}` }
    : {};
  try {
    const location = await negotiate(pc, url, streamKey, declared);
    // Products are shown in detail: under a tight uplink, drop frames rather than pixels. This
    // also keeps the browser from starting at a reduced size while its bandwidth estimate ramps
    // up, which would cap the HLS ladder (planned from the first keyframe) below the camera.
    for (const sender of senders.filter((s) => s.track?.kind === 'video')) {
      const params = sender.getParameters();
      params.degradationPreference = 'maintain-resolution';
      await sender.setParameters(params).catch(() => {});
    }
    return session(pc, location, streamKey);
  } catch (e) {
    pc.close();
    throw e;
  }
}

/** Plays a WHEP endpoint; `onTrack` receives the remote MediaStream. */
export async function play(url, onTrack) {
  const pc = await newPeerConnection(url, null);
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const remote = new MediaStream();
  pc.addEventListener('track', (e) => { remote.addTrack(e.track); onTrack(remote); });
  try {
    return session(pc, await negotiate(pc, url, null), null);
  } catch (e) {
    pc.close();
    throw e;
  }
}

/** Public state of a stream: {state, viewers, title}. */
export async function streamStatus(id) {
  const response = await fetch(`/api/v1/public/streams/${encodeURIComponent(id)}`, { cache: 'no-store' });
  if (!response.ok) throw new Error(await problemText(response));
  return response.json();
}
