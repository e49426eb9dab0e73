/**
 * Training checkpoints in our own single-file format: magic, version, JSON header, raw little-endian
 * tensor data and a SHA-256 of everything before it, written atomically.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { namingFile, temporaryPath } from '../write-file';

/** A checkpoint: free-form JSON metadata and named groups of tensors (e.g. 'params', 'ema', 'optimizer'). */
export interface Checkpoint {
  meta: Record<string, unknown>;
  groups: Record<string, Map<string, tf.Tensor>>;
}

/** One row of the tensor table in the header. */
interface TensorEntry {
  group: string;
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  offset: number;       // bytes from the start of the data section
  byteLength: number;
}

/** The JSON header that follows the fixed preamble. */
interface Header {
  meta: Record<string, unknown>;
  tensors: TensorEntry[];
  dataByteLength: number;
}

// Layout: MAGIC (8 bytes) | version (uint32 LE) | header length (uint32 LE) | header JSON (padded with
// spaces to a multiple of 8 so the data is aligned) | data | SHA-256 of all preceding bytes (32 bytes).
const MAGIC = Buffer.from('ECTCKPT\0', 'latin1');
const FORMAT_VERSION = 1;
const PREAMBLE_BYTES = MAGIC.length + 8;
const CHECKSUM_BYTES = 32;
const HEADER_ALIGNMENT = 8;
const BYTES_PER_ELEMENT = 4;  // float32 and int32
const ITERATION_DIGITS = 9;   // ckpt-000012345.ckpt: names sort by iteration
const CHECKPOINT_NAME = /^ckpt-(\d+)\.ckpt$/;
const READ_CHUNK_BYTES = 64 * 1024 * 1024;
const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';
const LISTED_PARAMETERS = 8;  // parameters named per kind of mismatch; a wrong width would list every one

/** Path of the checkpoint for an iteration: dir/ckpt-<iteration, zero-padded to 9 digits>.ckpt. */
export function checkpointPath(dir: string, iteration: number): string {
  if (!(Number.isInteger(iteration) && iteration >= 0)) throw new Error(`checkpoint iteration must be an integer >= 0, got ${iteration}`);
  return path.join(dir, `ckpt-${String(iteration).padStart(ITERATION_DIGITS, '0')}.ckpt`);
}

/** The tensor's values as little-endian bytes. */
function tensorBytes(tensor: tf.Tensor): Buffer {
  const values = tensor.dataSync();
  const bytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  return LITTLE_ENDIAN_HOST ? bytes : Buffer.from(bytes).swap32();
}

/** Writes all of `bytes` at the current position of `fd` and feeds them to the checksum. */
function writeAll(fd: number, bytes: Buffer, hash: crypto.Hash): void {
  let written = 0;
  while (written < bytes.length) written += fs.writeSync(fd, bytes, written, bytes.length - written);
  hash.update(bytes);
}

/**
 * Saves a checkpoint atomically: writes `file`.tmp-<pid>, fsyncs it and renames it over `file`, so a crash
 * leaves either the old file or the new one. Creates the directory if needed. Tensors must be float32 or int32.
 */
