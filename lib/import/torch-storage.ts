/**
 * PyTorch tensors in pickles: the allowlisted torch globals (tensor and parameter rebuilders, storage types,
 * dtypes) and torch's legacy serialization stream, which `torch.storage._load_from_bytes` reads from the
 * bytes object that a pickled storage becomes (and which `torch.save(..., _use_new_zipfile_serialization=False)`
 * writes as a whole file). Tensors become TorchTensor records; their values are read out on demand.
 */
import * as os from 'node:os';
import {
  MAX_STREAM_DEPTH, PickleError, PyCallable, describeForeignBytes, describeValue, functionGlobal, globalTable, plainClassGlobal, readBytes,
  unpickleAt,
  type GlobalTable, type PickleContext, type PyTuple,
} from './pickle';
import { halfToFloat } from './float16';
import { NUMPY_GLOBALS, PYTHON_GLOBALS } from './python-globals';

/** Element types of torch storages and tensors this reader handles. */
export const TORCH_DTYPES = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'] as const;
export type TorchDtype = (typeof TORCH_DTYPES)[number];

/** Bytes per element. */
export const DTYPE_BYTES: Record<TorchDtype, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

/** The legacy storage class names (torch.FloatStorage, ...) and their element types. */
const STORAGE_CLASSES: Record<string, TorchDtype> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8', ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

/** The first pickle of a legacy torch stream: this number. */
export const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_MAGIC_PREFIX = [0x80, 0x02, 0x8a, 0x0a];
/** The second: the stream format's version. */
const LEGACY_PROTOCOL_VERSION = 1001;

/** A storage class global (torch.FloatStorage, torch.UntypedStorage): names the element type of a storage. */
export class TorchStorageType {
  constructor(readonly qualifiedName: string, readonly dtype: TorchDtype) {}
}

/** A torch dtype global (torch.float32, ...), as _rebuild_tensor_v3 receives it. */
export class TorchDtypeMarker {
  constructor(readonly qualifiedName: string, readonly dtype: TorchDtype) {}
}

/** The bytes behind a root storage and every view of it, filled when the stream's data section is read. */
class StorageData {
  bytes: Uint8Array = new Uint8Array(0);
  filled = false;
}

/**
 * A storage: a flat run of little-endian elements. `bytes` may be an unaligned view into the file; read
 * values through tensorValues(), which copies.
 */
export class TorchStorage {
  constructor(
    readonly dtype: TorchDtype,
    readonly numel: number,
    readonly key: string,
    readonly location: string,
    private readonly data = new StorageData(),
    private readonly byteOffset = 0,
  ) {}

  /** This storage's bytes (empty until the data section is read). */
  get bytes(): Uint8Array {
    return this.data.bytes.subarray(this.byteOffset, this.byteOffset + this.numel * DTYPE_BYTES[this.dtype]);
  }

  get filled(): boolean {
    return this.data.filled;
  }

  /** Sets the bytes of a root storage (views and retyped storages see them too). */
  fill(bytes: Uint8Array): void {
    this.data.bytes = bytes;
    this.data.filled = true;
  }

  /** `numel` elements of `dtype` from byte `byteOffset` of this storage, sharing its bytes. */
  view(dtype: TorchDtype, numel: number, key: string, byteOffset: number): TorchStorage {
    return new TorchStorage(dtype, numel, key, this.location, this.data, this.byteOffset + byteOffset);
  }
}

/** A tensor (or Parameter): a view of a storage with a shape, strides (in elements) and an element offset. */
export class TorchTensor {
  constructor(
    readonly storage: TorchStorage,
    readonly dtype: TorchDtype,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    readonly storageOffset: number,
    readonly requiresGrad: boolean,
    readonly isParameter: boolean,
  ) {}

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** The same tensor marked as a Parameter. */
  asParameter(requiresGrad: boolean): TorchTensor {
    return new TorchTensor(this.storage, this.dtype, this.shape, this.stride, this.storageOffset, requiresGrad, true);
  }
}

/** Largest tensor read out, in bytes (a hostile shape with zero strides must not exhaust memory). */
export const MAX_TENSOR_BYTES = 2 ** 31 - 1;

function checkLittleEndianHost(): void {
  if (os.endianness() !== 'LE') throw new Error('reading torch storages needs a little-endian machine');
}

