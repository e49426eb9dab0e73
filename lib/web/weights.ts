/**
 * The web page's weight file: every tensor's values one after another, little-endian float32 or float16, and a
 * table (name, shape, byte offset) that goes into the page's model.json. Pure, so the page and Node share it.
 */
import { floatToHalf, halfToFloat } from '../import/float16';

/** How the weights are stored: float32 (exact) or float16 (half the bytes; its pixel error is measured at export). */
export const WEB_WEIGHT_DTYPES = ['float32', 'float16'] as const;
export type WebWeightDtype = (typeof WEB_WEIGHT_DTYPES)[number];

const BYTES_PER_VALUE: Record<WebWeightDtype, number> = { float32: 4, float16: 2 };

/** One tensor in the weight file. */
export interface PackedTensor {
  name: string;       // the network's parameter name, e.g. 'enc.28x28_conv.weight'
  shape: number[];
  offset: number;     // bytes from the start of the file
}

/** The table of a weight file. */
export interface PackedWeights {
  dtype: WebWeightDtype;
  byteLength: number;
  tensors: PackedTensor[];
}

/** A tensor's values on the host. */
export interface HostTensor { shape: number[]; values: Float32Array }

/** Packs named float32 tensors into one weight file (rounded to nearest even when stored as float16). */
export function packWeights(weights: Map<string, HostTensor>, dtype: WebWeightDtype): { table: PackedWeights; bytes: Uint8Array } {
  const width = BYTES_PER_VALUE[dtype];
  const tensors: PackedTensor[] = [];
  let offset = 0;
  for (const [name, { shape, values }] of weights) {
    tensors.push({ name, shape: [...shape], offset });
    offset += values.length * width;
  }
  const bytes = new Uint8Array(offset);
  const view = new DataView(bytes.buffer);
  for (const { name, offset: start } of tensors) {
    const values = (weights.get(name) as HostTensor).values;
    for (let i = 0; i < values.length; i++) {
      if (dtype === 'float32') view.setFloat32(start + 4 * i, values[i], true);
      else view.setUint16(start + 2 * i, floatToHalf(values[i]), true);
    }
  }
  return { table: { dtype, byteLength: offset, tensors }, bytes };
}

/** Reads a weight file back into float32 values by name; throws when the bytes do not match the table. */
export function unpackWeights(table: PackedWeights, bytes: Uint8Array): Map<string, HostTensor> {
  if (!(WEB_WEIGHT_DTYPES as readonly string[]).includes(table.dtype)) throw new Error(`weights: unknown dtype '${table.dtype}' (known: ${WEB_WEIGHT_DTYPES.join(', ')})`);
  if (bytes.length !== table.byteLength) throw new Error(`weights: the file has ${bytes.length} bytes, its table describes ${table.byteLength}`);
  const width = BYTES_PER_VALUE[table.dtype];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Map<string, HostTensor>();
  for (const { name, shape, offset } of table.tensors) {
    const size = shape.reduce((a, b) => a * b, 1);
    if (offset < 0 || offset + size * width > bytes.length) throw new Error(`weights: tensor ${name} [${shape}] lies outside the file`);
    const values = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      values[i] = table.dtype === 'float32' ? view.getFloat32(offset + 4 * i, true) : halfToFloat(view.getUint16(offset + 2 * i, true));
    }
    out.set(name, { shape, values });
  }
  return out;
}