export function saveCheckpoint(file: string, ckpt: Checkpoint): void {
  const tensors: TensorEntry[] = [];
  const ordered: tf.Tensor[] = [];
  let offset = 0;
  for (const [group, members] of Object.entries(ckpt.groups)) {
    for (const [name, tensor] of members) {
      if (tensor.dtype !== 'float32' && tensor.dtype !== 'int32') {
        throw new Error(`cannot save checkpoint ${file}: tensor ${group}/${name} has dtype ${tensor.dtype} (only float32 and int32 are supported)`);
      }
      const byteLength = tensor.size * BYTES_PER_ELEMENT;
      tensors.push({ group, name, shape: [...tensor.shape], dtype: tensor.dtype, offset, byteLength });
      ordered.push(tensor);
      offset += byteLength;
    }
  }
  const header: Header = { meta: ckpt.meta, tensors, dataByteLength: offset };
  let headerJson = JSON.stringify(header);
  const unpadded = Buffer.byteLength(headerJson, 'utf8');
  headerJson += ' '.repeat((HEADER_ALIGNMENT - ((PREAMBLE_BYTES + unpadded) % HEADER_ALIGNMENT)) % HEADER_ALIGNMENT);
  const headerBytes = Buffer.from(headerJson, 'utf8');
  const preamble = Buffer.alloc(PREAMBLE_BYTES);
  MAGIC.copy(preamble, 0);
  preamble.writeUInt32LE(FORMAT_VERSION, MAGIC.length);
  preamble.writeUInt32LE(headerBytes.length, MAGIC.length + 4);

  namingFile(file, () => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = temporaryPath(file);
    const fd = fs.openSync(tmp, 'w');
    try {
      const hash = crypto.createHash('sha256');
      writeAll(fd, preamble, hash);
      writeAll(fd, headerBytes, hash);
      for (const tensor of ordered) writeAll(fd, tensorBytes(tensor), hash);
      const checksum = hash.digest();
      let written = 0;
      while (written < checksum.length) written += fs.writeSync(fd, checksum, written, checksum.length - written);
      fs.fsyncSync(fd);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });  // a full disk keeps the checkpoints it had, and no partial file
      throw err;
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  });
  syncDirectory(path.dirname(file));
}

/** Makes a rename durable by fsyncing its directory; some platforms cannot open directories, which is harmless. */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // not supported here (e.g. Windows); the data itself was already fsynced
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Reads a whole file into one buffer in chunks (readFileSync refuses files over 2 GiB). */
function readWholeFile(file: string): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const bytes = Buffer.allocUnsafe(size);
    let read = 0;
    while (read < size) {
      const n = fs.readSync(fd, bytes, read, Math.min(READ_CHUNK_BYTES, size - read), read);
      if (n === 0) break;
      read += n;
    }
    return bytes.subarray(0, read);
  } finally {
    fs.closeSync(fd);
  }
}

/** Parses the header, or returns null when it is not valid JSON of the expected shape. */
function tryParseHeader(bytes: Buffer): Header | null {
  if (bytes.length < PREAMBLE_BYTES) return null;
  const headerLength = bytes.readUInt32LE(MAGIC.length + 4);
  if (PREAMBLE_BYTES + headerLength > bytes.length) return null;
  try {
    const header = JSON.parse(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength).toString('utf8')) as Header;
    if (typeof header !== 'object' || header === null || !Array.isArray(header.tensors) || typeof header.dataByteLength !== 'number') return null;
    return header;
  } catch {
    return null;
  }
}

/** Checks one tensor-table row against the data section; returns a description of the problem, or null. */
function entryProblem(entry: TensorEntry, dataByteLength: number): string | null {
  const label = `tensor ${entry.group}/${entry.name}`;
  if (entry.dtype !== 'float32' && entry.dtype !== 'int32') return `${label} has unsupported dtype ${entry.dtype}`;
  if (!Array.isArray(entry.shape) || !entry.shape.every((d) => Number.isInteger(d) && d >= 0)) return `${label} has invalid shape ${JSON.stringify(entry.shape)}`;
  const size = entry.shape.reduce((a, b) => a * b, 1);
  if (entry.byteLength !== size * BYTES_PER_ELEMENT) return `${label} has byteLength ${entry.byteLength}, shape [${entry.shape}] needs ${size * BYTES_PER_ELEMENT}`;
  if (!(Number.isInteger(entry.offset) && entry.offset >= 0 && entry.offset + entry.byteLength <= dataByteLength)) {
    return `${label} lies outside the data section (offset ${entry.offset}, ${entry.byteLength} bytes, data ${dataByteLength} bytes)`;
  }
  return null;
}

/** Builds a tensor from little-endian bytes (copied, so the result does not keep the file buffer alive). */
function tensorFromBytes(bytes: Buffer, entry: TensorEntry): tf.Tensor {
  const copy = new Uint8Array(bytes.length);  // own ArrayBuffer at offset 0, so 4-byte aligned
  copy.set(bytes);
  if (!LITTLE_ENDIAN_HOST) Buffer.from(copy.buffer).swap32();
  const values = entry.dtype === 'float32' ? new Float32Array(copy.buffer) : new Int32Array(copy.buffer);
  return tf.tensor(values, entry.shape, entry.dtype);
}

