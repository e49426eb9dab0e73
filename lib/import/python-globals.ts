/**
 * The allowlisted Python and numpy globals that EDM pickles use: OrderedDict, sets, bytes, copyreg's
 * object reconstructors, and numpy scalars and dtypes (under both numpy.core and numpy._core names).
 * Each builds plain data from its arguments.
 */
import {
  PyCallable, describeValue, functionGlobal, toNumberIfSafe, type Buildable, type PickleContext, type PyDict, type PyTuple,
} from './pickle';
import { halfToFloat } from './float16';

/** A numpy dtype: its kind and size (as in 'f8') and its byte order ('<', '>', '|' or '='). */
export class NumpyDtype implements Buildable {
  byteOrder = '=';
  constructor(readonly code: string) {}

  /** numpy's name for it: float64, int64, bool, ... (undefined for kinds this reader does not decode). */
  get name(): string | undefined {
    return NUMPY_NAMES[this.code];
  }

  get itemSize(): number {
    return Number(this.code.slice(1));
  }

  /** BUILD gives the dtype's state tuple: (version, byte order, subarray, names, fields, size, alignment, flags). */
  build(state: unknown, context: PickleContext): void {
    if (!Array.isArray(state) || typeof state[1] !== 'string') context.fail(`numpy dtype '${this.code}' has a state that is a ${describeValue(state)}, not numpy's state tuple`);
    this.byteOrder = state[1];
  }

  /** True when the values are stored big-endian. */
  get bigEndian(): boolean {
    return this.byteOrder === '>' || (this.byteOrder === '!');
  }
}

const NUMPY_NAMES: Record<string, string> = {
  f2: 'float16', f4: 'float32', f8: 'float64', i1: 'int8', i2: 'int16', i4: 'int32', i8: 'int64',
  u1: 'uint8', u2: 'uint16', u4: 'uint32', u8: 'uint64', b1: 'bool',
};

/** numpy.core.multiarray.scalar(dtype, bytes): one value of a numpy scalar type, as a number, bigint or boolean. */
function numpyScalar(args: PyTuple, context: PickleContext): number | bigint | boolean {
  const [dtype, data] = args;
  if (!(dtype instanceof NumpyDtype)) context.fail(`numpy scalar with a ${describeValue(dtype)} for its dtype`);
  if (!(data instanceof Uint8Array)) context.fail(`numpy scalar of dtype '${dtype.code}' with ${describeValue(data)} for its bytes`);
  const name = dtype.name;
  if (name === undefined) context.fail(`numpy scalar of dtype '${dtype.code}' is not a kind this reader decodes (floats, ints, bools)`);
  if (data.length !== dtype.itemSize) context.fail(`numpy scalar of dtype ${name} has ${data.length} bytes, not ${dtype.itemSize}`);
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  const little = !dtype.bigEndian;
  switch (name) {
    case 'float16': return halfToFloat(view.getUint16(0, little));
    case 'float32': return view.getFloat32(0, little);
    case 'float64': return view.getFloat64(0, little);
    case 'int8': return view.getInt8(0);
    case 'int16': return view.getInt16(0, little);
    case 'int32': return view.getInt32(0, little);
    case 'int64': return toNumberIfSafe(view.getBigInt64(0, little));
    case 'uint8': return view.getUint8(0);
    case 'uint16': return view.getUint16(0, little);
    case 'uint32': return view.getUint32(0, little);
    case 'uint64': return toNumberIfSafe(view.getBigUint64(0, little));
    default: return view.getUint8(0) !== 0; // bool
  }
}

/** numpy.dtype(code, align, copy): the dtype; its byte order follows in BUILD. */
function numpyDtype(args: PyTuple, context: PickleContext): NumpyDtype {
  const code = args[0];
  if (typeof code !== 'string' || !/^[a-zA-Z]\d*$/.test(code)) context.fail(`numpy dtype with a ${describeValue(code)} for its type code`);
  return new NumpyDtype(code);
}

/** collections.OrderedDict(), optionally from a list of (key, value) pairs; its items follow in SETITEMS. */
function orderedDict(args: PyTuple, context: PickleContext): PyDict {
  const dict: PyDict = new Map();
  if (args.length === 0) return dict;
  const pairs = args[0];
  if (!Array.isArray(pairs)) context.fail(`OrderedDict from a ${describeValue(pairs)}`);
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2) context.fail('OrderedDict from items that are not (key, value) pairs');
    dict.set(pair[0], pair[1]);
  }
  return dict;
}

