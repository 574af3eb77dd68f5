// Ops/s of @noble/post-quantum for the same operations `cry-tool bench`
// measures (bench/kem.sh runs both). Lives here to share node_modules.
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { ml_kem768_x25519 as xwing } from '@noble/post-quantum/hybrid.js';
import { randomBytes } from 'node:crypto';

const secs = Number(process.argv[2] || 2);

function bench(name, fn) {
    for (let i = 0; i < 20; i++) fn(); // warm up the JIT
    let n = 0;
    const end = performance.now() + secs * 1000;
    const t0 = performance.now();
    while (performance.now() < end) {
        fn();
        n++;
    }
    const dt = (performance.now() - t0) / 1000;
    console.log(`${name.padEnd(18)} ${Math.round(n / dt).toString().padStart(8)} ops/s`);
}

const seed = randomBytes(64);
const k = ml_kem768.keygen(seed);
const e = ml_kem768.encapsulate(k.publicKey, randomBytes(32));
bench('mlkem768 keygen', () => ml_kem768.keygen(seed));
bench('mlkem768 encaps', () => ml_kem768.encapsulate(k.publicKey, randomBytes(32)));
bench('mlkem768 decaps', () => ml_kem768.decapsulate(e.cipherText, k.secretKey));

const xs = randomBytes(32);
const xk = xwing.keygen(xs);
const xe = xwing.encapsulate(xk.publicKey);
bench('xwing keygen', () => xwing.keygen(xs));
bench('xwing encaps', () => xwing.encapsulate(xk.publicKey));
bench('xwing decaps', () => xwing.decapsulate(xe.cipherText, xk.secretKey));
