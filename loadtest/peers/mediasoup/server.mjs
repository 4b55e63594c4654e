// Benchmark peer: mediasoup behind a minimal WHIP/WHEP front that speaks the part of Vitrine's
// surface the load generator uses (POST /api/v1/streams, POST /whip/{id}, POST /whep/{id},
// DELETE on the returned Location), so one load generator measures both servers the same way.
// One mediasoup worker (one core), UDP on 127.0.0.1, no authentication: a benchmark peer only.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import * as mediasoup from 'mediasoup';
import * as sdpTransform from 'sdp-transform';

const port = Number(process.env.PORT || 18090);
const worker = await mediasoup.createWorker({ logLevel: 'warn' });
const router = await worker.createRouter({
  mediaCodecs: [
    { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
    { kind: 'video', mimeType: 'video/VP8', clockRate: 90000 },
  ],
});
const streams = new Map(); // id -> { producers: Map(kind -> producer) }
const sessions = new Map(); // path -> transport
const id = (p) => `${p}_${randomBytes(12).toString('hex')}`;

async function transport() {
  return router.createWebRtcTransport({ listenIps: [{ ip: '127.0.0.1' }], enableUdp: true, enableTcp: false });
}

function fingerprintOf(offer, media) {
  const fp = media.fingerprint || offer.fingerprint;
  return { algorithm: fp.type, value: fp.hash };
}

// The answer's transport part, the same for every m-line (BUNDLE, ICE-lite, DTLS passive).
function transportLines(t, m) {
  return {
    iceUfrag: t.iceParameters.usernameFragment,
    icePwd: t.iceParameters.password,
    fingerprint: { type: 'sha-256', hash: t.dtlsParameters.fingerprints.find((f) => f.algorithm === 'sha-256').value },
    setup: 'passive',
    candidates: t.iceCandidates.map((c) => ({
      foundation: c.foundation, component: 1, transport: c.protocol, priority: c.priority,
      ip: c.ip, port: c.port, type: c.type,
    })),
    endOfCandidates: 'end-of-candidates',
    rtcpMux: 'rtcp-mux',
    mid: String(m.mid),
    connection: { version: 4, ip: '127.0.0.1' },
  };
}

function answerSdp(t, medias) {
  return sdpTransform.write({
    version: 0,
    origin: { username: '-', sessionId: Date.now(), sessionVersion: 1, netType: 'IN', ipVer: 4, address: '127.0.0.1' },
    name: '-',
    timing: { start: 0, stop: 0 },
    icelite: 'ice-lite',
    groups: [{ type: 'BUNDLE', mids: medias.filter((m) => m.port !== 0).map((m) => m.mid).join(' ') }],
    msidSemantic: { semantic: 'WMS', token: '*' },
    media: medias,
  });
}

// The answer says a=setup:passive, so the offerer is the DTLS client.
async function connect(t, offer) {
  await t.connect({ dtlsParameters: { role: 'client', fingerprints: [fingerprintOf(offer, offer.media[0])] } });
}

function codecOf(m, mime) {
  const rtp = m.rtp.find((r) => `${m.type}/${r.codec}`.toLowerCase() === mime.toLowerCase());
  if (!rtp) return null;
  const fmtp = (m.fmtp || []).find((f) => f.payload === rtp.payload);
  return {
    mimeType: mime, payloadType: rtp.payload, clockRate: rtp.rate,
    ...(rtp.encoding ? { channels: Number(rtp.encoding) } : {}),
    parameters: fmtp ? sdpTransform.parseParams(fmtp.config) : {},
    rtcpFeedback: (m.rtcpFb || []).filter((f) => f.payload === rtp.payload || f.payload === '*')
      .map((f) => ({ type: f.type, parameter: f.subtype || '' })),
  };
}

// A section this server does not take: port 0, echoing one offered codec so parsers stay happy.
function rejected(m) {
  const first = m.rtp.slice(0, 1);
  return {
    type: m.type, port: 0, protocol: m.protocol, payloads: String(first[0]?.payload ?? 0),
    mid: String(m.mid), direction: 'inactive', rtp: first, fmtp: [],
  };
}

const MIME = { audio: 'audio/opus', video: 'video/VP8' };

// An accepted m-line for `codec` (mediasoup's RtpCodecParameters shape).
function accepted(t, m, codec, direction, extra = {}) {
  return {
    type: m.type, port: 9, protocol: 'UDP/TLS/RTP/SAVPF', payloads: String(codec.payloadType),
    direction, ...transportLines(t, m),
    rtp: [{ payload: codec.payloadType, codec: codec.mimeType.split('/')[1], rate: codec.clockRate, ...(codec.channels ? { encoding: codec.channels } : {}) }],
    fmtp: [],
    rtcpFb: (codec.rtcpFeedback || []).map((f) => ({ payload: codec.payloadType, type: f.type, subtype: f.parameter || undefined })),
    ...extra,
  };
}

// Answers an offer on a new transport; `section` returns the answer's m-line for one offered
// m-line, or nothing to reject it.
async function answer(streamId, sdp, section) {
  const offer = sdpTransform.parse(sdp);
  const t = await transport();
  await connect(t, offer);
  const stream = streams.get(streamId);
  const medias = [];
  for (const m of offer.media) {
    const codec = codecOf(m, MIME[m.type] || '');
    medias.push((codec && (await section(t, stream, m, codec))) || rejected(m));
  }
  return { t, answer: answerSdp(t, medias) };
}

const whip = (streamId, sdp) => answer(streamId, sdp, async (t, stream, m, codec) => {
  const ssrc = (m.ssrcs || [])[0]?.id;
  if (!ssrc) return null;
  const producer = await t.produce({
    kind: m.type,
    rtpParameters: { mid: String(m.mid), codecs: [codec], encodings: [{ ssrc }], headerExtensions: [], rtcp: { cname: 'peer' } },
  });
  stream.producers.set(m.type, producer);
  return accepted(t, m, codec, 'recvonly');
});

const whep = (streamId, sdp) => answer(streamId, sdp, async (t, stream, m, codec) => {
  const producer = stream.producers.get(m.type);
  if (!producer) return null;
  const rtpCapabilities = {
    codecs: [{ kind: m.type, mimeType: codec.mimeType, preferredPayloadType: codec.payloadType, clockRate: codec.clockRate, ...(codec.channels ? { channels: codec.channels } : {}), parameters: codec.parameters, rtcpFeedback: codec.rtcpFeedback }],
    headerExtensions: [],
  };
  const consumer = await t.consume({ producerId: producer.id, rtpCapabilities, paused: false });
  const ssrc = consumer.rtpParameters.encodings[0].ssrc;
  return accepted(t, m, consumer.rtpParameters.codecs[0], 'sendonly', {
    ssrcs: [{ id: ssrc, attribute: 'cname', value: 'peer' }, { id: ssrc, attribute: 'msid', value: `peer ${m.type}` }],
  });
});

function body(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => resolve(data));
  });
}

