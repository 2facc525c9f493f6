// Headless Chromium (puppeteer-core, Debian's /usr/bin/chromium) through an OpenID Connect
// sign-in for oidc_login.sh, plain CommonJS for node 18 and later.
//
//   node oidc_browser.js START_URL IDP LOGIN PASSWORD SHOT_PREFIX [FROM_PORT TO_PORT]
//
// Opens START_URL (an app behind `--auth login`), expects popmesh's login page with "Sign in
// with IDP", follows it to the provider, fills its login and consent pages, and prints the
// final URL and the final page's text. With FROM_PORT and TO_PORT the provider's redirect to
// the callback at :FROM_PORT is sent on to :TO_PORT instead (the browser "moves" to another
// PoP between the start and the callback, as DNS steering may make it). Screenshots:
// SHOT_PREFIX-1-login.png, -2-provider.png, -3-consent.png, -4-final.png. app.test resolves to
// 127.0.0.1 inside the browser.
'use strict';
const path = require('path');

const [start, idp, login, password, shots, fromPort, toPort] = process.argv.slice(2);
let callbackAt = 0; // ms: when the provider sent the browser to the callback
const puppeteer = require(path.join(__dirname, '..', '..', 'tools', 'node', 'node_modules', 'puppeteer-core'));

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--host-resolver-rules=MAP app.test 127.0.0.1'],
  });
  const timer = setTimeout(() => { console.error('timed out after 40 s'); process.exit(2); }, 40000);
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(15000);
    if (fromPort && toPort) {
      await page.setRequestInterception(true);
      page.on('request', async (req) => {
        const u = req.url();
        const from = `:${fromPort}/.popmesh/oidc/callback`;
        if (req.isNavigationRequest() && u.includes(from)) {
          const to = u.replace(from, `:${toPort}/.popmesh/oidc/callback`);
          console.log(`callback moved: ${u.split('?')[0]} -> ${to.split('?')[0]}`);
          // what a replay needs: the callback URL and the state cookie that went with it
          const ck = (await page.cookies(to)).find((c) => c.name === 'popmesh_oidc');
          console.log(`replay: ${to} ${ck ? ck.value : '-'}`);
          callbackAt = Date.now();
          req.respond({ status: 302, headers: { location: to } });
        } else {
          req.continue();
        }
      });
    }
    await page.goto(start, { waitUntil: 'load' });
    console.log(`login page: ${page.url().split('?')[0]}`);
    await page.screenshot({ path: `${shots}-1-login.png` });
    const link = await page.$('a.idp');
    if (!link) throw new Error('no "Sign in with" link on the login page');
    console.log(`link: ${(await page.evaluate((a) => a.textContent, link)).trim()}`);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), link.click()]);
    console.log(`provider: ${page.url().split('?')[0]}`);
    await page.waitForSelector('input[name=login]');
    await page.type('input[name=login]', login);
    await page.type('input[name=password]', password);
    await page.screenshot({ path: `${shots}-2-provider.png` });
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type=submit]')]);
    // the consent page, when the provider shows one
    if (await page.$('input[name=prompt][value=consent]')) {
      await page.screenshot({ path: `${shots}-3-consent.png` });
      await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type=submit]')]);
    }
    // redirects: provider -> callback (moved) -> the app
    for (let i = 0; i < 20 && !page.url().includes('app.test'); i++)
      await new Promise((r) => setTimeout(r, 250));
    if (callbackAt) console.log(`callback to app: ${Date.now() - callbackAt} ms`);
    await page.screenshot({ path: `${shots}-4-final.png` });
    console.log(`final: ${page.url()}`);
    console.log(`text: ${(await page.evaluate(() => document.body.innerText)).replace(/\s+/g, ' ')}`);
  } finally {
    clearTimeout(timer);
    await browser.close();
  }
})().catch((e) => { console.error(`error: ${e.message}`); process.exit(1); });
