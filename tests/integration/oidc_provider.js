// A real OpenID provider for oidc_login.sh: oidc-provider (the certified Node implementation,
// tools/node/node_modules), plain CommonJS for node 18 and later (oidc-provider 8 is an ES
// module: loaded with import()).
//
//   node oidc_provider.js PORT CLIENT_SECRET REDIRECT_URI[,REDIRECT_URI...] [RS256|ES256]
//
// Issuer http://127.0.0.1:PORT, one confidential client "popmesh" (client_secret_basic, code
// flow, PKCE required) whose ID tokens carry email, name and a "groups" claim; the login page
// is oidc-provider's development one (any login, any password) and the account is the login:
// alice@example.com (groups staff, admins) and mallory@evil.test (group staff). Prints
// "listening" once it accepts.
'use strict';
const crypto = require('crypto');
const path = require('path');

const [port, secret, uris, alg = 'RS256'] = process.argv.slice(2);
const ACCOUNTS = {
  alice: { email: 'alice@example.com', name: 'Alice Example', groups: ['staff', 'admins'] },
  mallory: { email: 'mallory@evil.test', name: 'Mallory', groups: ['staff'] },
};

(async () => {
  const modules = path.join(__dirname, '..', '..', 'tools', 'node', 'node_modules');
  const { default: Provider } = await import(path.join(modules, 'oidc-provider', 'lib', 'index.js'));
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const jwk = (k, kid, a) => ({ ...k.export({ format: 'jwk' }), kid, alg: a, use: 'sig' });
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [{
      client_id: 'popmesh',
      client_secret: secret,
      redirect_uris: uris.split(','),
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: alg,
    }],
    jwks: { keys: [jwk(rsa, 'rsa-1', 'RS256'), jwk(ec, 'ec-1', 'ES256')] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false, // the scopes' claims in the ID token: popmesh reads only it
    pkce: { required: () => true },
    cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
    features: { devInteractions: { enabled: true } },
    findAccount: async (ctx, id) => (ACCOUNTS[id] ? {
      accountId: id,
      claims: async () => ({ sub: id, email_verified: true, ...ACCOUNTS[id] }),
    } : undefined),
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message, err.error_description || ''));
  provider.listen(Number(port), '127.0.0.1', () => console.log('listening'));
})().catch((e) => { console.error(e); process.exit(1); });
