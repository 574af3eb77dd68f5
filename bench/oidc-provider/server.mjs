// Peer for bench/token.sh: node-oidc-provider (pinned in package.json) with
// one confidential client allowed client_credentials and authenticating with
// client_secret_post, RFC 9068-style JWT access tokens signed ES256 (through
// resource indicators: tokens are for the default resource), and token
// introspection enabled (of opaque tokens only: see getResourceServerInfo). Plain HTTP on loopback, one Node process (as it is
// usually run behind a TLS-terminating proxy).
//
//   node server.mjs PORT CLIENT_ID CLIENT_SECRET
//
// Prints "listening PORT" once ready. Stops on SIGTERM/SIGINT.
import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

const [port, clientId, clientSecret] = process.argv.slice(2);
if (!port || !clientId || !clientSecret) {
  console.error('usage: node server.mjs PORT CLIENT_ID CLIENT_SECRET');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const resource = 'urn:bench:api';
const opaqueResource = 'urn:bench:opaque';
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', use: 'sig', alg: 'ES256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: 'ES256', // the only key is P-256
    scope: 'read write',
  }],
  jwks: { keys: [jwk] },
  scopes: ['read', 'write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      // oidc-provider refuses to introspect JWT access tokens
      // ("unsupported_token_type"), so tokens for the resource
      // urn:bench:opaque are opaque (stored in the memory adapter), for the
      // introspection run only.
      getResourceServerInfo: (ctx, indicator) => (indicator === opaqueResource ? {
        scope: 'read write',
        audience: opaqueResource,
        accessTokenTTL: 3600,
        accessTokenFormat: 'opaque',
      } : {
        scope: 'read write',
        audience: resource,
        accessTokenTTL: 3600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.proxy = false;

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${port}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
