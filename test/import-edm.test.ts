/**
 * Tests of the EDM pickle reader on files that Debian's PyTorch writes the way EDM's training loop does
 * (test/fixtures/make_edm_pickles.py, run here into a temporary folder): every tensor bit for bit, the
 * persistent records as data, refused globals, truncated and foreign files, and the safetensors export.
 */
import * as assert from 'assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import {
  PersistentObject, edmNetwork, initKwargs, moduleAttributes, moduleStateDict, moduleTree, readEdmPickle, submodule,
} from '../lib/import/edm-pickle';
import { PickleError, PyObject } from '../lib/import/pickle';
import { NumpyDtype } from '../lib/import/python-globals';
import { decodeSafetensors, encodeSafetensors, safeTensorFromTorch, writeSafetensors } from '../lib/import/safetensors';
import { TorchTensor, readLegacyTorchFile, tensorBytes, tensorValues } from '../lib/import/torch-storage';
import { requireSystemPart } from './helpers';

/** Debian's Python, where python3-torch lives (the same choice as scripts/system-parts.js). */
const PYTHON = process.env.ECT_PYTHON || '/usr/bin/python3';
const SCRIPT = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'make_edm_pickles.py');

interface TensorEntry { dtype: string; shape: number[]; hex: string; float32_hex?: string }
interface SnapshotExpectation {
  state_dicts: Record<string, Record<string, TensorEntry>>;
  classes: { ema: Record<string, string> };
  init_kwargs: { ema: Record<string, unknown> };
  ema_attributes: Record<string, unknown>;
  skip_scale: number;
  extras_views?: Record<string, { stride: number[]; offset: number }>;
  np_float?: number;
  big_int?: string;
}
interface Expected {
  files: Record<string, SnapshotExpectation & { state_dict: Record<string, TensorEntry>; tensors: Record<string, TensorEntry> }>;
  refused: Record<string, string>;
}

const SNAPSHOTS = ['snapshot-ddpmpp-p2.pkl', 'snapshot-ddpmpp-p3.pkl', 'snapshot-ddpmpp-p4.pkl', 'snapshot-ddpmpp-p5.pkl', 'snapshot-ncsnpp-p4.pkl'];

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** Asserts one tensor equals its expected dtype, shape and bytes (and float32 values for float16). */
function assertTensor(name: string, tensor: TorchTensor, entry: TensorEntry): void {
  assert.strictEqual(tensor.dtype, entry.dtype, `${name}: dtype`);
  assert.deepStrictEqual([...tensor.shape], entry.shape, `${name}: shape`);
  assert.strictEqual(hex(tensorBytes(tensor)), entry.hex, `${name}: bytes`);
  if (entry.float32_hex !== undefined) {
    const values = tensorValues(tensor) as Float32Array;
    assert.strictEqual(hex(new Uint8Array(values.buffer)), entry.float32_hex, `${name}: float16 read as float32`);
  }
}

/** Asserts a state dict has exactly the expected names, in PyTorch's order, and every tensor bit for bit. */
function assertStateDict(actual: Map<string, TorchTensor>, expected: Record<string, TensorEntry>): void {
  assert.deepStrictEqual([...actual.keys()], Object.keys(expected));
  for (const [name, tensor] of actual) assertTensor(name, tensor, expected[name]);
}

/** A pickled value as JSON-like plain data (Maps to objects, tuples and lists to arrays). */
function plain(value: unknown): unknown {
  if (value instanceof Map) return Object.fromEntries([...value].map(([key, item]) => [String(key), plain(item)]));
  if (Array.isArray(value)) return value.map(plain);
  return value;
}

/** Runs `read`, expecting a PickleError that names `file` and matches `pattern`. */
function assertFails(read: () => unknown, file: string, pattern: RegExp): void {
  assert.throws(read, (error: unknown) => {
    assert.ok(error instanceof PickleError, String(error));
    assert.ok(error.message.includes(file), `names the file: ${error.message}`);
    assert.match(error.message.slice(0, 2000), pattern);
    return true;
  });
}

