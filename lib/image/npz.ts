/**
 * NumPy's .npy and .npz formats, written as a stream (arrays of any size go to disk batch by batch) and read back:
 * an .npz is a zip of .npy files, here stored uncompressed, as np.savez writes it and np.load reads it.
 */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';

/** The array types written and read here, by NumPy dtype string (little-endian). */
export const NPY_DTYPES = {
  '|u1': { bytes: 1, name: 'uint8' },
  '<i8': { bytes: 8, name: 'int64' },
  '<f4': { bytes: 4, name: 'float32' },
  '<f8': { bytes: 8, name: 'float64' },
} as const;
export type NpyDtype = keyof typeof NPY_DTYPES;

/** An array read from an .npz: dtype, shape and the raw little-endian bytes (C order). */
export interface NpyArray { dtype: NpyDtype; shape: number[]; data: Uint8Array }

const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);  // \x93NUMPY
const NPY_ALIGN = 64;       // numpy pads the header so that the data starts on a multiple of 64 bytes
const ZIP_LIMIT = 0xffffffff; // sizes and offsets of a zip without its ZIP64 extension

/** The .npy header (format 1.0) of a C-order array: magic, version, header length, the dict padded with spaces and '\n'. */
export function npyHeader(dtype: NpyDtype, shape: number[]): Buffer {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  const dict = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${dims}), }`;
  const unpadded = NPY_MAGIC.length + 2 + 2 + dict.length + 1;
  const text = dict + ' '.repeat((NPY_ALIGN - (unpadded % NPY_ALIGN)) % NPY_ALIGN) + '\n';
  if (text.length > 0xffff) throw new Error(`npy header of ${text.length} bytes is too long for format 1.0`);
  const head = Buffer.alloc(NPY_MAGIC.length + 4);
  NPY_MAGIC.copy(head);
  head[6] = 1;  // version 1.0
  head[7] = 0;
  head.writeUInt16LE(text.length, 8);
  return Buffer.concat([head, Buffer.from(text, 'latin1')]);
}

/** Parses an .npy file's bytes (format 1.0-3.0, C order, a dtype of NPY_DTYPES). */
export function parseNpy(bytes: Uint8Array, what = 'npy'): NpyArray {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!buffer.subarray(0, 6).equals(NPY_MAGIC)) throw new Error(`${what}: not an .npy array (no \\x93NUMPY magic)`);
  const major = buffer[6];
  const headerLength = major === 1 ? buffer.readUInt16LE(8) : buffer.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buffer.subarray(start, start + headerLength).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const dims = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !(descr in NPY_DTYPES)) throw new Error(`${what}: dtype ${descr} is not one of ${Object.keys(NPY_DTYPES).join(', ')}`);
  if (fortran !== 'False') throw new Error(`${what}: only C-order arrays are read (fortran_order ${fortran})`);
  if (dims === undefined) throw new Error(`${what}: header has no shape: ${header}`);
  const shape = dims.split(',').map((d) => d.trim()).filter(Boolean).map(Number);
  const dtype = descr as NpyDtype;
  const size = shape.reduce((a, b) => a * b, 1) * NPY_DTYPES[dtype].bytes;
  const data = bytes.subarray(start + headerLength, start + headerLength + size);
  if (data.length !== size) throw new Error(`${what}: ${data.length} data bytes for shape (${shape}) of ${descr}, expected ${size}`);
  return { dtype, shape, data };
}

/** CRC-32 (IEEE, as zip uses it), continued from `crc` (0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** One stored entry of the zip being written: where its local header is, its size and CRC. */
interface ZipEntry { name: string; offset: number; size: number; crc: number }

/**
 * Writes an .npz file array by array and each array in pieces, so that 50,000 images never sit in memory at once:
 * `begin(name, dtype, shape)`, then `write(bytes)` until the array is complete, then the next array, then `close()`.
 * Entries are stored uncompressed (as np.savez does); each one's CRC and size are patched into its local header.
 */
export class NpzWriter {
  private readonly fd: number;
  private readonly entries: ZipEntry[] = [];
  private position = 0;
  private open: (ZipEntry & { expected: number }) | null = null;

  constructor(readonly file: string) {
    this.fd = fs.openSync(file, 'w');
  }

  /** Starts array `name` (stored as `name`.npy, as np.savez names arr_0, arr_1...); its data follows in write(). */
  begin(name: string, dtype: NpyDtype, shape: number[]): void {
    if (this.open) throw new Error(`${this.file}: array ${this.open.name} is not complete`);
    const header = npyHeader(dtype, shape);
    const entry = { name: `${name}.npy`, offset: this.position, size: 0, crc: 0, expected: header.length + shape.reduce((a, b) => a * b, 1) * NPY_DTYPES[dtype].bytes };
    if (entry.offset + entry.expected + 1024 > ZIP_LIMIT) throw new Error(`${this.file}: more than 4 GiB; this writer makes no ZIP64 archives`);
    this.append(localHeader(entry.name));
    this.open = entry;
    this.write(header);
  }

  /** Appends bytes to the array begun last (C order, little-endian). */
  write(bytes: Uint8Array): void {
    const entry = this.open;
    if (!entry) throw new Error(`${this.file}: write() before begin()`);
    if (entry.size + bytes.length > entry.expected) throw new Error(`${this.file}: more data than ${entry.name}'s shape holds`);
    entry.crc = crc32(bytes, entry.crc);
    entry.size += bytes.length;
    this.append(bytes);
    if (entry.size === entry.expected) this.finishEntry(entry);
  }

  /** Writes the zip's central directory and closes the file. */
  close(): void {
    try {
      if (this.open) throw new Error(`${this.file}: array ${this.open.name} has ${this.open.size} of its ${this.open.expected} bytes`);
      const directoryStart = this.position;
      for (const entry of this.entries) this.append(centralHeader(entry));
      const end = Buffer.alloc(22);
      end.writeUInt32LE(0x06054b50, 0);           // end of central directory
      end.writeUInt16LE(this.entries.length, 8);   // entries on this disk
      end.writeUInt16LE(this.entries.length, 10);  // entries in all
      end.writeUInt32LE(this.position - directoryStart, 12);
      end.writeUInt32LE(directoryStart, 16);
      this.append(end);
    } finally {
      fs.closeSync(this.fd);
    }
  }

  private finishEntry(entry: ZipEntry): void {
    // CRC-32, compressed size, uncompressed size at offset 14 of the local header
    const patch = Buffer.alloc(12);
    patch.writeUInt32LE(entry.crc, 0);
    patch.writeUInt32LE(entry.size, 4);
    patch.writeUInt32LE(entry.size, 8);
    fs.writeSync(this.fd, patch, 0, patch.length, entry.offset + 14);
    this.entries.push({ name: entry.name, offset: entry.offset, size: entry.size, crc: entry.crc });
    this.open = null;
  }

  private append(bytes: Uint8Array): void {
    fs.writeSync(this.fd, bytes, 0, bytes.length, this.position);
    this.position += bytes.length;
  }
}

