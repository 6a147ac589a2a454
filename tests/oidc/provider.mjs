// A real OpenID provider (panva/oidc-provider) on 127.0.0.1 for the st.login tests.
//
//   node tests/oidc/provider.mjs --port P --client-id ID --client-secret S --redirect-uri URI
//   (or OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI)
//
// Issuer http://127.0.0.1:P, one confidential client (authorization code + PKCE, client_secret_basic:
// Authlib's default). Sign-in uses oidc-provider's built-in development interactions: a form with
// "login" and "password" where any login and any non-empty password work; the login becomes the
// account. Claims: sub, email (the login if it contains '@', else <login>@marketplace.example),
// email_verified: true, name. Consent is granted without a page (first-party client), so the
// browser sees exactly one form. Prints "oidc-provider listening on http://127.0.0.1:P" when ready.
//
// Two adjustments Streamlit needs (see tests/oidc_provider.py for the why):
// * Streamlit asks for prompt=select_account, which the default policy rejects ("unsupported prompt
//   value requested"); here it is accepted and means "show the login form" once per authorization.
// * Authlib takes st.user from the ID token only (it never calls /me), so the ID token carries the
//   scope claims: conformIdTokenClaims is off.

import { generateKeyPairSync } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider, { interactionPolicy } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OIDC_PORT },
    'client-id': { type: 'string', default: process.env.OIDC_CLIENT_ID },
    'client-secret': { type: 'string', default: process.env.OIDC_CLIENT_SECRET },
    'redirect-uri': { type: 'string', multiple: true, default: process.env.OIDC_REDIRECT_URI?.split(',') },
  },
});
for (const name of ['port', 'client-id', 'client-secret', 'redirect-uri']) {
  if (!args[name] || args[name].length === 0) {
    console.error(`provider.mjs: --${name} is required`);
    process.exit(2);
  }
}

const HOST = '127.0.0.1';
const port = Number(args.port);
const issuer = `http://${HOST}:${port}`;
const SCOPES = ['openid', 'email', 'profile'];

function claimsFor(login) {
  const email = login.includes('@') ? login : `${login}@marketplace.example`;
  const local = email.split('@')[0];
  return {
    sub: login,
    email,
    email_verified: true,
    name: local.charAt(0).toUpperCase() + local.slice(1),
  };
}

// select_account: requestable (so prompt=select_account is valid) but never an interaction of its
// own; the login prompt asks for the form while select_account is requested and no login has been
// submitted in this authorization (ctx.oidc.result is the interaction's result on resume).
const { Prompt, Check, base } = interactionPolicy;
const policy = base();
policy.get('login').checks.add(new Check(
  'select_account_requested',
  'the client asked the End-User to choose an account',
  (ctx) => (ctx.oidc.prompts.has('select_account') && !ctx.oidc.result?.login
    ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT),
));
const selectAccount = new Prompt({ name: 'select_account', requestable: true });
selectAccount.checks.clear();
policy.add(selectAccount);

// A fresh signing key per run instead of the library's published development keystore.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: args['client-id'],
    client_secret: args['client-secret'],
    redirect_uris: args['redirect-uri'],
    // st.logout sends the redirect_uri (/oauth2callback) as post_logout_redirect_uri.
    post_logout_redirect_uris: args['redirect-uri'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signingKey] },
  scopes: SCOPES,
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  conformIdTokenClaims: false,
  interactions: { policy },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    return { accountId: id, async claims() { return claimsFor(id); } };
  },
  // First-party client: grant the requested scopes without a consent page.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      return ctx.oidc.provider.Grant.find(grantId);
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPES.join(' '));
    await grant.save();
    return grant;
  },
  // Test tokens: short is fine, nothing refreshes.
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
});

// Print the library's own errors (bad client auth, redirect_uri mismatch): the test shows this output.
for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error']) {
  provider.on(event, (_ctx, err) => console.error(`${event}: ${err.name}: ${err.message} ${err.error_description ?? ''}`));
}

const server = provider.listen(port, HOST, () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
server.on('error', (err) => {
  console.error(`provider.mjs: ${err.message}`);
  process.exit(1);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
