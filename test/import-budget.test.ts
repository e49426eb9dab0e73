/**
 * The importer's budgets: small files that describe huge work (a module DAG, zero strides, views that overlap
 * themselves, declared sizes past the file, networks past --max-params) are refused within a second and a few MB,
 * and a fuzz run of random pickles built from the reader's opcodes, truncations and huge declared lengths ends
 * every file within a second, with an error naming it, and without a large allocation.
 */
import * as assert from 'assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import seedrandom from 'seedrandom';
import { importEdmFile, importEdmPickle } from '../lib/import/edm-import';
import { parseEdmPickle } from '../lib/import/edm-pickle';
import { readLegacyTorchStream } from '../lib/import/torch-storage';
import { requireSystemPart } from './helpers';

const PYTHON = process.env.ECT_PYTHON || '/usr/bin/python3';
const SCRIPT = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'make_edm_pickles.py');
const SECOND_MS = 1000;
/** Growth of the process's peak memory allowed over a whole suite of hostile files (one 2 GB read would show). */
const PEAK_GROWTH_BYTES = 64 * 1024 * 1024;

/** The process's peak resident memory so far, in bytes. */
const peakBytes = () => process.resourceUsage().maxRSS * 1024;

/** Runs `read` and returns how long it took and the error it threw (undefined when it returned). */
function timed(read: () => unknown): { ms: number; error?: Error } {
  const start = performance.now();
  try {
    read();
    return { ms: performance.now() - start };
  } catch (error) {
    return { ms: performance.now() - start, error: error as Error };
  }
}

/** A small pickle writer: opcodes and their arguments as bytes. */
class PickleBytes {
  private readonly parts: number[] = [];
  op(code: number, ...args: number[]): this { this.parts.push(code, ...args); return this; }
  raw(...bytes: number[]): this { this.parts.push(...bytes); return this; }
  u32(value: number): number[] { return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff]; }
  u64(low: number, high: number): number[] { return [...this.u32(low), ...this.u32(high)]; }
  text(value: string): number[] { return [...Buffer.from(value, 'utf8')]; }
  bytes(): Uint8Array { return Uint8Array.from(this.parts); }
}

/** Globals the EDM reader allows, and one it refuses. */
const GLOBALS = [
  'collections\nOrderedDict\n', 'torch._utils\n_rebuild_tensor_v2\n', 'torch._utils\n_rebuild_parameter\n', 'torch\nFloatStorage\n',
  'torch.storage\n_load_from_bytes\n', 'torch_utils.persistence\n_reconstruct_persistent_obj\n', 'builtins\nset\n', 'numpy\ndtype\n',
  'torch.nn.modules.container\nModuleDict\n', 'os\nsystem\n',
];

