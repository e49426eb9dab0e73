/**
 * The safetensors format, written and read: an 8-byte little-endian header length, a JSON header naming
 * each tensor's dtype, shape and byte range (plus an optional `__metadata__` map of strings), padded with
 * spaces to a multiple of 8 bytes, then the raw little-endian data. PyTorch code loads these files with
 * `safetensors.torch.load_file`, so a model trained here can leave, and one exported here reads back exactly.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { writeFileAtomic } from '../write-file';
import { readBytes } from './pickle';
import { floatToBfloat16, floatToHalf } from './float16';
import { tensorBytes, valuesOfBytes, type TensorValues, type TorchDtype, type TorchTensor } from './torch-storage';

/** The safetensors dtypes this module reads and writes, with their element sizes. */
export const SAFETENSORS_DTYPE_BYTES = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 } as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_BYTES;

/** One tensor of a safetensors file: its dtype, shape and raw little-endian bytes (row-major). */
export interface SafeTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Uint8Array;
}

/** The contents of a safetensors file. */
export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

/** Largest header read (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

const TORCH_TO_SAFETENSORS: Record<TorchDtype, SafetensorsDtype> = {
  float32: 'F32', float64: 'F64', float16: 'F16', bfloat16: 'BF16', int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};

class SafetensorsError extends Error {
  constructor(source: string, detail: string) {
    super(`\`${source}\`: ${detail}`);
    this.name = 'SafetensorsError';
  }
}

function checkLittleEndianHost(): void {
  if (os.endianness() !== 'LE') throw new Error('safetensors data is little-endian; this machine is not');
}

/** A SafeTensor from typed-array values; float32 values may be stored as F16 or BF16 (rounded to nearest even). */
export function safeTensorFromValues(values: TensorValues, shape: number[], dtype?: SafetensorsDtype): SafeTensor {
  checkLittleEndianHost();
  const numel = shape.reduce((a, b) => a * b, 1);
  if (numel !== values.length) throw new Error(`safetensors: shape [${shape}] has ${numel} elements, the values ${values.length}`);
  const natural: SafetensorsDtype = values instanceof Float32Array ? 'F32' : values instanceof Float64Array ? 'F64'
    : values instanceof BigInt64Array ? 'I64' : values instanceof Int32Array ? 'I32' : values instanceof Int16Array ? 'I16'
      : values instanceof Int8Array ? 'I8' : 'U8';
  const target = dtype ?? natural;
  if (target === natural || (natural === 'U8' && target === 'BOOL')) {
    return { dtype: target, shape: [...shape], data: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)) };
  }
  if (natural === 'F32' && (target === 'F16' || target === 'BF16')) {
    const halves = new Uint16Array(values.length);
    const floats = values as Float32Array;
    for (let i = 0; i < floats.length; i++) halves[i] = target === 'F16' ? floatToHalf(floats[i]) : floatToBfloat16(floats[i]);
    return { dtype: target, shape: [...shape], data: new Uint8Array(halves.buffer) };
  }
  throw new Error(`safetensors: cannot store ${natural} values as ${target}`);
}

/** A SafeTensor holding a pickled torch tensor's values, bit for bit. */
export function safeTensorFromTorch(tensor: TorchTensor): SafeTensor {
  return { dtype: TORCH_TO_SAFETENSORS[tensor.dtype], shape: [...tensor.shape], data: tensorBytes(tensor) };
}

/** The values of a SafeTensor; F16 and BF16 become float32 (exactly), BOOL and U8 bytes. */
export function safeTensorValues(tensor: SafeTensor): TensorValues {
  return valuesOfBytes(torchDtypeOf(tensor.dtype), tensor.data.slice());  // a copy: the data may be a view into the file
}

/** The torch dtype a safetensors dtype reads as. */
export function torchDtypeOf(dtype: SafetensorsDtype): TorchDtype {
  return (Object.keys(TORCH_TO_SAFETENSORS) as TorchDtype[]).find((key) => TORCH_TO_SAFETENSORS[key] === dtype)!;
}

/**
 * Encodes tensors and metadata as a safetensors file. The data is laid out by element size, largest first,
 * then by name (as the reference writer does), so every tensor starts aligned to its element size.
 */
export function encodeSafetensors(tensors: Map<string, SafeTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const names = [...tensors.keys()].sort((a, b) =>
    SAFETENSORS_DTYPE_BYTES[tensors.get(b)!.dtype] - SAFETENSORS_DTYPE_BYTES[tensors.get(a)!.dtype] || (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new Error('safetensors: a tensor cannot be named __metadata__');
    const tensor = tensors.get(name)!;
    const length = tensor.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[tensor.dtype];
    if (length !== tensor.data.length) throw new Error(`safetensors: tensor ${name} of shape [${tensor.shape}] and dtype ${tensor.dtype} needs ${length} bytes, has ${tensor.data.length}`);
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + length] };
    offset += length;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil((8 + json.length) / 8) * 8 - 8;
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let position = 8 + json.length;
  for (const name of names) {
    out.set(tensors.get(name)!.data, position);
    position += tensors.get(name)!.data.length;
  }
  return out;
}