http.createServer(async (req, res) => {
  try {
    const base = `http://127.0.0.1:${port}`;
    const parts = req.url.split('/').filter(Boolean);
    if (req.method === 'POST' && req.url === '/api/v1/streams') {
      const sid = id('st');
      streams.set(sid, { producers: new Map() });
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: sid, stream_key: id('sk'), whip_url: `${base}/whip/${sid}`, whep_url: `${base}/whep/${sid}` }));
    } else if (req.method === 'POST' && (parts[0] === 'whip' || parts[0] === 'whep') && parts.length === 2) {
      if (!streams.has(parts[1])) { res.writeHead(404); res.end(); return; }
      const { t, answer } = await (parts[0] === 'whip' ? whip : whep)(parts[1], await body(req));
      const location = `/${parts[0]}/${parts[1]}/${id('ss')}`;
      sessions.set(location, t);
      res.writeHead(201, { 'content-type': 'application/sdp', location });
      res.end(answer);
    } else if (req.method === 'DELETE' && sessions.has(req.url)) {
      sessions.get(req.url).close();
      sessions.delete(req.url);
      res.writeHead(200); res.end();
    } else if (req.url === '/stats') {
      const out = [];
      for (const [path, t] of sessions) {
        out.push({ path, ice: t.iceState, dtls: t.dtlsState, stats: await t.getStats() });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out));
    } else if (req.url === '/healthz') {
      res.writeHead(200); res.end('ok');
    } else {
      res.writeHead(404); res.end();
    }
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(e?.stack || e));
  }
}).listen(port, '127.0.0.1', () => {
  console.log(`mediasoup peer listening on ${port}, worker pid ${worker.pid}`);
});
process.on('SIGTERM', () => { worker.close(); process.exit(0); });