/** A random pickle of protocol 2-5 built from the opcodes the reader knows, with arguments small and huge. */
function randomPickle(random: () => number): Uint8Array {
  const w = new PickleBytes();
  const int = (n: number) => Math.floor(random() * n);
  const huge = () => (random() < 0.5 ? 0xffffffff : 0x7fffffff);
  w.op(0x80, 2 + int(4));
  const count = 1 + int(60);
  for (let i = 0; i < count; i++) {
    switch (int(30)) {
      case 0: w.op(0x28); break;                                         // MARK
      case 1: w.op(0x5d); break;                                         // EMPTY_LIST
      case 2: w.op(0x7d); break;                                         // EMPTY_DICT
      case 3: w.op(0x29); break;                                         // EMPTY_TUPLE
      case 4: w.op(0x4b, int(256)); break;                               // BININT1
      case 5: w.op(0x4a, ...w.u32(int(2 ** 32))); break;                 // BININT
      case 6: w.op(0x8c, 3, ...w.text('abc')); break;                    // SHORT_BINUNICODE
      case 7: w.op(0x58, ...w.u32(random() < 0.5 ? 3 : huge()), ...w.text('abc')); break;   // BINUNICODE
      case 8: w.op(0x8e, ...w.u64(int(2 ** 32), int(2 ** 32))); break;   // BINBYTES8 of any declared length
      case 9: w.op(0x8b, ...w.u32(random() < 0.5 ? 2 : huge()), 1, 2); break;              // LONG4
      case 10: w.op(0x71, int(8)); break;                                // BINPUT
      case 11: w.op(0x68, int(8)); break;                                // BINGET
      case 12: w.op(0x94); break;                                        // MEMOIZE
      case 13: w.op(0x61); break;                                        // APPEND
      case 14: w.op(0x65); break;                                        // APPENDS
      case 15: w.op(0x73); break;                                        // SETITEM
      case 16: w.op(0x75); break;                                        // SETITEMS
      case 17: w.op(0x74); break;                                        // TUPLE
      case 18: w.op(0x85 + int(3)); break;                               // TUPLE1-3
      case 19: w.op(0x32); break;                                        // DUP
      case 20: w.op(0x30); break;                                        // POP
      case 21: w.op(0x95, ...w.u64(int(2 ** 32), int(4))); break;       // FRAME
      case 22: w.op(0x63, ...w.text(GLOBALS[int(GLOBALS.length)])); break;  // GLOBAL
      case 23: w.op(0x52); break;                                        // REDUCE
      case 24: w.op(0x62); break;                                        // BUILD
      case 25: w.op(0x81); break;                                        // NEWOBJ
      case 26: w.op(0x51); break;                                        // BINPERSID
      case 27: w.op(0x43, 4, 1, 2, 3, 4); break;                         // SHORT_BINBYTES
      case 28: w.op(0x6a, ...w.u32(huge())); break;                      // LONG_BINGET
      default: w.op(0x88 + int(2)); break;                               // NEWTRUE / NEWFALSE
    }
  }
  if (random() < 0.8) w.op(0x2e);  // STOP
  return w.bytes();
}

/** A legacy torch stream declaring one storage of `numel` float32 elements, then `data` bytes of data. */
function legacyStreamDeclaring(numel: number, data: number): Uint8Array {
  const w = new PickleBytes();
  // magic number, protocol version, system info: three small pickles
  w.op(0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e);
  w.op(0x80, 2, 0x4d, 0xe9, 0x03, 0x2e);
  w.op(0x80, 2, 0x7d, 0x8c, 13, ...w.text('little_endian'), 0x88, 0x73, 0x2e);
  // the object: persistent id ('storage', torch.FloatStorage, '0', 'cpu', numel)
  w.op(0x80, 2, 0x28, 0x8c, 7, ...w.text('storage'), 0x63, ...w.text('torch\nFloatStorage\n'), 0x8c, 1, ...w.text('0'),
    0x8c, 3, ...w.text('cpu'), 0x8a, 8, ...w.u64(numel % 2 ** 32, Math.floor(numel / 2 ** 32)), 0x74, 0x51, 0x2e);
  w.op(0x80, 2, 0x5d, 0x8c, 1, ...w.text('0'), 0x61, 0x2e);   // the storage keys: ['0']
  w.raw(...w.u64(numel % 2 ** 32, Math.floor(numel / 2 ** 32)), ...new Array<number>(data).fill(0));
  return w.bytes();
}

