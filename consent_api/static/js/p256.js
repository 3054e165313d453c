// P-256 (secp256r1) arithmetic on public values only: the two public keys an ECDSA signature may come from.
// A browser that holds no hint asks the passkey for any assertion and finds its account from the key that
// signed it (docs/architecture.md, "Passkey accounts"); WebCrypto verifies but does not recover. Nothing
// secret goes through here (a signature, its digest and a candidate key), so plain BigInt arithmetic, not
// constant-time code, is what it needs; a wrong answer could only find no account, never sign anything.

export const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
export const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const G = {
  x: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  y: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
};

const mod = (a, m) => { const r = a % m; return r < 0n ? r + m : r; };

function pow(base, exp, m) {
  let result = 1n;
  let b = mod(base, m);
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
  }
  return result;
}

const inv = (a, m) => pow(a, m - 2n, m); // m is prime (p or n)

// Jacobian coordinates (X, Y, Z) ~ (X/Z², Y/Z³); null is the point at infinity. a = -3.
function double(pt) {
  if (!pt || pt.y === 0n) return null;
  const { x, y, z } = pt;
  const zz = (z * z) % P;
  const m = (3n * mod(x - zz, P) * ((x + zz) % P)) % P;
  const yy = (y * y) % P;
  const s = (4n * x * yy) % P;
  const nx = mod(m * m - 2n * s, P);
  const ny = mod(m * (s - nx) - 8n * yy * yy, P);
  return { x: nx, y: ny, z: (2n * y * z) % P };
}

function add(p1, p2) {
  if (!p1) return p2;
  if (!p2) return p1;
  const z1z1 = (p1.z * p1.z) % P;
  const z2z2 = (p2.z * p2.z) % P;
  const u1 = (p1.x * z2z2) % P;
  const u2 = (p2.x * z1z1) % P;
  const s1 = (p1.y * p2.z * z2z2) % P;
  const s2 = (p2.y * p1.z * z1z1) % P;
  if (u1 === u2) return s1 === s2 ? double(p1) : null;
  const h = mod(u2 - u1, P);
  const r = mod(s2 - s1, P);
  const hh = (h * h) % P;
  const hhh = (h * hh) % P;
  const v = (u1 * hh) % P;
  const x = mod(r * r - hhh - 2n * v, P);
  const y = mod(r * (v - x) - s1 * hhh, P);
  return { x, y, z: (p1.z * p2.z * h) % P };
}

function multiply(pt, k) {
  let result = null;
  let addend = pt;
  for (let e = mod(k, N); e > 0n; e >>= 1n) {
    if (e & 1n) result = add(result, addend);
    addend = double(addend);
  }
  return result;
}

function affine(pt) {
  if (!pt) return null;
  const zi = inv(pt.z, P);
  const zi2 = (zi * zi) % P;
  return { x: (pt.x * zi2) % P, y: (pt.y * zi2 * zi) % P };
}

const jacobian = ({ x, y }) => ({ x, y, z: 1n });

/** Whether (x, y) is a point of the curve (y² = x³ - 3x + b); the point at infinity is not. */
export function onCurve({ x, y }) {
  if (x <= 0n || x >= P || y < 0n || y >= P) return false;
  return mod(y * y - (x * x * x - 3n * x + B), P) === 0n;
}

/**
 * The public keys {x, y} (BigInt) under which (r, s) is a valid ECDSA signature of `digest` (the 32-byte
 * SHA-256 of what was signed, as a BigInt): Q = r⁻¹·(s·R − e·G) for each of the two points R with x = r.
 * (x = r + n is possible only for r < p − n, about one signature in 2¹²⁸, and is not tried.)
 */
export function recoverPublicKeys(digest, r, s) {
  if (r <= 0n || r >= N || s <= 0n || s >= N) return [];
  const e = mod(digest, N);
  const rhs = mod(r * r * r - 3n * r + B, P);
  const root = pow(rhs, (P + 1n) / 4n, P); // p ≡ 3 (mod 4)
  if ((root * root) % P !== rhs) return [];
  const rInv = inv(r, N);
  const u1 = mod(-e * rInv, N);
  const u2 = (s * rInv) % N;
  const keys = [];
  for (const y of [root, P - root]) {
    const q = affine(add(multiply(jacobian(G), u1), multiply(jacobian({ x: r, y }), u2)));
    if (q && onCurve(q)) keys.push(q);
  }
  return keys;
}