/** A checkpoint file read whole and verified (magic, version, size, checksum, tensor table), tensors not yet built. */
interface VerifiedFile {
  bytes: Buffer;
  header: Header;
  dataStart: number;   // byte offset of the data section
}

/** Reads and verifies a checkpoint file; throws an error naming the file when it is missing, not a checkpoint, of another version, truncated or corrupt. */
function readVerified(file: string): VerifiedFile {
  if (!fs.existsSync(file)) throw new Error(`checkpoint ${file} does not exist`);
  const bytes = readWholeFile(file);
  const fail = (problem: string): never => {
    throw new Error(`checkpoint ${file} ${problem}`);
  };
  if (bytes.length < MAGIC.length || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) {
    fail('is not an ECT checkpoint (wrong magic bytes at the start of the file)');
  }
  if (bytes.length < PREAMBLE_BYTES + CHECKSUM_BYTES) fail(`is truncated (${bytes.length} bytes, shorter than the fixed parts)`);
  const version = bytes.readUInt32LE(MAGIC.length);
  if (version !== FORMAT_VERSION) fail(`has format version ${version}; this program reads version ${FORMAT_VERSION}`);

  const header = tryParseHeader(bytes);
  const headerLength = bytes.readUInt32LE(MAGIC.length + 4);
  if (header !== null) {
    const expectedLength = PREAMBLE_BYTES + headerLength + header.dataByteLength + CHECKSUM_BYTES;
    if (bytes.length < expectedLength) fail(`is truncated (${bytes.length} bytes, the header describes ${expectedLength})`);
  }
  const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
  const stored = bytes.subarray(bytes.length - CHECKSUM_BYTES);
  const actual = crypto.createHash('sha256').update(body).digest();
  if (!actual.equals(stored)) fail('is corrupt (SHA-256 checksum mismatch) or truncated');
  if (header === null) fail('has an unreadable header');
  const dataStart = PREAMBLE_BYTES + headerLength;
  if (dataStart + header!.dataByteLength !== body.length) fail(`has ${body.length - dataStart} data bytes, the header describes ${header!.dataByteLength}`);
  const seen = new Set<string>();
  for (const entry of header!.tensors) {
    const problem = entryProblem(entry, header!.dataByteLength);
    if (problem !== null) fail(problem);
    const key = `${entry.group}/${entry.name}`;
    if (seen.has(key)) fail(`lists tensor ${key} twice`);
    seen.add(key);
  }
  return { bytes, header: header!, dataStart };
}

/**
 * A checkpoint file read whole and verified once (magic, version, size, checksum, tensor table): its metadata and
 * group names at once, its tensors built on load(), after which the file's bytes are let go. The launcher opens the
 * checkpoint a run resumes from and hands it to the trainer, so the file is read once.
 */
export class OpenedCheckpoint {
  readonly meta: Record<string, unknown>;
  readonly groupNames: string[];
  private verified: VerifiedFile | null;
  private readonly scanned = new Set<string>();   // groups whose float32 values were found finite

  constructor(readonly file: string) {
    this.verified = readVerified(file);
    this.meta = this.verified.header.meta;
    this.groupNames = [...new Set(this.verified.header.tensors.map((entry) => entry.group))];
  }

  /**
   * The first NaN or infinite value among the float32 tensors of `groups` (default: all), read from the file's
   * bytes without building tensors, as a message naming the file and the tensor; null when all are finite.
   */
  nonFiniteProblem(groups: string[] = this.groupNames): string | null {
    const { bytes, header, dataStart } = this.bytes();
    for (const entry of header.tensors) {
      if (entry.dtype !== 'float32' || !groups.includes(entry.group) || this.scanned.has(entry.group)) continue;
      const start = dataStart + entry.offset;
      const copy = new Uint8Array(bytes.subarray(start, start + entry.byteLength));  // own, 4-byte aligned buffer
      if (!LITTLE_ENDIAN_HOST) Buffer.from(copy.buffer).swap32();
      const problem = nonFiniteProblem(this.file, `${entry.group}/${entry.name}`, new Float32Array(copy.buffer));
      if (problem) return problem.message;
    }
    for (const group of groups) this.scanned.add(group);
    return null;
  }