describe('import: budgets against small hostile files', function () {
  let dir = '';

  before(function () {
    requireSystemPart(this, 'torch');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-hostile-'));
    const made = spawnSync(PYTHON, [SCRIPT, 'hostile', dir], { encoding: 'utf8', timeout: 300000 });
    if (made.status !== 0) throw new Error(`make_edm_pickles.py hostile failed (${made.status}): ${made.stderr}`);
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a network past --max-params before building it', () => {
    const file = path.join(dir, 'budget-small.pkl');
    assert.ok(importEdmPickle(file).weights.size > 0);
    assert.throws(() => importEdmPickle(file, { maxParams: 1000 }), /its tensors hold [\d,]+ values, more than the import budget of 1,000 parameters \(--max-params\)/);
  });

  const cases: Array<[string, RegExp]> = [
    ['hostile-dag.pkl', /module 'dag\.a(\.a)*\.b' is the same object as 'dag\.a(\.a)*': a module shared by two parents/],
    ['hostile-zero-stride.pkl', /tensor of shape \[1024,1024,3,3\] with a zero stride \(\[0,0,0,0\]\): one element repeated, not weights/],
    ['hostile-wide.pkl', /tensor of shape \[1024,1024,\d+,\d+\] has \d+ elements, more than its storage's 4096/],
  ];
  for (const [name, pattern] of cases) {
    it(`refuses ${name} within a second and a few MB, naming the file`, () => {
      const file = path.join(dir, name);
      const peak = peakBytes();
      const { ms, error } = timed(() => importEdmFile(file));
      assert.ok(error, 'refused');
      assert.ok(error.message.includes(file), error.message);
      assert.match(error.message, pattern);
      assert.ok(ms < SECOND_MS, `${ms.toFixed(0)} ms`);
      assert.ok(peakBytes() - peak < PEAK_GROWTH_BYTES, `peak memory grew by ${((peakBytes() - peak) / 1e6).toFixed(0)} MB`);
    });
  }
});

describe('import: declared sizes checked before anything is allocated', () => {
  it('refuses a storage declaring more bytes than its stream holds, before reading on', () => {
    const { ms, error } = timed(() => readLegacyTorchStream(legacyStreamDeclaring(0xffffffff, 16), 'huge.pt'));
    assert.match(error?.message ?? '', /^`huge\.pt`: storage 0 declares 4294967295 float32 elements \(17179869180 bytes\), more than the \d+ bytes of the stream that holds it/);
    assert.ok(ms < SECOND_MS);
    const fine = readLegacyTorchStream(legacyStreamDeclaring(4, 16), 'small.pt');
    assert.ok(fine !== undefined);
  });
});

describe('import: fuzz', () => {
  it('ends each of 3000 random pickles, truncations and huge declared lengths within a second, naming the file, with no large allocation', () => {
    const random = seedrandom('import-fuzz');
    const peak = peakBytes();
    let slowest = 0;
    const unexpected: string[] = [];
    const check = (bytes: Uint8Array, label: string) => {
      const { ms, error } = timed(() => parseEdmPickle(bytes, label));
      slowest = Math.max(slowest, ms);
      // a parsed dict is fine; an error must name the file (a RangeError or TypeError would be a reader bug)
      if (error && !error.message.includes(label)) unexpected.push(`${label}: ${error.name}: ${error.message.slice(0, 200)}`);
    };
    for (let i = 0; i < 2000; i++) check(randomPickle(random), `random-${i}.pkl`);
    // truncations and byte flips of a valid pickle (a snapshot-like dict with a tensor record)
    const valid = legacyStreamDeclaring(4, 16);
    for (let i = 0; i < 500; i++) check(valid.subarray(0, Math.floor(random() * valid.length)), `cut-${i}.pkl`);
    for (let i = 0; i < 500; i++) {
      const flipped = valid.slice();
      for (let k = 0; k < 3; k++) flipped[Math.floor(random() * flipped.length)] = random() < 0.5 ? 0xff : Math.floor(random() * 256);
      check(flipped, `flipped-${i}.pkl`);
      const { error } = timed(() => readLegacyTorchStream(flipped, `stream-${i}.pt`));
      if (error && !error.message.includes(`stream-${i}.pt`)) unexpected.push(`stream-${i}.pt: ${error.name}: ${error.message.slice(0, 200)}`);
    }
    assert.deepStrictEqual(unexpected, []);
    assert.ok(slowest < SECOND_MS, `slowest file took ${slowest.toFixed(0)} ms`);
    assert.ok(peakBytes() - peak < PEAK_GROWTH_BYTES, `peak memory grew by ${((peakBytes() - peak) / 1e6).toFixed(0)} MB`);
  });
});