/** The tensor's elements in row-major order as raw little-endian bytes (a fresh, aligned copy). */
export function tensorBytes(tensor: TorchTensor): Uint8Array {
  const size = DTYPE_BYTES[tensor.dtype];
  const numel = tensor.numel;
  if (numel * size > MAX_TENSOR_BYTES) throw new Error(`tensor of shape [${tensor.shape}] is larger than ${MAX_TENSOR_BYTES} bytes`);
  const source = tensor.storage.bytes;
  const out = new Uint8Array(numel * size);
  if (numel === 0) return out;
  if (isRowMajor(tensor.shape, tensor.stride)) {
    out.set(source.subarray(tensor.storageOffset * size, (tensor.storageOffset + numel) * size));
    return out;
  }
  // walk the indices in row-major order like an odometer, tracking the storage element of each
  const rank = tensor.shape.length;
  const index = new Array<number>(rank).fill(0);
  let element = tensor.storageOffset;
  for (let n = 0; n < numel; n++) {
    out.set(source.subarray(element * size, element * size + size), n * size);
    for (let d = rank - 1; d >= 0; d--) {
      index[d]++;
      element += tensor.stride[d];
      if (index[d] < tensor.shape[d]) break;
      element -= tensor.stride[d] * tensor.shape[d];
      index[d] = 0;
    }
  }
  return out;
}

/** True when the strides are those of a contiguous row-major array of this shape (size-1 dims may differ). */
function isRowMajor(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d];
  }
  return true;
}

/** Values of each element type: floats as Float32Array/Float64Array, int64 as BigInt64Array, bool as 0/1 bytes. */
export type TensorValues = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/**
 * The tensor's values in row-major order. float16 and bfloat16 are converted to float32 exactly (every
 * half value is a float32); the raw halves are in tensorBytes().
 */
export function tensorValues(tensor: TorchTensor): TensorValues {
  return valuesOfBytes(tensor.dtype, tensorBytes(tensor));
}

/**
 * Little-endian element bytes of a dtype as values (the one conversion, for torch tensors and safetensors alike):
 * float16 and bfloat16 become float32 exactly; uint8 and bool are the bytes themselves. `bytes` must start at
 * offset 0 of its own buffer.
 */
export function valuesOfBytes(dtype: TorchDtype, bytes: Uint8Array): TensorValues {
  checkLittleEndianHost();
  const buffer = bytes.buffer;
  switch (dtype) {
    case 'float32': return new Float32Array(buffer);
    case 'float64': return new Float64Array(buffer);
    case 'int64': return new BigInt64Array(buffer);
    case 'int32': return new Int32Array(buffer);
    case 'int16': return new Int16Array(buffer);
    case 'int8': return new Int8Array(buffer);
    case 'uint8': case 'bool': return bytes;
    case 'float16': return Float32Array.from(new Uint16Array(buffer), halfToFloat);
    case 'bfloat16': return new Float32Array(Uint32Array.from(new Uint16Array(buffer), (h) => h << 16).buffer);
  }
}

/** A non-negative integer (a size, stride, offset or count). */
const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;

/**
 * Checks a tensor's geometry against its storage when it is made, before any value is read, so reading it out can
 * never go out of bounds nor cost more than its storage: strides are positive along every axis longer than 1 (a
 * zero stride repeats one element over a shape of any size, a negative one is not torch's), and a tensor holds no
 * more elements than its storage (views that overlap themselves are not weights).
 */
function checkTensorGeometry(storage: TorchStorage, shape: unknown, stride: unknown, offset: unknown, context: PickleContext): void {
  if (!Array.isArray(shape) || !shape.every(isCount)) context.fail(`tensor with a shape that is not a tuple of sizes (${describeValue(shape)})`);
  if (!Array.isArray(stride) || stride.length !== shape.length || !stride.every(isCount)) context.fail(`tensor of shape [${shape}] with strides that do not fit it (sizes >= 0, one per axis)`);
  if (!isCount(offset)) context.fail(`tensor with a storage offset that is a ${describeValue(offset)}`);
  if (shape.some((size) => size === 0)) return;
  if (shape.some((size, d) => size > 1 && stride[d] === 0)) context.fail(`tensor of shape [${shape}] with a zero stride ([${stride}]): one element repeated, not weights`);
  const numel = shape.reduce((product: number, size: number) => product * size, 1);
  if (numel > storage.numel) context.fail(`tensor of shape [${shape}] has ${numel} elements, more than its storage's ${storage.numel}`);
  const last = offset + shape.reduce((sum: number, size: number, d: number) => sum + (size - 1) * stride[d], 0);
  if (last >= storage.numel) context.fail(`tensor of shape [${shape}], strides [${stride}] and offset ${offset} reaches element ${last} of a storage of ${storage.numel}`);
}

/** torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[, metadata]). */
function rebuildTensorV2(args: PyTuple, context: PickleContext): TorchTensor {
  const [storage, offset, shape, stride, requiresGrad] = args;
  if (!(storage instanceof TorchStorage)) context.fail(`_rebuild_tensor_v2 with a ${describeValue(storage)} for its storage`);
  checkTensorGeometry(storage, shape, stride, offset, context);
  return new TorchTensor(storage, storage.dtype, shape as number[], stride as number[], offset as number, requiresGrad === true, false);
}

/** torch._utils._rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata]): an untyped storage seen as `dtype`. */
function rebuildTensorV3(args: PyTuple, context: PickleContext): TorchTensor {
  const [storage, offset, shape, stride, requiresGrad, , dtype] = args;
  if (!(storage instanceof TorchStorage)) context.fail(`_rebuild_tensor_v3 with a ${describeValue(storage)} for its storage`);
  if (!(dtype instanceof TorchDtypeMarker)) context.fail(`_rebuild_tensor_v3 with a ${describeValue(dtype)} for its dtype`);
  const typed = retypeStorage(storage, dtype.dtype, context);
  checkTensorGeometry(typed, shape, stride, offset, context);
  return new TorchTensor(typed, dtype.dtype, shape as number[], stride as number[], offset as number, requiresGrad === true, false);
}

/** An untyped (byte) storage seen as elements of `dtype`, sharing its bytes once they are read. */
function retypeStorage(storage: TorchStorage, dtype: TorchDtype, context: PickleContext): TorchStorage {
  if (storage.dtype === dtype) return storage;
  if (storage.dtype !== 'uint8' || storage.numel % DTYPE_BYTES[dtype] !== 0) context.fail(`a ${storage.dtype} storage cannot be read as ${dtype}`);
  return storage.view(dtype, storage.numel / DTYPE_BYTES[dtype], storage.key, 0);
}

/** torch._utils._rebuild_parameter(data, requires_grad, backward_hooks) and the _with_state variant. */
function rebuildParameter(args: PyTuple, context: PickleContext): TorchTensor {
  const [data, requiresGrad] = args;
  if (!(data instanceof TorchTensor)) context.fail(`_rebuild_parameter with a ${describeValue(data)} for its data`);
  return data.asParameter(requiresGrad === true);
}

/** torch._tensor._rebuild_from_type_v2(func, type, args, state): a tensor pickled through its subclass path. */
function rebuildFromType(args: PyTuple, context: PickleContext): unknown {
  const [func, type, funcArgs] = args;
  if (!(type instanceof PyCallable) || !['torch.Tensor', 'torch.nn.parameter.Parameter'].includes(type.qualifiedName)) {
    context.fail(`_rebuild_from_type_v2 for a ${describeValue(type)}, not a tensor`);
  }
  if (!(func instanceof PyCallable) || !func.handlers.call || !Array.isArray(funcArgs)) context.fail('_rebuild_from_type_v2 without a rebuild function and its arguments');
  const tensor = func.handlers.call(funcArgs, context);
  return type.qualifiedName === 'torch.nn.parameter.Parameter' && tensor instanceof TorchTensor ? tensor.asParameter(tensor.requiresGrad) : tensor;
}

/** torch.storage._load_from_bytes(b): the legacy torch stream inside a bytes object (one storage, normally). */
function loadFromBytes(args: PyTuple, context: PickleContext): unknown {
  const [bytes] = args;
  if (!(bytes instanceof Uint8Array)) context.fail(`_load_from_bytes with a ${describeValue(bytes)}`);
  if (context.depth + 1 >= MAX_STREAM_DEPTH) context.fail('a torch stream nested inside another torch stream');
  try {
    return readLegacyTorchStream(bytes, context.source, context.globals, context.depth + 1);
  } catch (error) {
    if (error instanceof PickleError) context.fail(`in a torch storage stream: ${error.detail}`);
    throw error;
  }
}

/** torch.device('cpu'): its name. */
function device(args: PyTuple, context: PickleContext): string {
  const [type, index] = args;
  if (typeof type !== 'string') context.fail(`torch.device of a ${describeValue(type)}`);
  return typeof index === 'number' ? `${type}:${index}` : type;
}