  /** Whether nonFiniteProblem found every float32 value of `group` finite. */
  scannedFinite(group: string): boolean {
    return this.scanned.has(group);
  }

  /**
   * Builds the tensors of `groups` (default: all; groups the file lacks are left out) and lets go of the file's
   * bytes: a checkpoint is loaded once. The caller disposes the tensors (see disposeCheckpoint).
   */
  load(groups: string[] = this.groupNames): Checkpoint {
    const { bytes, header, dataStart } = this.bytes();
    this.verified = null;
    const built: Record<string, Map<string, tf.Tensor>> = {};
    const created: tf.Tensor[] = [];
    try {
      for (const entry of header.tensors) {
        if (!groups.includes(entry.group)) continue;
        const start = dataStart + entry.offset;
        const tensor = tensorFromBytes(bytes.subarray(start, start + entry.byteLength), entry);
        created.push(tensor);
        (built[entry.group] ??= new Map()).set(entry.name, tensor);
      }
    } catch (err) {
      for (const tensor of created) tensor.dispose();
      throw err;
    }
    return { meta: header.meta, groups: built };
  }

  private bytes(): VerifiedFile {
    if (this.verified === null) throw new Error(`checkpoint ${this.file}: its tensors were loaded already; open it again to load them again`);
    return this.verified;
  }
}

/** Reads and verifies a checkpoint file whole (OpenedCheckpoint); throws an error naming the file when it cannot be used. */
export function openCheckpoint(file: string): OpenedCheckpoint {
  return new OpenedCheckpoint(file);
}

/**
 * Loads and verifies a checkpoint. Throws an error naming the file when it is missing, not a checkpoint,
 * of another version, truncated or corrupt. The caller disposes the returned tensors (see disposeCheckpoint).
 */
export function loadCheckpoint(file: string): Checkpoint {
  return openCheckpoint(file).load();
}

/** What loadCheckedCheckpoint requires of a checkpoint's groups. */
export interface GroupChecks {
  load: string[];                                   // the groups to build (others are not)
  required?: string[];                              // groups that must be present (default: all of `load`)
  missing?(present: string[]): string;              // the error when a required group is absent, after the file's name
  shapes?: Map<string, { shape: number[] }>;        // a network's parameters...
  shaped?: string[];                                // ...which each of these groups must match by name and shape
  finite?: string[];                                // groups whose float32 values must all be finite
}

/**
 * A checkpoint's groups as tensors, checked: the required groups present, the shaped ones matching the network's
 * parameters, the finite ones without NaN or infinite values (unless already found finite in the file). On any
 * problem everything built is freed and the error names the file.
 */
export function loadCheckedCheckpoint(source: string | OpenedCheckpoint, checks: GroupChecks): Checkpoint {
  const opened = typeof source === 'string' ? openCheckpoint(source) : source;
  const { file } = opened;
  const absent = (checks.required ?? checks.load).filter((group) => !opened.groupNames.includes(group));
  if (absent.length) {
    throw new Error(checks.missing ? `${file}: ${checks.missing(opened.groupNames)}` : `${file}: checkpoint lacks the ${absent.join(', ')} group${absent.length > 1 ? 's' : ''}`);
  }
  const ckpt = opened.load(checks.load);
  try {
    for (const group of checks.shaped ?? []) if (ckpt.groups[group] && checks.shapes) assertParamsMatch(file, checks.shapes, ckpt.groups[group]);
    const unscanned = (checks.finite ?? []).filter((group) => !opened.scannedFinite(group));
    assertFiniteTensors(file, Object.fromEntries(unscanned.map((group) => [group, ckpt.groups[group]])));
  } catch (err) {
    disposeCheckpoint(ckpt);
    throw err;
  }
  return ckpt;
}