describe('import: EDM pickles written by PyTorch', function () {
  let dir = '';
  let expected: Expected;
  const fixture = (name: string) => path.join(dir, name);

  before(function () {
    requireSystemPart(this, 'torch');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ect-edm-pickles-'));
    const made = spawnSync(PYTHON, [SCRIPT, dir], { encoding: 'utf8', timeout: 300000 });
    if (made.status !== 0) throw new Error(`make_edm_pickles.py failed (${made.status}): ${made.stderr}`);
    expected = JSON.parse(fs.readFileSync(fixture('expected.json'), 'utf8')) as Expected;
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const file of SNAPSHOTS) {
    it(`reads every tensor of ${file} bit for bit, under PyTorch's state_dict names`, () => {
      const snapshot = readEdmPickle(fixture(file));
      const want = expected.files[file];
      assertStateDict(moduleStateDict(edmNetwork(snapshot, file), file), want.state_dicts.ema);
      const extras = snapshot.get('extras');
      if (want.state_dicts.extras) assertStateDict(moduleStateDict(extras as PersistentObject), want.state_dicts.extras);
    });
  }

  it('reads the module tree with its class names, and the persistent records as data', () => {
    for (const file of ['snapshot-ddpmpp-p4.pkl', 'snapshot-ncsnpp-p4.pkl']) {
      const want = expected.files[file];
      const ema = edmNetwork(readEdmPickle(fixture(file)), file);
      assert.deepStrictEqual(Object.fromEntries(moduleTree(ema)), want.classes.ema);
      assert.deepStrictEqual(plain(initKwargs(ema)), want.init_kwargs.ema);
      const attributes = Object.fromEntries([...moduleAttributes(ema)].map(([key, value]) => [key, value === Infinity ? 'inf' : value]));
      for (const [key, value] of Object.entries(want.ema_attributes)) assert.strictEqual(attributes[key], value, key);
      assert.strictEqual(ema.version, 6);
      assert.match(ema.moduleSrc, /class SongUNet\(torch\.nn\.Module\)/, 'the module source is kept as a string');
      const block = submodule(ema, 'model.enc.4x4_down', file);
      assert.ok(block instanceof PersistentObject && block.className === 'UNetBlock');
      assert.strictEqual(moduleAttributes(block).get('skip_scale'), want.skip_scale, 'a numpy float64 attribute');
      assert.ok(submodule(ema, 'model.enc', file) instanceof PyObject, 'ModuleDict is a plain allowlisted class');
    }
  });

  it('reads sharing views, every dtype, numpy scalars and dtypes, inf, big ints, sets and OrderedDicts', () => {
    const file = 'snapshot-ddpmpp-p4.pkl';
    const want = expected.files[file];
    const extras = readEdmPickle(fixture(file)).get('extras') as PersistentObject;
    const buffers = extras.state.get('_buffers') as Map<string, TorchTensor>;
    for (const [name, view] of Object.entries(want.extras_views!)) {
      assert.deepStrictEqual([...buffers.get(name)!.stride], view.stride, `${name} stride`);
      assert.strictEqual(buffers.get(name)!.storageOffset, view.offset, `${name} offset`);
    }
    assert.deepStrictEqual(tensorValues(buffers.get('count')!), new BigInt64Array([2n ** 40n, -5n, 2n ** 62n + 1n]));
    assert.deepStrictEqual([...tensorValues(buffers.get('halves')!)].slice(0, 6), [1, -2.5, 65504, 5.960464477539063e-8, Infinity, -Infinity]);
    assert.ok(!moduleStateDict(extras).has('scratch'), 'a non-persistent buffer is not in the state dict');
    assert.ok(buffers.get('scratch') instanceof TorchTensor);

    const attributes = moduleAttributes(extras);
    assert.strictEqual(attributes.get('np_float'), want.np_float);
    assert.strictEqual(attributes.get('np_int'), -3);
    assert.strictEqual(attributes.get('np_bool'), true);
    const [half, bigInt32] = [attributes.get('np_dtype'), attributes.get('np_dtype_big')] as NumpyDtype[];
    assert.ok(half instanceof NumpyDtype && half.name === 'float16' && !half.bigEndian);
    assert.ok(bigInt32 instanceof NumpyDtype && bigInt32.name === 'int32' && bigInt32.bigEndian);
    assert.strictEqual(attributes.get('positive_inf'), Infinity);
    assert.strictEqual(attributes.get('negative_inf'), -Infinity);
    assert.strictEqual(attributes.get('big_int'), BigInt(want.big_int!));
    const ordered = attributes.get('ordered') as Map<string, unknown>;
    assert.deepStrictEqual([...ordered.keys()], ['zeta', 'alpha', 'mid']);
    assert.deepStrictEqual(plain(ordered), { zeta: 1, alpha: [2, 3.5], mid: [null, true, new Uint8Array([0, 255])] });
    const labels = attributes.get('labels') as Map<string, Set<unknown>>;
    assert.deepStrictEqual(labels.get('set'), new Set([1, 2, 3]));
    assert.deepStrictEqual(labels.get('frozen'), new Set(['a']));
    assert.strictEqual(attributes.get('text'), 'grüß 😀');
  });

  it('reads the rest of a snapshot: loss_fn, augment_pipe and dataset_kwargs', () => {
    const ddpmpp = readEdmPickle(fixture('snapshot-ddpmpp-p2.pkl'));
    const loss = ddpmpp.get('loss_fn') as PersistentObject;
    assert.strictEqual(loss.className, 'EDMLoss');
    assert.deepStrictEqual(Object.fromEntries(moduleAttributes(loss)), { P_mean: -1.2, P_std: 1.2, sigma_data: 0.5 });
    assert.strictEqual(ddpmpp.get('augment_pipe'), null);
    const kwargs = ddpmpp.get('dataset_kwargs') as Map<string, unknown>;
    assert.strictEqual(kwargs.get('max_size'), 50000, 'a numpy int64 scalar');
    assert.strictEqual(kwargs.get('resolution'), 8);
    const ncsnpp = readEdmPickle(fixture('snapshot-ncsnpp-p4.pkl'));
    const augment = ncsnpp.get('augment_pipe') as PersistentObject;
    assert.strictEqual(augment.className, 'AugmentPipe');
    assert.strictEqual(moduleAttributes(augment).get('xflip'), 1e8);
  });

  it('refuses a global that is not on the allowlist, wherever it hides, naming it and the file', () => {
    for (const [file, global] of Object.entries(expected.refused)) {
      assertFails(() => readEdmPickle(fixture(file)), file, new RegExp(`global \`${global.replace('.', '\\.')}\`.*not on the allowlist`));
    }
  });

  it('names a truncated file, wherever it is cut', () => {
    for (const file of ['snapshot-ddpmpp-p4.pkl', 'snapshot-ddpmpp-p2.pkl']) {
      const whole = fs.readFileSync(fixture(file));
      for (const fraction of [0.0001, 0.01, 0.25, 0.5, 0.75, 0.9999]) {
        const cut = fixture(`cut-${fraction}-${file}`);
        fs.writeFileSync(cut, whole.subarray(0, Math.floor(whole.length * fraction)));
        assertFails(() => readEdmPickle(cut), cut, /truncated: unexpected end of data/);
      }
    }
    const legacy = fs.readFileSync(fixture('legacy-state-dict.pt'));
    const cut = fixture('cut-legacy-state-dict.pt');
    fs.writeFileSync(cut, legacy.subarray(0, legacy.length - 100));
    assertFails(() => readLegacyTorchFile(cut), cut, /truncated: unexpected end of data/);
  });

  it('names a foreign file: a PNG, a zip-format torch.save, a legacy torch.save', () => {
    const png = new PNG({ width: 1, height: 1 });
    fs.writeFileSync(fixture('image.png'), PNG.sync.write(png));
    assertFails(() => readEdmPickle(fixture('image.png')), 'image.png', /not a pickle: it is a PNG image/);
    assertFails(() => readEdmPickle(fixture('zip-state-dict.pt')), 'zip-state-dict.pt', /not a pickle: it is a zip archive/);
    assertFails(() => readEdmPickle(fixture('legacy-state-dict.pt')), 'legacy-state-dict.pt', /legacy format/);
    assertFails(() => readLegacyTorchFile(fixture('snapshot-ddpmpp-p4.pkl')), 'snapshot-ddpmpp-p4.pkl', /not a torch legacy stream/);
  });

  it("reads torch's legacy files: a state dict, and views that share one storage", () => {
    const state = readLegacyTorchFile(fixture('legacy-state-dict.pt')) as Map<string, TorchTensor>;
    assertStateDict(state, expected.files['legacy-state-dict.pt'].state_dict);
    const views = readLegacyTorchFile(fixture('legacy-views.pt')) as Map<string, TorchTensor>;
    for (const [name, entry] of Object.entries(expected.files['legacy-views.pt'].tensors)) assertTensor(name, views.get(name)!, entry);
    const storages = new Set([...views.values()].map((tensor) => tensor.storage));
    assert.strictEqual(storages.size, 1, 'one storage behind all four views');
  });

  it('exports the weights to safetensors and reads back the same bits', () => {
    const snapshot = readEdmPickle(fixture('snapshot-ddpmpp-p4.pkl'));
    const weights = new Map([
      ...moduleStateDict(edmNetwork(snapshot, 'snapshot')),
      ...[...moduleStateDict(snapshot.get('extras') as PersistentObject)].map(([name, tensor]) => [`extras.${name}`, tensor] as const),
    ]);
    const file = fixture('export.safetensors');
    writeSafetensors(file, new Map([...weights].map(([name, tensor]) => [name, safeTensorFromTorch(tensor)])), { format: 'pt' });
    const back = decodeSafetensors(new Uint8Array(fs.readFileSync(file)), file);
    assert.deepStrictEqual(back.metadata, { format: 'pt' });
    assert.deepStrictEqual(new Set(back.tensors.keys()), new Set(weights.keys()));
    for (const [name, tensor] of weights) {
      const read = back.tensors.get(name)!;
      assert.deepStrictEqual(read.shape, [...tensor.shape], name);
      assert.strictEqual(hex(read.data), hex(tensorBytes(tensor)), name);
    }
    assert.deepStrictEqual(encodeSafetensors(back.tensors, back.metadata), new Uint8Array(fs.readFileSync(file)), 're-encoding gives the same file');
  });

  it("loads in PyTorch through the python safetensors package (where it is installed)", function () {
    const snapshot = readEdmPickle(fixture('snapshot-ddpmpp-p4.pkl'));
    const weights = moduleStateDict(edmNetwork(snapshot, 'snapshot'));
    const file = fixture('for-torch.safetensors');
    writeSafetensors(file, new Map([...weights].map(([name, tensor]) => [name, safeTensorFromTorch(tensor)])));
    const loaded = spawnSync(PYTHON, [SCRIPT, 'read-safetensors', file], { encoding: 'utf8', timeout: 120000, maxBuffer: 64 << 20 });
    if (loaded.status === 3) {
      console.log('    skipped: the python safetensors package is not installed (Debian has no package for it); the format is checked by our reader');
      this.skip();
    }
    assert.strictEqual(loaded.status, 0, loaded.stderr);
    const tensors = JSON.parse(loaded.stdout) as Record<string, [string, number[], string]>;
    for (const [name, tensor] of weights) assert.deepStrictEqual(tensors[name], [tensor.dtype, [...tensor.shape], hex(tensorBytes(tensor))], name);
  });
});
