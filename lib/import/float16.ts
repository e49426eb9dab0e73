/**
 * Half-precision conversions (float16 and bfloat16 bits <-> numbers), pure so that the browser page
 * (lib/web/) can decode float16 weights with the same code the safetensors reader uses.
 */

/** A float16's bits as a number. */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

const scratch = new DataView(new ArrayBuffer(4));

/** A number as float16 bits, rounded to nearest, ties to even (as numpy and torch round). */
export function floatToHalf(value: number): number {
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 | (mantissa >>> 13) : 0); // inf, nan
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00; // overflow to inf
  if (halfExponent <= 0) {
    // subnormal half: units of 2^-24
    if (exponent === 0) return sign;
    const full = mantissa | 0x800000;
    const shift = 126 - exponent;
    if (shift >= 25) return sign;
    return sign | roundShift(full, shift);
  }
  // normal: drop 13 mantissa bits; a carry out of the mantissa correctly bumps the exponent (to inf at most)
  return (sign | (halfExponent << 10) | (mantissa >>> 13)) + roundingCarry(mantissa, 13, (mantissa >>> 13) & 1);
}

/** `value >> shift`, rounded to nearest, ties to even. */
function roundShift(value: number, shift: number): number {
  const kept = value >>> shift;
  return kept + roundingCarry(value, shift, kept & 1);
}

/** 1 when dropping the low `shift` bits of `value` rounds up (ties go to an even kept part). */
function roundingCarry(value: number, shift: number, keptLowBit: number): number {
  const dropped = value & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return dropped > half || (dropped === half && keptLowBit === 1) ? 1 : 0;
}

/** A float32 as bfloat16 bits, rounded to nearest, ties to even. */
export function floatToBfloat16(value: number): number {
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff)) return (bits >>> 16) | 0x40; // nan stays nan
  return ((bits >>> 16) + roundingCarry(bits & 0xffff, 16, (bits >>> 16) & 1)) & 0xffff;
}
