// WHIP and WHEP clients (RFC 9725 and the WHEP draft) for the studio and watch pages.
// Each call returns a session with the peer connection and a stop() that DELETEs the resource.

const GATHER_TIMEOUT_MS = 2000;

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

async function negotiate(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  const headers = { 'Content-Type': 'application/sdp' };
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
  const location = new URL(response.headers.get('Location'), url).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
  return location;
}

function session(pc, location, token) {
  return {
    pc,
    location,
    async stop() {
      const headers = token ? { Authorization: `Bearer ${token}` } : {};
      try { await fetch(location, { method: 'DELETE', headers }); } catch { /* server gone */ }
      pc.close();
    },
  };
}

/** Publishes `stream` (a MediaStream) to a WHIP endpoint. */
export async function publish(url, streamKey, stream) {
  const pc = new RTCPeerConnection();
  const senders = stream.getTracks().map((track) =>
    pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] }).sender);
  try {
    const location = await negotiate(pc, url, streamKey);
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
  const pc = new RTCPeerConnection();
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
