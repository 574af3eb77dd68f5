// interop.mjs ISSUER_URL [CA_FILE]: ahdapa's OAuth 2.0 endpoints against real
// third-party clients: openid-client 6 (RFC 8414 discovery, client_credentials
// with client_secret_post and client_secret_basic, RFC 7662 introspection,
// RFC 7009 revocation) and jose 6 (RFC 9068 JWT access token checked with a
// remote JWKS). Versions are pinned in package.json / package-lock.json.
//
// The two confidential clients come from the environment (not argv, which
// other users can read): INTEROP_POST_CLIENT_ID / INTEROP_POST_CLIENT_SECRET
// (registered with client_secret_post) and INTEROP_BASIC_CLIENT_ID /
// INTEROP_BASIC_CLIENT_SECRET (client_secret_basic); both with scope
// "read write".
//
// TLS: the CA file is handed to Node through NODE_EXTRA_CA_CERTS, which Node
// reads only at start; when CA_FILE is given and the variable is not already
// set to it, the script runs itself again with it set.
//
// Prints each check and finally exactly "N passed, N failed"; exit status 1
// on any failure.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import process from 'node:process';

const [issuerArg, caArg] = process.argv.slice(2);
const caFile = caArg || process.env.AHDAPA_CA_FILE;
if (caFile && process.env.NODE_EXTRA_CA_CERTS !== caFile) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile },
  });
  process.exit(r.status ?? 1);
}

const client = await import('openid-client');
const jose = await import('jose');

let passed = 0;
let failed = 0;

function describe(e) {
  if (e === undefined) return 'no error';
  const parts = [`${e.name}: ${e.message}`];
  if (e.code) parts.push(`code=${e.code}`);
  if (e.error) parts.push(`error=${e.error}`);
  if (e.error_description) parts.push(`error_description=${e.error_description}`);
  if (e.status) parts.push(`status=${e.status}`);
  if (e.cause && e.cause !== e) {
    const c = e.cause;
    parts.push(`cause=${c instanceof Error ? `${c.name}: ${c.message}${c.code ? ` (${c.code})` : ''}` : JSON.stringify(c)}`);
  }
  return parts.join('; ');
}