/** Entries for the storage classes under the names torch versions pickle them by. */
function storageTypeGlobals(): [string, unknown][] {
  const entries: [string, unknown][] = Object.entries(STORAGE_CLASSES).map(([name, dtype]) => [`torch.${name}`, new TorchStorageType(`torch.${name}`, dtype)]);
  for (const name of ['torch.UntypedStorage', 'torch.storage.UntypedStorage', 'torch.storage._UntypedStorage']) {
    entries.push([name, new TorchStorageType(name, 'uint8')]);
  }
  return entries;
}

/** Entries for torch.float32 and the other dtype globals. */
function dtypeGlobals(): [string, unknown][] {
  const names: Record<string, TorchDtype> = { float32: 'float32', float: 'float32', float64: 'float64', double: 'float64', float16: 'float16', half: 'float16', bfloat16: 'bfloat16', int64: 'int64', long: 'int64', int32: 'int32', int: 'int32', int16: 'int16', int8: 'int8', uint8: 'uint8', bool: 'bool' };
  return Object.entries(names).map(([name, dtype]) => [`torch.${name}`, new TorchDtypeMarker(`torch.${name}`, dtype)]);
}

/** The allowlisted torch globals. */
export const TORCH_GLOBALS: ReadonlyArray<readonly [string, unknown]> = [
  functionGlobal('torch._utils._rebuild_tensor_v2', rebuildTensorV2),
  functionGlobal('torch._utils._rebuild_tensor_v3', rebuildTensorV3),
  functionGlobal('torch._utils._rebuild_parameter', rebuildParameter),
  functionGlobal('torch._utils._rebuild_parameter_with_state', rebuildParameter),
  functionGlobal('torch._tensor._rebuild_from_type_v2', rebuildFromType),
  functionGlobal('torch.storage._load_from_bytes', loadFromBytes),
  functionGlobal('torch.device', device),
  ['torch.Tensor', new PyCallable('torch.Tensor', {})],
  ['torch.nn.parameter.Parameter', new PyCallable('torch.nn.parameter.Parameter', {})],
  plainClassGlobal('torch.nn.modules.container.ModuleDict'),
  plainClassGlobal('torch.nn.modules.container.ModuleList'),
  plainClassGlobal('torch.nn.modules.container.Sequential'),
  ...storageTypeGlobals(),
  ...dtypeGlobals(),
];

/** The allowlist of a torch legacy file: Python basics, numpy scalars and torch. */
export const TORCH_FILE_GLOBALS: GlobalTable = globalTable(PYTHON_GLOBALS, NUMPY_GLOBALS, TORCH_GLOBALS);

/**
 * Answers the object pickle's persistent ids, ('storage', storage type, key, location, numel[, view]),
 * with one TorchStorage per key (the same object for every tensor that shares it).
 */
class StorageTable {
  readonly byKey = new Map<string, TorchStorage>();

  /** `streamBytes`: the length of the stream, which holds every storage's data, so no storage is larger. */
  constructor(private readonly streamBytes: number) {}

  load(pid: unknown, context: PickleContext): TorchStorage {
    if (!Array.isArray(pid) || pid[0] !== 'storage') context.fail(`persistent id ${describeValue(pid)} is not a torch storage record`);
    const [, type, key, location, numel, view] = pid;
    if (!(type instanceof TorchStorageType)) context.fail(`storage record with a ${describeValue(type)} for its type`);
    if (typeof key !== 'string' || !isCount(numel)) context.fail('storage record without a key and an element count');
    if (numel * DTYPE_BYTES[type.dtype] > this.streamBytes) {
      context.fail(`storage ${key} declares ${numel} ${type.dtype} elements (${numel * DTYPE_BYTES[type.dtype]} bytes), more than the ${this.streamBytes} bytes of the stream that holds it`);
    }
    const root = this.root(type, key, numel, location);
    if (root.dtype !== type.dtype || root.numel !== numel) context.fail(`storage ${key} is recorded twice, as ${root.numel} ${root.dtype} and as ${numel} ${type.dtype}`);
    return view === undefined || view === null ? root : this.view(type, root, view, context);
  }

  /** The root storage of this key, made at its first mention. */
  private root(type: TorchStorageType, key: string, numel: number, location: unknown): TorchStorage {
    let storage = this.byKey.get(key);
    if (!storage) {
      storage = new TorchStorage(type.dtype, numel, key, typeof location === 'string' ? location : String(location));
      this.byKey.set(key, storage);
    }
    return storage;
  }