/** A zip local file header for a stored entry; CRC and sizes are patched in once the data is written. */
function localHeader(name: string): Buffer {
  const header = Buffer.alloc(30);
  header.writeUInt32LE(0x04034b50, 0);  // local file header signature
  header.writeUInt16LE(20, 4);          // version needed: 2.0
  header.writeUInt16LE(0, 6);           // flags
  header.writeUInt16LE(0, 8);           // method: stored
  header.writeUInt16LE(0, 10);          // time
  header.writeUInt16LE(0x21, 12);       // date: 1980-01-01
  header.writeUInt16LE(name.length, 26);
  return Buffer.concat([header, Buffer.from(name, 'latin1')]);
}

/** The central directory record of a stored entry. */
function centralHeader(entry: ZipEntry): Buffer {
  const header = Buffer.alloc(46);
  header.writeUInt32LE(0x02014b50, 0);  // central file header signature
  header.writeUInt16LE(20, 4);          // version made by
  header.writeUInt16LE(20, 6);          // version needed
  header.writeUInt16LE(0x21, 14);       // date: 1980-01-01
  header.writeUInt32LE(entry.crc, 16);
  header.writeUInt32LE(entry.size, 20);
  header.writeUInt32LE(entry.size, 24);
  header.writeUInt16LE(entry.name.length, 28);
  header.writeUInt32LE(entry.offset, 42);
  return Buffer.concat([header, Buffer.from(entry.name, 'latin1')]);
}

/**
 * Reads the arrays of an .npz, by name without `.npy` (arr_0, ...): stored entries (np.savez) or deflated ones
 * (np.savez_compressed), checking each entry's CRC.
 */
export function readNpz(file: string): Map<string, NpyArray> {
  const bytes = fs.readFileSync(file);
  const endAt = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (endAt < 0) throw new Error(`${file}: not a zip archive (no end of central directory)`);
  const count = bytes.readUInt16LE(endAt + 10);
  let at = bytes.readUInt32LE(endAt + 16);
  const arrays = new Map<string, NpyArray>();
  for (let i = 0; i < count; i++) {
    if (bytes.readUInt32LE(at) !== 0x02014b50) throw new Error(`${file}: bad central directory record ${i}`);
    const method = bytes.readUInt16LE(at + 10);
    const crc = bytes.readUInt32LE(at + 16);
    const compressedSize = bytes.readUInt32LE(at + 20);
    const size = bytes.readUInt32LE(at + 24);
    const nameLength = bytes.readUInt16LE(at + 28);
    const extraLength = bytes.readUInt16LE(at + 30);
    const commentLength = bytes.readUInt16LE(at + 32);
    const offset = bytes.readUInt32LE(at + 42);
    const name = bytes.subarray(at + 46, at + 46 + nameLength).toString('latin1');
    if (method !== 0 && method !== 8) throw new Error(`${file}: ${name} uses zip method ${method}; only stored and deflated entries are read here`);
    const dataStart = offset + 30 + bytes.readUInt16LE(offset + 26) + bytes.readUInt16LE(offset + 28);
    const stored = bytes.subarray(dataStart, dataStart + compressedSize);
    const data = method === 8 ? zlib.inflateRawSync(stored) : stored;  // 8: deflate, as np.savez_compressed writes
    if (data.length !== size) throw new Error(`${file}: ${name} holds ${data.length} bytes, its directory says ${size}`);
    if (crc32(data) !== crc) throw new Error(`${file}: ${name} fails its CRC-32 check`);
    arrays.set(name.replace(/\.npy$/, ''), parseNpy(data, `${file}: ${name}`));
    at += 46 + nameLength + extraLength + commentLength;
  }
  return arrays;
}