/** How many entries of a float32 array are NaN or infinite, and the first such value. */
export function countNonFinite(values: ArrayLike<number>): { count: number; first: number } {
  let count = 0;
  let first = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v - v !== 0) {   // NaN and +-infinity only
      if (count === 0) first = v;
      count++;
    }
  }
  return { count, first };
}

/** The error for a tensor holding non-finite values, or null. */
function nonFiniteProblem(file: string, label: string, values: ArrayLike<number>): Error | null {
  const { count, first } = countNonFinite(values);
  if (count === 0) return null;
  return new Error(`checkpoint ${file}: tensor ${label} holds ${count} NaN or infinite value${count > 1 ? 's' : ''} of ${values.length} (the first: ${first}); ` +
    'refusing weights that would train and sample only NaN (a diverged run wrote it, or it was edited): use an earlier checkpoint');
}

/** Throws an error naming the file and the first tensor of `groups` (float32) that holds a NaN or infinite value. */
export function assertFiniteTensors(file: string, groups: Record<string, Map<string, tf.Tensor> | undefined>): void {
  for (const [group, members] of Object.entries(groups)) {
    for (const [name, tensor] of members ?? []) {
      if (tensor.dtype !== 'float32') continue;
      const problem = nonFiniteProblem(file, `${group}/${name}`, tensor.dataSync());
      if (problem) throw problem;
    }
  }
}

/**
 * Verifies a whole checkpoint without building its tensors: everything loadCheckpoint checks, and that no
 * float32 tensor holds a NaN or infinite value. Returns the problem as a message naming the file, or null.
 */
export function checkpointProblem(file: string): string | null {
  return verifiedCheckpoint(file).problem;
}

/**
 * A checkpoint opened and found whole and finite (checkpointProblem), or the problem that rules it out: the
 * opened checkpoint is what the launcher hands to the trainer.
 */
export function verifiedCheckpoint(file: string): { opened: OpenedCheckpoint; problem: null } | { opened: null; problem: string } {
  try {
    const opened = openCheckpoint(file);
    const problem = opened.nonFiniteProblem();
    return problem === null ? { opened, problem } : { opened: null, problem };
  } catch (err) {
    return { opened: null, problem: (err as Error).message };
  }
}

/**
 * A checkpoint's metadata alone: reads the fixed preamble and the JSON header, not the tensors (so the
 * checksum is not verified here; loadCheckpoint verifies it when the weights are read).
 */
export function readCheckpointMeta(file: string): Record<string, unknown> {
  if (!fs.existsSync(file)) throw new Error(`checkpoint ${file} does not exist`);
  const fd = fs.openSync(file, 'r');
  try {
    const preamble = Buffer.alloc(PREAMBLE_BYTES);
    if (fs.readSync(fd, preamble, 0, PREAMBLE_BYTES, 0) < PREAMBLE_BYTES || !preamble.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new Error(`checkpoint ${file} is not an ECT checkpoint (wrong magic bytes at the start of the file)`);
    }
    const version = preamble.readUInt32LE(MAGIC.length);
    if (version !== FORMAT_VERSION) throw new Error(`checkpoint ${file} has format version ${version}; this program reads version ${FORMAT_VERSION}`);
    const headerLength = preamble.readUInt32LE(MAGIC.length + 4);
    const bytes = Buffer.alloc(PREAMBLE_BYTES + headerLength);
    preamble.copy(bytes);
    fs.readSync(fd, bytes, PREAMBLE_BYTES, headerLength, PREAMBLE_BYTES);
    const header = tryParseHeader(bytes);
    if (header === null) throw new Error(`checkpoint ${file} has an unreadable header`);
    return header.meta;
  } finally {
    fs.closeSync(fd);
  }
}

/** Frees every tensor of a loaded checkpoint. */
export function disposeCheckpoint(ckpt: Checkpoint): void {
  for (const group of Object.values(ckpt.groups)) for (const tensor of group.values()) tensor.dispose();
}