async function check(name, fn) {
  try {
    const detail = await fn();
    passed++;
    console.log(`PASS ${name}${detail ? ` (${detail})` : ''}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${describe(e)}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

if (!issuerArg) {
  console.log('usage: interop.mjs ISSUER_URL [CA_FILE] (clients in INTEROP_* env)');
  failed++;
  finish();
}

const issuer = issuerArg.replace(/\/+$/, '');
const server = new URL(issuer);
const post = { id: env('INTEROP_POST_CLIENT_ID'), secret: env('INTEROP_POST_CLIENT_SECRET') };
const basic = { id: env('INTEROP_BASIC_CLIENT_ID'), secret: env('INTEROP_BASIC_CLIENT_SECRET') };

// ---- discovery ----
let postCfg;
let basicCfg;
let meta;

await check('discovery (RFC 8414 /.well-known/oauth-authorization-server)', async () => {
  postCfg = await client.discovery(server, post.id, undefined, client.ClientSecretPost(post.secret),
    { algorithm: 'oauth2' });
  meta = postCfg.serverMetadata();
  assert(meta.issuer === issuer, `issuer ${meta.issuer} != ${issuer}`);
  assert(meta.token_endpoint === `${issuer}/token`, `token_endpoint ${meta.token_endpoint}`);
  assert(meta.introspection_endpoint === `${issuer}/introspect`,
    `introspection_endpoint ${meta.introspection_endpoint}`);
  assert(meta.jwks_uri === `${issuer}/jwks`, `jwks_uri ${meta.jwks_uri}`);
  assert((meta.grant_types_supported || []).includes('client_credentials'),
    `grant_types_supported ${JSON.stringify(meta.grant_types_supported)}`);
  return `issuer ${meta.issuer}`;
});

await check('discovery (OpenID /.well-known/openid-configuration)', async () => {
  const c = await client.discovery(server, basic.id, undefined, client.ClientSecretBasic(basic.secret));
  const m = c.serverMetadata();
  assert(m.issuer === issuer, `issuer ${m.issuer} != ${issuer}`);
  assert(m.token_endpoint === `${issuer}/token`, `token_endpoint ${m.token_endpoint}`);
});

await check('client configuration for client_secret_basic', async () => {
  basicCfg = await client.discovery(server, basic.id, undefined, client.ClientSecretBasic(basic.secret),
    { algorithm: 'oauth2' });
});

if (!postCfg || !basicCfg) finish(); // nothing further can work

// ---- client_credentials ----
const tokens = {};

async function grant(label, cfg, c) {
  await check(`client_credentials with ${label}`, async () => {
    const t = await client.clientCredentialsGrant(cfg, { scope: 'read' });
    assert(typeof t.access_token === 'string' && t.access_token.split('.').length === 3,
      'access_token is not a compact JWS');
    assert(t.token_type.toLowerCase() === 'bearer', `token_type ${t.token_type}`);
    assert(t.scope === 'read', `scope ${t.scope}`);
    const ttl = t.expiresIn();
    assert(typeof ttl === 'number' && ttl > 0, `expires_in ${t.expires_in}`);
    tokens[c.id] = t.access_token;
    return `expires_in ${ttl}`;
  });
}
await grant('client_secret_post', postCfg, post);
await grant('client_secret_basic', basicCfg, basic);

await check('client_credentials with a wrong secret is refused (invalid_client)', async () => {
  const bad = new client.Configuration(meta, post.id, undefined, client.ClientSecretPost('wrong-secret'));
  let err;
  try {
    await client.clientCredentialsGrant(bad);
  } catch (e) {
    err = e;
  }
  assert(err, 'the grant succeeded');
  assert(err.error === 'invalid_client', `expected error invalid_client, got ${describe(err)}`);
  assert(err.status === 401, `expected HTTP 401, got ${err.status}`);
});

// ---- introspection ----
async function introspect(label, cfg, token, owner) {
  await check(`introspection (${label})`, async () => {
    const r = await client.tokenIntrospection(cfg, token);
    assert(r.active === true, `active ${r.active}: ${JSON.stringify(r)}`);
    assert(r.client_id === owner.id, `client_id ${r.client_id}`);
    assert(r.iss === issuer, `iss ${r.iss}`);
    assert(r.scope === 'read', `scope ${r.scope}`);
    assert(typeof r.exp === 'number' && r.exp > Date.now() / 1000, `exp ${r.exp}`);
  });
}
if (tokens[post.id]) {
  await introspect('basic caller, post token', basicCfg, tokens[post.id], post);
  await introspect('post caller, own token', postCfg, tokens[post.id], post);
}
if (tokens[basic.id]) await introspect('post caller, basic token', postCfg, tokens[basic.id], basic);

await check('introspection of a malformed token is active:false', async () => {
  const r = await client.tokenIntrospection(postCfg, 'not.a.token');
  assert(r.active === false, JSON.stringify(r));
});

// ---- jose: the RFC 9068 JWT against the remote JWKS ----
const JWKS = jose.createRemoteJWKSet(new URL(meta.jwks_uri));

async function verify(label, token, owner) {
  await check(`jose jwtVerify (${label})`, async () => {
    const { payload, protectedHeader } = await jose.jwtVerify(token, JWKS, {
      issuer,
      typ: 'at+jwt',
      algorithms: ['ES256'],
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id'],
    });
    assert(protectedHeader.kid, 'no kid in the header');
    assert(payload.sub === owner.id && payload.client_id === owner.id,
      `sub ${payload.sub} client_id ${payload.client_id}`);
    assert(payload.scope === 'read', `scope ${payload.scope}`);
    return `kid ${protectedHeader.kid}`;
  });
}
if (tokens[post.id]) await verify('client_secret_post token', tokens[post.id], post);
if (tokens[basic.id]) await verify('client_secret_basic token', tokens[basic.id], basic);

if (tokens[post.id]) {
  const tok = tokens[post.id];
  await check('jose rejects a tampered payload', async () => {
    const [h, p, s] = tok.split('.');
    const claims = JSON.parse(new TextDecoder().decode(jose.base64url.decode(p)));
    claims.scope = 'admin';
    const forged = `${h}.${jose.base64url.encode(JSON.stringify(claims))}.${s}`;
    let err;
    try {
      await jose.jwtVerify(forged, JWKS, { issuer, typ: 'at+jwt', algorithms: ['ES256'] });
    } catch (e) {
      err = e;
    }
    assert(err && err.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', `got ${describe(err)}`);
  });
  await check('jose rejects a wrong issuer', async () => {
    let err;
    try {
      await jose.jwtVerify(tok, JWKS, { issuer: `${issuer}/other`, typ: 'at+jwt' });
    } catch (e) {
      err = e;
    }
    assert(err && err.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED', `got ${describe(err)}`);
  });

  // ---- revocation (RFC 7009), then introspection says inactive ----
  await check('revocation by the owner, then introspection is active:false', async () => {
    await client.tokenRevocation(postCfg, tok);
    const r = await client.tokenIntrospection(basicCfg, tok);
    assert(r.active === false, JSON.stringify(r));
  });
}

finish();
