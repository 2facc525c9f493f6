// Headless Chromium (Debian's, through puppeteer-core) against the admin listener's status
// page: node admin_status_page.js STEP URL USER PASSWORD ARTEFACT_DIR [ARG]
//   STEP live    sign in, wait (bounded) for the 3 PoPs alive and the site with its tunnels,
//                screenshot; print READY; then wait for a line "go" on stdin (the test kills
//                a PoP), and wait, without reloading, for ARG (a PoP name) to turn dead in the
//                DOM; screenshot; print DEAD and the time it took.
//   STEP refused sign in as a user who is not an admin: expect the 403 page, screenshot.
// Plain CommonJS for node 18. Every wait is bounded; any failure exits 1 with the reason.
'use strict';
const path = require('path');
const readline = require('readline');
const puppeteer = require(path.join(__dirname, '../../tools/node/node_modules/puppeteer-core'));

const [step, url, user, password, art, arg] = process.argv.slice(2);

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}

async function signIn(page) {
  const resp = await page.goto(url, {waitUntil: 'load', timeout: 15000});
  if (resp.status() !== 200) fail('GET / answered ' + resp.status() + ' before sign-in');
  await page.waitForSelector('input[name=username]', {timeout: 5000});
  await page.type('input[name=username]', user);
  await page.type('input[name=password]', password);
  const [nav] = await Promise.all([
    page.waitForNavigation({waitUntil: 'load', timeout: 15000}),
    page.click('button[type=submit]'),
  ]);
  return nav;
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    headless: 'new',
  });
  const timer = setTimeout(() => fail('the browser step took over 50 s'), 50000);
  try {
    const page = await browser.newPage();
    await page.setViewport({width: 1280, height: 1100});
    const violations = [];
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
    });
    const nav = await signIn(page);
    if (step === 'refused') {
      if (nav.status() !== 403) fail('a user who is not an admin got ' + nav.status());
      const text = await page.$eval('#forbidden', (e) => e.textContent);
      if (!text.includes(user)) fail('the 403 page does not name the user: ' + text);
      const cookies = await page.cookies();
      if (cookies.some((c) => c.name === 'popmesh_admin')) fail('a non-admin got a session cookie');
      await page.screenshot({path: path.join(art, 'admin_status_refused.png'), fullPage: true});
      console.log('REFUSED ' + nav.status() + ': ' + text.trim());
      return;
    }
    if (nav.status() !== 200) fail('the admin got ' + nav.status() + ' after sign-in');
    const ck = (await page.cookies()).find((c) => c.name === 'popmesh_admin');
    if (!ck) fail('no popmesh_admin cookie after sign-in');
    console.log('cookie httpOnly ' + ck.httpOnly + ' sameSite ' + ck.sameSite);
    // A marker that a reload would lose.
    await page.evaluate(() => { window.__noReload = 'still-here'; });
    await page.waitForFunction(() => {
      const alive = ['pop-1', 'pop-2', 'pop-3'].every((n) => {
        const r = document.querySelector('tr[data-member="' + n + '"]');
        return r && r.getAttribute('data-state') === 'alive';
      });
      const site = document.querySelector('tr[data-site="branch"]');
      return alive && site && /primary/.test(site.textContent) && /online/.test(site.textContent);
    }, {timeout: 20000, polling: 200}).catch(() => fail('the page did not show 3 alive PoPs and the site online with its tunnels within 20 s'));
    const site = await page.$eval('tr[data-site="branch"]', (e) => e.textContent);
    const regions = await page.$$eval('section.region h3', (l) => l.map((e) => e.textContent));
    console.log('site row: ' + site);
    console.log('regions: ' + regions.join(' | '));
    await page.screenshot({path: path.join(art, 'admin_status_live.png'), fullPage: true});
    console.log('READY');
    const rl = readline.createInterface({input: process.stdin});
    await new Promise((res) => rl.once('line', res));
    rl.close();
    const t0 = Date.now();
    await page.waitForFunction((n) => {
      const r = document.querySelector('tr[data-member="' + n + '"]');
      return r && r.getAttribute('data-state') === 'dead';
    }, {timeout: 40000, polling: 200}, arg).catch(() => fail(arg + ' did not turn dead on the page within 40 s'));
    const marker = await page.evaluate(() => window.__noReload);
    if (marker !== 'still-here') fail('the page was reloaded');
    await page.screenshot({path: path.join(art, 'admin_status_dead.png'), fullPage: true});
    if (violations.length) fail('CSP violations: ' + violations.join('; '));
    console.log('DEAD ' + arg + ' after ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s, no reload');
  } finally {
    clearTimeout(timer);
    await browser.close();
  }
}

main().then(() => process.exit(0), (e) => fail(e && e.stack ? e.stack : String(e)));