/** set(items) and frozenset(items), as protocol 2 writes them (protocol 4 has its own opcodes). */
function makeSet(frozen: boolean) {
  return (args: PyTuple, context: PickleContext): Set<unknown> => {
    const items = args.length === 0 ? [] : args[0];
    if (!Array.isArray(items)) context.fail(`set from a ${describeValue(items)}`);
    const set = new Set(items);
    return frozen ? Object.freeze(set) : set;
  };
}

/** A str whose characters are all below 256 as the bytes they stand for (Python's latin-1 codec). */
function latin1Bytes(text: string, context: PickleContext): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff) context.fail(`latin-1 bytes with a character U+${code.toString(16)} above U+00FF`);
    bytes[i] = code;
  }
  return bytes;
}

const LATIN1_NAMES = ['latin1', 'latin-1', 'latin_1', 'iso-8859-1', 'iso8859-1'];

/** _codecs.encode(text, 'latin1'): how protocol 2 pickles a bytes object in Python 3. */
function codecsEncode(args: PyTuple, context: PickleContext): Uint8Array {
  const [text, encoding] = args;
  if (typeof text !== 'string' || typeof encoding !== 'string' || !LATIN1_NAMES.includes(encoding.toLowerCase())) {
    context.fail(`_codecs.encode is allowed only for latin-1 text (protocol 2's bytes), not (${args.map(describeValue).join(', ')})`);
  }
  return latin1Bytes(text, context);
}

/** bytes() and bytearray(): empty, from bytes, or from latin-1 text and its encoding (protocol 2). */
function bytesFrom(args: PyTuple, context: PickleContext): Uint8Array {
  if (args.length === 0) return new Uint8Array(0);
  if (args[0] instanceof Uint8Array) return args[0].slice();
  if (typeof args[0] === 'string' && args.length === 2) return codecsEncode(args, context);
  return context.fail(`bytes from (${args.map(describeValue).join(', ')})`);
}

/** A class argument of copyreg's reconstructors: must be an allowlisted class. */
function classArgument(cls: unknown, context: PickleContext): PyCallable {
  if (!(cls instanceof PyCallable) || !cls.handlers.instantiate) context.fail(`an object of ${describeValue(cls)}, which is not an allowlisted class`);
  return cls;
}

/** copyreg._reconstructor(cls, base, state): `base.__new__(cls)` for protocol 0/1 style object pickles. */
function reconstructor(args: PyTuple, context: PickleContext): unknown {
  const [cls, base, state] = args;
  if (!(base instanceof PyCallable) || base.qualifiedName !== 'builtins.object' || state !== null) {
    context.fail(`copyreg._reconstructor with base ${describeValue(base)} is not supported (only object)`);
  }
  return classArgument(cls, context).handlers.instantiate!([], context);
}

/** copyreg.__newobj__(cls, *args). */
function newObject(args: PyTuple, context: PickleContext): unknown {
  return classArgument(args[0], context).handlers.instantiate!(args.slice(1), context);
}

/** A dict subclass whose instances read as dicts (EasyDict: dnnlib's attribute dict). */
function dictClass(qualifiedName: string): [string, PyCallable] {
  return [qualifiedName, new PyCallable(qualifiedName, { instantiate: () => new Map(), call: (args, context) => orderedDict(args, context) })];
}

/** The allowlisted builtins, collections, copyreg and codecs globals. */
export const PYTHON_GLOBALS: ReadonlyArray<readonly [string, unknown]> = [
  functionGlobal('collections.OrderedDict', orderedDict),
  functionGlobal('builtins.set', makeSet(false)),
  functionGlobal('builtins.frozenset', makeSet(true)),
  functionGlobal('builtins.bytes', bytesFrom),
  functionGlobal('builtins.bytearray', bytesFrom),
  ['builtins.object', new PyCallable('builtins.object', {})],
  functionGlobal('_codecs.encode', codecsEncode),
  functionGlobal('copyreg._reconstructor', reconstructor),
  functionGlobal('copyreg.__newobj__', newObject),
  dictClass('dnnlib.util.EasyDict'),
];

/** The allowlisted numpy globals: scalars and dtypes, under numpy 1's and numpy 2's module names. */
export const NUMPY_GLOBALS: ReadonlyArray<readonly [string, unknown]> = [
  functionGlobal('numpy.dtype', numpyDtype),
  functionGlobal('numpy.core.multiarray.scalar', numpyScalar),
  functionGlobal('numpy._core.multiarray.scalar', numpyScalar),
];
