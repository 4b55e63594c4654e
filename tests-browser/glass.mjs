// Glass-to-glass latency in a real browser. The publisher's camera is replaced by a canvas that
// draws the wall-clock time into every frame as two rows of 32 black and white blocks (the
// time's low 32 bits in milliseconds, then the same bits inverted, to reject a misread); a
// viewer page draws each frame it presents into a canvas, reads the blocks back and records
// how old the time in it is. Publisher and viewer run in one browser, on one clock.

const BITS = 32;

// Replaces getUserMedia in every page of `context` with a 1280x720, 30 fps canvas carrying the
// clock (and a quiet tone for the audio track).
export async function installClockCamera(context) {
  await context.addInitScript(({ bits }) => {
    const fake = async (constraints = {}) => {
      const canvas = document.createElement('canvas');
      canvas.width = 1280;
      canvas.height = 720;
      const g = canvas.getContext('2d');
      const block = canvas.width / bits;
      const draw = () => {
        const t = Date.now() % 2 ** 32;
        g.fillStyle = '#808080';
        g.fillRect(0, 0, canvas.width, canvas.height);
        for (let i = 0; i < bits; i++) {
          const one = Math.floor(t / 2 ** (bits - 1 - i)) % 2 === 1;
          g.fillStyle = one ? '#fff' : '#000';
          g.fillRect(i * block, 0, block, 2 * block);
          g.fillStyle = one ? '#000' : '#fff';
          g.fillRect(i * block, 2 * block, block, 2 * block);
        }
      };
      draw();
      setInterval(draw, 1000 / 30);
      const stream = canvas.captureStream(30);
      if (constraints.audio) {
        const audio = new AudioContext();
        const tone = audio.createOscillator();
        const quiet = audio.createGain();
        quiet.gain.value = 0.05;
        const out = audio.createMediaStreamDestination();
        tone.connect(quiet).connect(out);
        tone.start();
        out.stream.getAudioTracks().forEach((t) => stream.addTrack(t));
      }
      return stream;
    };
    navigator.mediaDevices.getUserMedia = fake;
  }, { bits: BITS });
}

// Starts reading the clock in every frame `video` (a selector) presents on `page`; the ages
// (milliseconds) pile up in window.__ages, and window.__lastClock is the time (low 32 bits of
// the Unix milliseconds) in the frame on screen.
export async function readClock(page, selector = '#player') {
  await page.evaluate(({ bits, selector }) => {
    window.__ages = [];
    const video = document.querySelector(selector);
    const canvas = document.createElement('canvas');
    const g = canvas.getContext('2d', { willReadFrequently: true });
    const onFrame = () => {
      const now = Date.now();
      if (video.videoWidth > 0) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        g.drawImage(video, 0, 0);
        const block = canvas.width / bits;
        const lum = (x, y) => {
          const [r, gr, b] = g.getImageData(Math.floor(x), Math.floor(y), 1, 1).data;
          return (r + gr + b) / 3;
        };
        let t = 0;
        let ok = true;
        for (let i = 0; i < bits; i++) {
          const x = (i + 0.5) * block;
          const top = lum(x, block);
          const bottom = lum(x, 3 * block);
          if (Math.abs(top - bottom) < 64) ok = false;
          t = t * 2 + (top > bottom ? 1 : 0);
        }
        if (ok) {
          window.__lastClock = t;
          const age = (now % 2 ** 32) - t;
          if (age >= 0 && age < 60_000) window.__ages.push(age);
        }
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }, { bits: BITS, selector });
}

// The p50 and p95 of the ages read so far, and how many.
export async function ages(page) {
  const all = (await page.evaluate(() => window.__ages)).slice().sort((a, b) => a - b);
  const at = (q) => all[Math.min(all.length - 1, Math.floor(q * all.length))];
  return { samples: all.length, p50_ms: at(0.5), p95_ms: at(0.95) };
}