/** Checks one header entry and returns its tensor (a copy of its bytes). */
function decodeEntry(name: string, entry: unknown, data: Uint8Array, source: string): { tensor: SafeTensor; begin: number; end: number } {
  const fail = (detail: string): never => {
    throw new SafetensorsError(source, `tensor '${name}': ${detail}`);
  };
  const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof dtype !== 'string' || !(dtype in SAFETENSORS_DTYPE_BYTES)) fail(`dtype ${JSON.stringify(dtype)} is not one this reader knows (${Object.keys(SAFETENSORS_DTYPE_BYTES).join(', ')})`);
  if (!Array.isArray(shape) || !shape.every((size) => Number.isInteger(size) && size >= 0)) fail('shape is not a list of sizes');
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((x) => Number.isInteger(x) && x >= 0)) fail('data_offsets is not [begin, end]');
  const [begin, end] = offsets as number[];
  const expected = (shape as number[]).reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[dtype as SafetensorsDtype];
  if (end - begin !== expected) fail(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes, its dtype and shape need ${expected}`);
  if (end > data.length) fail(`data_offsets end at ${end}, past the ${data.length} bytes of data (truncated?)`);
  return { tensor: { dtype: dtype as SafetensorsDtype, shape: shape as number[], data: data.slice(begin, end) }, begin, end };
}

/** Decodes a safetensors file's bytes; `source` names it in errors. */
export function decodeSafetensors(bytes: Uint8Array, source: string): SafetensorsFile {
  const fail = (detail: string): never => {
    throw new SafetensorsError(source, detail);
  };
  if (bytes.length < 8) fail(`not a safetensors file: ${bytes.length} bytes, shorter than the header length`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, bytes.length - 8))) {
    fail(`not a safetensors file (or truncated): its header length ${headerLength} exceeds the ${bytes.length - 8} bytes after it`);
  }
  const headerBytes = bytes.subarray(8, 8 + Number(headerLength));
  if (headerBytes[0] !== 0x7b) fail('not a safetensors file: the header does not start with {');
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(headerBytes).toString('utf8'));
  } catch (error) {
    fail(`the header is not JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header is not a JSON object');
  const data = bytes.subarray(8 + Number(headerLength));
  const { __metadata__: metadata = {}, ...entries } = header as Record<string, unknown>;
  if (typeof metadata !== 'object' || metadata === null || Object.values(metadata).some((value) => typeof value !== 'string')) fail('__metadata__ is not a map of strings');

  const decoded = Object.entries(entries).map(([name, entry]) => ({ name, ...decodeEntry(name, entry, data, source) }));
  // the byte ranges must tile the data exactly: no gaps, no overlaps, nothing left over
  let covered = 0;
  for (const { name, begin, end } of [...decoded].sort((a, b) => a.begin - b.begin || a.end - b.end)) {
    if (begin !== covered) fail(`tensor '${name}' starts at byte ${begin} of the data, expected ${covered} (gap or overlap)`);
    covered = end;
  }
  if (covered !== data.length) fail(`the tensors cover ${covered} bytes of data, the file has ${data.length}`);
  return { tensors: new Map(decoded.map(({ name, tensor }) => [name, tensor])), metadata: metadata as Record<string, string> };
}

/** Writes tensors (and metadata) to a safetensors file. */
export function writeSafetensors(file: string, tensors: Map<string, SafeTensor>, metadata: Record<string, string> = {}): void {
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}

/**
 * Whether a file is laid out as safetensors, told by its structure rather than one byte (a header length can
 * begin with any byte, 0x80 too, which is also how a pickle starts): the 8-byte header length fits the file
 * and the reader's limit, and the header it spans is a JSON object. Reads the header only.
 */
export function isSafetensorsFile(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const prefix = Buffer.alloc(8);
    if (size < 10 || fs.readSync(fd, prefix, 0, 8, 0) < 8) return false;
    const headerLength = prefix.readBigUInt64LE(0);
    if (headerLength < 2n || headerLength > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) return false;
    const header = Buffer.alloc(Number(headerLength));
    if (fs.readSync(fd, header, 0, header.length, 8) < header.length || header[0] !== 0x7b) return false;
    const parsed: unknown = JSON.parse(header.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
  } catch {
    return false;  // not JSON
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads a safetensors file. */
export function readSafetensors(file: string): SafetensorsFile {
  return decodeSafetensors(readBytes(file), file);
}