/** Finished checkpoints in `dir` (ckpt-<iteration>.ckpt; temporary files are ignored), oldest first. */
function listCheckpoints(dir: string): { iteration: number; file: string }[] {
  if (!fs.existsSync(dir)) return [];
  const found: { iteration: number; file: string }[] = [];
  for (const name of fs.readdirSync(dir)) {
    const match = CHECKPOINT_NAME.exec(name);
    if (match !== null) found.push({ iteration: Number(match[1]), file: path.join(dir, name) });
  }
  return found.sort((a, b) => a.iteration - b.iteration);
}

/** The checkpoint files in `dir`, newest (highest iteration) first. */
export function checkpointsNewestFirst(dir: string): string[] {
  return listCheckpoints(dir).reverse().map(({ file }) => file);
}

/** The checkpoint with the highest iteration in `dir`, or null when there is none (or no such directory). */
export function latestCheckpoint(dir: string): string | null {
  const all = listCheckpoints(dir);
  return all.length > 0 ? all[all.length - 1].file : null;
}

/** Deletes all but the `keep` newest checkpoints (by iteration) in `dir`. */
export function pruneCheckpoints(dir: string, keep: number): void {
  if (!(Number.isInteger(keep) && keep >= 0)) throw new Error(`pruneCheckpoints: keep must be an integer >= 0, got ${keep}`);
  const all = listCheckpoints(dir);
  for (const { file } of all.slice(0, Math.max(all.length - keep, 0))) fs.rmSync(file, { force: true });
}

/**
 * Throws an error naming `file` and listing missing, unexpected and wrong-shape parameters when the tensors
 * found in a checkpoint do not match the expected parameters.
 */
export function assertParamsMatch(file: string, expected: Map<string, { shape: number[] }>, found: Map<string, tf.Tensor>): void {
  const missing: string[] = [];
  const wrongShape: string[] = [];
  for (const [name, { shape }] of expected) {
    const tensor = found.get(name);
    if (tensor === undefined) missing.push(name);
    else if (!tf.util.arraysEqual(tensor.shape, shape)) wrongShape.push(`${name} (checkpoint [${tensor.shape}], expected [${shape}])`);
  }
  const unexpected = [...found.keys()].filter((name) => !expected.has(name));
  if (missing.length + unexpected.length + wrongShape.length === 0) return;
  const lines = [`checkpoint ${file} does not match the network's parameters:`];
  const some = (names: string[]) => names.slice(0, LISTED_PARAMETERS).join(', ') + (names.length > LISTED_PARAMETERS ? `, ... (${names.length - LISTED_PARAMETERS} more)` : '');
  if (missing.length > 0) lines.push(`  missing (${missing.length}): ${some(missing)}`);
  if (unexpected.length > 0) lines.push(`  unexpected (${unexpected.length}): ${some(unexpected)}`);
  if (wrongShape.length > 0) lines.push(`  wrong shape (${wrongShape.length}): ${some(wrongShape)}`);
  throw new Error(lines.join('\n'));
}

/** Meta fields of a trainer's checkpoint that only resuming training reads (lib/train/trainer.ts restore). */
const RESUME_ONLY_META = ['optimizerStep', 'loader', 'skippedSteps'];

/**
 * Writes the EMA weights of checkpoint `source` alone to `file` (a quarter of a trainer's checkpoint: no online
 * weights, no optimiser or loader state), with `meta(recorded)` as its metadata (default: the recorded meta without
 * what only resuming reads). Such a checkpoint samples, evaluates, exports and starts a tuning run (--init) like
 * the original; training cannot resume from it. Refuses a source without EMA weights, naming it.
 */
export function writeEmaOnlyCheckpoint(source: string, file: string,
  meta: (recorded: Record<string, unknown>) => Record<string, unknown> = (recorded) => Object.fromEntries(Object.entries(recorded).filter(([k]) => !RESUME_ONLY_META.includes(k)))): void {
  const ckpt = loadCheckedCheckpoint(source, { load: ['ema'], missing: (present) => `checkpoint lacks the ema group (it holds ${present.join(', ') || 'no tensors'})` });
  try {
    saveCheckpoint(file, { meta: { ...meta(ckpt.meta), emaOnly: true }, groups: { ema: ckpt.groups.ema } });
  } finally {
    disposeCheckpoint(ckpt);
  }
}
