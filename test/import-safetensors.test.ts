/** Tests of the safetensors writer and reader: exact round trips, the byte layout, half rounding, clear errors. */
import * as assert from 'assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import seedrandom from 'seedrandom';
import { floatToHalf, halfToFloat } from '../lib/import/float16';
import {
  decodeSafetensors, encodeSafetensors, isSafetensorsFile, readSafetensors, safeTensorFromValues, safeTensorValues, writeSafetensors,
  type SafeTensor,
} from '../lib/import/safetensors';

/** Random float32 values of every magnitude, with the special values mixed in. */
function randomFloats(count: number, random: () => number): Float32Array {
  const values = new Float32Array(count);
  const words = new Uint32Array(values.buffer);
  for (let i = 0; i < count; i++) words[i] = Math.floor(random() * 2 ** 32);
  values.set([0, -0, Infinity, -Infinity, 1e-45, 3.4028234663852886e38]);
  return values;
}

function assertRefused(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(() => decodeSafetensors(bytes, 'model.safetensors'), (error: Error) => {
    assert.ok(error.message.startsWith('`model.safetensors`: '), error.message);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('import: safetensors', () => {
  const random = seedrandom('safetensors');
  const tensors = new Map<string, SafeTensor>([
    ['model.enc.32x32_conv.weight', safeTensorFromValues(randomFloats(4 * 3 * 3 * 3, random), [4, 3, 3, 3])],
    ['scalar', safeTensorFromValues(new Float32Array([0.5]), [])],
    ['empty', safeTensorFromValues(new Float32Array(0), [0, 7])],
    ['doubles', safeTensorFromValues(new Float64Array([Math.PI, -1e-300, NaN]), [3])],
    ['count', safeTensorFromValues(new BigInt64Array([2n ** 62n + 1n, -5n]), [2])],
    ['int32', safeTensorFromValues(new Int32Array([-7, 2 ** 31 - 1]), [2])],
    ['mask', safeTensorFromValues(new Uint8Array([1, 0, 1]), [3], 'BOOL')],
    ['halves', safeTensorFromValues(new Float32Array([1, -2.5, 65504, 1e-7, 0.1]), [5], 'F16')],
    ['brain', safeTensorFromValues(new Float32Array([1, -2.5, 3e38, 0.1]), [2, 2], 'BF16')],
  ]);

  it('reads back exactly what it wrote: names, dtypes, shapes, bytes and metadata', () => {
    const metadata = { format: 'pt', source: 'ect export' };
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ect-safetensors-')), 'model.safetensors');
    writeSafetensors(file, tensors, metadata);
    const back = readSafetensors(file);
    assert.deepStrictEqual(back.metadata, metadata);
    assert.deepStrictEqual(new Set(back.tensors.keys()), new Set(tensors.keys()));
    for (const [name, tensor] of tensors) assert.deepStrictEqual(back.tensors.get(name), tensor, name);
    const weights = safeTensorValues(back.tensors.get('model.enc.32x32_conv.weight')!) as Float32Array;
    assert.deepStrictEqual(new Uint32Array(weights.buffer), new Uint32Array((safeTensorValues(tensors.get('model.enc.32x32_conv.weight')!) as Float32Array).buffer));
    assert.deepStrictEqual([...safeTensorValues(back.tensors.get('halves')!)].slice(0, 3), [1, -2.5, 65504]);
    assert.deepStrictEqual(safeTensorValues(back.tensors.get('count')!), new BigInt64Array([2n ** 62n + 1n, -5n]));
    fs.rmSync(path.dirname(file), { recursive: true });
  });

  it("lays the file out as the format says: 8-byte length, JSON padded with spaces to 8, data aligned by element size", () => {
    const bytes = encodeSafetensors(tensors, { format: 'pt' });
    const headerLength = Number(Buffer.from(bytes).readBigUInt64LE(0));
    assert.strictEqual((8 + headerLength) % 8, 0);
    const text = Buffer.from(bytes.subarray(8, 8 + headerLength)).toString('utf8');
    assert.match(text, /^\{.*\} *$/);
    const header = JSON.parse(text) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    assert.deepStrictEqual(header.__metadata__, { format: 'pt' });
    assert.deepStrictEqual(header.count, { dtype: 'I64', shape: [2], data_offsets: header.count.data_offsets });
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const size = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, BOOL: 1, U8: 1 }[entry.dtype]!;
      assert.strictEqual(entry.data_offsets[0] % size, 0, `${name} starts aligned`);
    }
    assert.strictEqual(bytes.length, 8 + headerLength + Math.max(...Object.values(header).map((entry) => (entry as { data_offsets?: number[] }).data_offsets?.[1] ?? 0)));
  });

  it('rounds float32 to float16 to nearest, ties to even, and every float16 survives the trip', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = halfToFloat(bits);
      if (Number.isNaN(value)) assert.ok(Number.isNaN(halfToFloat(floatToHalf(value))));
      else assert.strictEqual(floatToHalf(value), bits, `half 0x${bits.toString(16)}`);
    }
    assert.strictEqual(floatToHalf(1 + 2 ** -11), 0x3c00, 'a tie rounds to the even 1.0');
    assert.strictEqual(floatToHalf(1 + 3 * 2 ** -11), 0x3c02, 'a tie rounds to the even 1 + 2^-9');
    assert.strictEqual(floatToHalf(65520), 0x7c00, 'halfway past the largest half overflows to inf');
    assert.strictEqual(floatToHalf(2 ** -25), 0, 'half the smallest subnormal ties to zero');
    assert.strictEqual(floatToHalf(1.5 * 2 ** -25), 1, 'above it rounds to the smallest subnormal');
    assert.strictEqual(floatToHalf(1e-7), 2, '1e-7 is about 1.68 units of 2^-24');
  });

  it('refuses truncated, foreign and inconsistent files, naming the file', () => {
    const good = encodeSafetensors(tensors);
    assertRefused(good.subarray(0, good.length - 1), /cover \d+ bytes of data, the file has|past the \d+ bytes of data/);
    assertRefused(good.subarray(0, 20), /header length \d+ exceeds/);
    assertRefused(new Uint8Array([0x89, 0x50, 0x4e, 0x47]), /not a safetensors file/);
    assertRefused(new Uint8Array(Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('[]')])), /does not start with \{/);
    const header = (json: string, data = 0) => {
      const body = Buffer.from(json);
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(body.length));
      return new Uint8Array(Buffer.concat([length, body, Buffer.alloc(data)]));
    };
    assertRefused(header('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}', 4), /tensor 'a': data_offsets \[0, 4\] hold 4 bytes, its dtype and shape need 8/);
    assertRefused(header('{"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}', 8), /dtype "C64" is not one this reader knows/);
    assertRefused(header('{"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', 2), /starts at byte 1 of the data, expected 0/);
    assertRefused(header('{"__metadata__": {"n": 1}}'), /__metadata__ is not a map of strings/);
    assertRefused(header('{"a": '), /the header is not JSON/);
  });

  it('is told by its structure: every header length round-trips (0x80 first, as a pickle starts, too); pickles and foreign files are not taken for it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-safetensors-'));
    const file = path.join(dir, 'model.safetensors');
    const firstBytes = new Set<number>();
    // headers are padded to multiples of 8, so 32 lengths give every possible first byte of the length
    for (let pad = 0; pad < 256; pad += 8) {
      const metadata = { format: 'pt', pad: 'x'.repeat(pad) };
      writeSafetensors(file, tensors, metadata);
      const bytes = fs.readFileSync(file);
      firstBytes.add(bytes[0]);
      assert.ok(isSafetensorsFile(file), `header length ${bytes.readBigUInt64LE(0)} (first byte 0x${bytes[0].toString(16)})`);
      assert.deepStrictEqual(readSafetensors(file).metadata, metadata);
    }
    assert.strictEqual(firstBytes.size, 32);
    assert.ok(firstBytes.has(0x80));
    const foreign: Array<[string, Buffer]> = [
      ['pickle', Buffer.from('80049505000000000000004b012e', 'hex')],
      ['legacy torch.save', Buffer.from('80028a0a6cfc9c46f9206aa85000', 'hex')],
      ['png', Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex')],
      ['length past the end', Buffer.concat([Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')])],
      ['header not JSON', Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{abc')])],
      ['header a list', Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('[]')])],
      ['empty', Buffer.alloc(0)],
    ];
    for (const [what, bytes] of foreign) {
      fs.writeFileSync(file, bytes);
      assert.strictEqual(isSafetensorsFile(file), false, what);
    }
    fs.rmSync(dir, { recursive: true });
  });
});
