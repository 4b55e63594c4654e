// Room events in step with the picture. An HLS viewer sees the seller seconds late; shown at
// once, a chat line, a pin or a "sold out" would run ahead of what the viewer sees the seller
// say and do. Events are held, in their order, until the picture reaches the moment they
// happened (their arrival, less the viewer's delay behind real time); a WebRTC viewer (no
// delay) gets them at once. Orders still go to live stock: only what is shown waits.

// How often held events are looked at.
const TICK_MS = 50;
// The longest an event is held: a paused or stalled player reads as far behind real time, and
// the room must not fall silent (nor its held events pile up) for that long.
const MAX_HOLD_MS = 10_000;

/**
 * Returns `push(event)`: `dispatch(event)` runs once the picture, `delayMs()` behind real
 * time, shows the moment the event arrived, and at the latest `maxHoldMs` after it arrived.
 */
export function inSync(delayMs, dispatch, { maxHoldMs = MAX_HOLD_MS } = {}) {
  const held = [];
  let timer = null;
  const release = () => {
    const now = Date.now() - Math.min(maxHoldMs, Math.max(0, delayMs() || 0));
    while (held.length && held[0].at <= now) dispatch(held.shift().event);
    if (!held.length) { clearInterval(timer); timer = null; }
  };
  return (event) => {
    held.push({ at: Date.now(), event });
    release();
    if (held.length && !timer) timer = setInterval(release, TICK_MS);
  };
}