  /** Old torch's storage views: (view key, element offset, element count) of the root storage. */
  private view(type: TorchStorageType, root: TorchStorage, view: unknown, context: PickleContext): TorchStorage {
    if (!Array.isArray(view) || typeof view[0] !== 'string' || !isCount(view[1]) || !isCount(view[2])) context.fail('storage view record that is not (key, offset, size)');
    if (view[1] + view[2] > root.numel) context.fail(`storage view ${view[0]} runs past its root storage ${root.key}`);
    return root.view(type.dtype, view[2], view[0], view[1] * DTYPE_BYTES[root.dtype]);
  }
}

/** One pickle of the stream, from `pos`. */
function streamPickle(bytes: Uint8Array, pos: number, source: string, globals: GlobalTable, depth: number,
  persistentLoad?: (pid: unknown, context: PickleContext) => unknown) {
  return unpickleAt(bytes, { source, globals, start: pos, depth, persistentLoad });
}

/**
 * Reads torch's legacy stream: the magic number, the format version and the system info (three small
 * pickles), the object pickle whose storages are persistent ids, the pickled list of storage keys, then
 * each storage's int64 element count and raw little-endian data.
 */
export function readLegacyTorchStream(bytes: Uint8Array, source: string, globals: GlobalTable = TORCH_FILE_GLOBALS, depth = 0): unknown {
  const fail = (detail: string): never => {
    throw new PickleError(source, detail);
  };
  // the magic number's pickle is always the same 16 bytes: PROTO 2, LONG1 of 10 bytes, STOP
  if (!LEGACY_MAGIC_PREFIX.every((byte, i) => bytes[i] === byte)) {
    const what = bytes[0] === 0x80 ? 'a pickle, but not one that starts with torch\'s magic number' : describeForeignBytes(bytes);
    fail(`not a torch legacy stream: ${what}`);
  }
  const magic = streamPickle(bytes, 0, source, globals, depth);
  if (magic.value !== LEGACY_MAGIC) fail('not a torch legacy stream: it does not start with torch\'s magic number');
  const version = streamPickle(bytes, magic.end, source, globals, depth);
  if (version.value !== LEGACY_PROTOCOL_VERSION) fail(`torch legacy stream of format version ${String(version.value)}, not ${LEGACY_PROTOCOL_VERSION}`);
  const systemInfo = streamPickle(bytes, version.end, source, globals, depth);
  if (!(systemInfo.value instanceof Map) || systemInfo.value.get('little_endian') !== true) fail('torch legacy stream that is not little-endian');

  const storages = new StorageTable(bytes.length);
  const object = streamPickle(bytes, systemInfo.end, source, globals, depth, (pid, context) => storages.load(pid, context));
  const keys = streamPickle(bytes, object.end, source, globals, depth);
  if (!Array.isArray(keys.value) || !keys.value.every((key) => typeof key === 'string')) fail('torch legacy stream whose storage key list is not a list of strings');

  let pos = keys.end;
  for (const key of keys.value as string[]) {
    const storage = storages.byKey.get(key) ?? fail(`torch legacy stream lists storage ${key}, which no tensor uses`);
    if (bytes.length - pos < 8) fail(`truncated: unexpected end of data at byte ${bytes.length}: the element count of storage ${key} is at byte ${pos}`);
    const count = new DataView(bytes.buffer, bytes.byteOffset + pos, 8).getBigInt64(0, true);
    if (count !== BigInt(storage.numel)) fail(`storage ${key} holds ${count} elements, its record says ${storage.numel}`);
    const length = storage.numel * DTYPE_BYTES[storage.dtype];
    if (bytes.length - pos - 8 < length) fail(`truncated: unexpected end of data at byte ${bytes.length}: storage ${key} needs ${length} bytes from byte ${pos + 8}`);
    storage.fill(bytes.subarray(pos + 8, pos + 8 + length));
    pos += 8 + length;
  }
  const empty = [...storages.byKey.values()].find((storage) => !storage.filled);
  if (empty) fail(`torch legacy stream has no data for storage ${empty.key}`);
  return object.value;
}

/** Reads a whole file that torch.save wrote in its legacy format (`_use_new_zipfile_serialization=False`). */
export function readLegacyTorchFile(file: string): unknown {
  return readLegacyTorchStream(readBytes(file), file);
}
