// Publishes a live stream the way a seller does: the studio page (its URL carries the stream
// key) in headless Chromium with the fake camera and microphone. Prints "live" once the studio
// says so and keeps publishing until it is killed.
import { launchBrowser } from '../tests-browser/harness.mjs';

const studioUrl = process.argv[2];
if (!studioUrl) {
  console.error('usage: node loadtest/publish.mjs STUDIO_URL');
  process.exit(2);
}
const browser = await launchBrowser();
const page = await browser.newPage();
await page.goto(studioUrl);
await page.waitForFunction(() => !document.getElementById('golive').disabled, null, { timeout: 30_000 });
await page.locator('#golive').click();
await page.waitForFunction(() => document.getElementById('state').textContent === 'live', null, { timeout: 30_000 });
console.log('live');
const stop = async () => { await browser.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
