// interop.mjs CRY_TOOL [N]: cross-checks lib/crypto (through tools/cry-tool)
// against @noble/post-quantum (pinned in package.json) in both directions,
// for N random seeds (default 25):
//
// ML-KEM-768 (FIPS 203)
//   keygen   ours(d, z) and noble.keygen(d || z) give the same ek and dk
//   encaps   ours(ek, m) and noble.encapsulate(ek, m) give the same ct, ss
//   o -> n   noble decapsulates our ct to our ss
//   n -> o   we decapsulate noble's ct (noble's own random m) to its ss
//   reject   a tampered ct gives the same implicit-rejection secret in both
// X-Wing (draft-connolly-cfrg-xwing-kem -06+, noble's ml_kem768_x25519)
//   keygen   same pk from the same 32-byte seed; noble's secretKey == seed
//   encaps   same ct, ss from (pk, eseed)
//   o -> n, n -> o, reject   as above
// once: key sizes of noble's X-Wing object, and both sides refuse an ek
// with a coefficient >= q.
//
// Prints each failure and finally "N passed, N failed"; exit 1 on failure.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { ml_kem768_x25519 as xwing } from '@noble/post-quantum/hybrid.js';

const [tool, nArg] = process.argv.slice(2);
if (!tool) {
  console.error('usage: node interop.mjs PATH_TO_cry-tool [N]');
  process.exit(2);
}
const N = Number(nArg ?? 25);

const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'));
const eq = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

let passed = 0;
let failed = 0;
function check(name, fn) {
  try {
    const ok = fn();
    if (ok === true) {
      passed++;
      return;
    }
    console.log(`FAIL ${name}${typeof ok === 'string' ? ': ' + ok : ''}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message.split('\n')[0]}`);
  }
  failed++;
}

// Runs cry-tool and parses its key=value lines.
function ours(...args) {
  const out = execFileSync(tool, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return Object.fromEntries(out.trim().split('\n').map((l) => l.split('=')));
}
// Exit status of cry-tool (for expected refusals).
function oursStatus(...args) {
  try {
    execFileSync(tool, args, { stdio: 'ignore' });
    return 0;
  } catch (e) {
    return e.status;
  }
}

check('xwing sizes (draft -06+: sk 32 = seed, pk 1216, ct 1120, ss 32)', () => {
  const l = xwing.lengths;
  return (l.secretKey === 32 && l.publicKey === 1216 && l.cipherText === 1120 && l.msg === 32) ||
    JSON.stringify(l);
});

for (let i = 0; i < N; i++) {
  // ---- ML-KEM-768 ----
  const d = randomBytes(32), z = randomBytes(32), m = randomBytes(32);
  const ok = ours('mlkem768', 'keygen', hex(d), hex(z));
  const nk = ml_kem768.keygen(new Uint8Array(Buffer.concat([d, z])));
  check(`[${i}] mlkem keygen ek`, () => ok.ek === hex(nk.publicKey));
  check(`[${i}] mlkem keygen dk`, () => ok.dk === hex(nk.secretKey));

  const oe = ours('mlkem768', 'encaps', ok.ek, hex(m));
  const ne = ml_kem768.encapsulate(nk.publicKey, new Uint8Array(m));
  check(`[${i}] mlkem encaps same ct, ss`, () =>
    oe.ct === hex(ne.cipherText) && oe.ss === hex(ne.sharedSecret));
  check(`[${i}] mlkem ours -> noble`, () =>
    hex(ml_kem768.decapsulate(unhex(oe.ct), nk.secretKey)) === oe.ss);

  const nr = ml_kem768.encapsulate(nk.publicKey); // noble's own randomness
  check(`[${i}] mlkem noble -> ours`, () =>
    ours('mlkem768', 'decaps', ok.dk, hex(nr.cipherText)).ss === hex(nr.sharedSecret));

  const bad = new Uint8Array(nr.cipherText);
  bad[(i * 41) % bad.length] ^= 1 << (i % 8);
  check(`[${i}] mlkem implicit rejection agrees`, () => {
    const a = ours('mlkem768', 'decaps', ok.dk, hex(bad)).ss;
    const b = hex(ml_kem768.decapsulate(bad, nk.secretKey));
    return (a === b && a !== hex(nr.sharedSecret)) || `ours ${a} noble ${b}`;
  });

  // ---- X-Wing ----
  const seed = randomBytes(32), eseed = randomBytes(64);
  const ox = ours('xwing', 'keygen', hex(seed));
  const nx = xwing.keygen(new Uint8Array(seed));
  check(`[${i}] xwing keygen pk`, () => ox.pk === hex(nx.publicKey));
  check(`[${i}] xwing sk is the seed`, () => ox.sk === hex(seed) && eq(nx.secretKey, seed));

  const oxe = ours('xwing', 'encaps', ox.pk, hex(eseed));
  const nxe = xwing.encapsulate(nx.publicKey, new Uint8Array(eseed));
  check(`[${i}] xwing encaps same ct, ss`, () =>
    oxe.ct === hex(nxe.cipherText) && oxe.ss === hex(nxe.sharedSecret));
  check(`[${i}] xwing ours -> noble`, () =>
    hex(xwing.decapsulate(unhex(oxe.ct), nx.secretKey)) === oxe.ss);

  const nxr = xwing.encapsulate(nx.publicKey);
  check(`[${i}] xwing noble -> ours`, () =>
    ours('xwing', 'decaps', ox.sk, hex(nxr.cipherText)).ss === hex(nxr.sharedSecret));

  const xbad = new Uint8Array(nxr.cipherText);
  xbad[(i * 43) % 1088] ^= 1 << (i % 8); // ML-KEM part: implicit rejection
  check(`[${i}] xwing tampered ct agrees`, () => {
    const a = ours('xwing', 'decaps', ox.sk, hex(xbad)).ss;
    const b = hex(xwing.decapsulate(xbad, nx.secretKey));
    return (a === b && a !== hex(nxr.sharedSecret)) || `ours ${a} noble ${b}`;
  });
}

// An ek whose first coefficient is 4095 >= q: FIPS 203 §7.2 says refuse.
check('both refuse an ek with a coefficient >= q', () => {
  const ek = ml_kem768.keygen().publicKey;
  ek[0] = 0xff;
  ek[1] |= 0x0f;
  let nobleRefused = false;
  try {
    ml_kem768.encapsulate(ek);
  } catch {
    nobleRefused = true;
  }
  const status = oursStatus('mlkem768', 'encaps', hex(ek), '00'.repeat(32));
  return (nobleRefused && status === 1) || `noble refused ${nobleRefused}, cry-tool exit ${status}`;
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
