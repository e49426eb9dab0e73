/**
 * A Python pickle reader that never executes anything: a stack machine for the opcodes of protocols 2-5
 * whose globals resolve only through a fixed table (an allowlist) of TypeScript functions that build plain
 * data. Used by the EDM pickle and torch storage readers beside it.
 */
import { readFileSync } from 'node:fs';

/** A pickled dict (and OrderedDict): insertion order is kept, keys compare as JavaScript values. */
export type PyDict = Map<unknown, unknown>;

/** A pickled tuple: a frozen array (lists are ordinary arrays). */
export type PyTuple = readonly unknown[];

/** An error that names the file (or the stream inside it) and what is wrong with it. */
export class PickleError extends Error {
  constructor(readonly source: string, readonly detail: string) {
    super(`\`${source}\`: ${detail}`);
    this.name = 'PickleError';
  }
}

/** What an allowlisted global gets besides its arguments: where it is read from, to name in errors. */
export interface PickleContext {
  readonly source: string;
  /** the globals table of the pickle being read (a global that reads a nested stream reuses it) */
  readonly globals: GlobalTable;
  /** how many streams deep this pickle sits (0 for the file itself) */
  readonly depth: number;
  fail(detail: string): never;
}

/**
 * An allowlisted callable global (a function or a class). `call` answers REDUCE (`f(*args)`); `instantiate`
 * answers NEWOBJ and copyreg's reconstructors (`cls.__new__(cls, *args)`). Neither runs pickled code: each
 * builds plain data from its arguments or refuses them.
 */
export class PyCallable {
  constructor(
    readonly qualifiedName: string,
    readonly handlers: {
      call?: (args: PyTuple, context: PickleContext) => unknown;
      instantiate?: (args: PyTuple, context: PickleContext) => unknown;
    },
  ) {}
}

/** An instance of an allowlisted class that has no reader of its own: its class name and pickled state. */
export class PyObject {
  /** the attributes BUILD set (the object's __dict__) */
  readonly state: PyDict = new Map();
  constructor(readonly className: string) {}
}

/** A value that BUILD may update in its own way (a numpy dtype takes its byte order from it). */
export interface Buildable {
  build(state: unknown, context: PickleContext): void;
}

/** The allowlist: `module.name` -> what GLOBAL pushes (a PyCallable, or a marker such as a storage type). */
export type GlobalTable = ReadonlyMap<string, unknown>;

/** Options of one pickle read. */
export interface UnpickleOptions {
  /** names the file (or the stream inside it) in every error */
  source: string;
  globals: GlobalTable;
  /** answers BINPERSID/PERSID; without it a persistent id is refused */
  persistentLoad?: (pid: unknown, context: PickleContext) => unknown;
  /** byte offset where the pickle starts (streams hold several pickles back to back) */
  start?: number;
  depth?: number;
}

/** Protocols this reader knows (EDM pickles are 2 to 4; torch's storage streams are 2). */
export const PICKLE_PROTOCOLS = [2, 3, 4, 5] as const;

/** Deepest nesting of streams inside bytes objects (a snapshot holds storage streams, which hold nothing). */
export const MAX_STREAM_DEPTH = 2;

/** Opcode byte -> name, for reading and for naming an unsupported opcode. */
const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID',
  0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT',
  0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT',
  0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT', 0x80: 'PROTO',
  0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3',
  0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS',
  0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

/** Python 2 module names that Python 3 writes into protocol-2 pickles, mapped back as Python's reader does. */
const PYTHON2_MODULES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

const UTF8 = new TextDecoder('utf-8');

/** A cursor over the bytes that turns running out of data into a 'truncated' error. */
class ByteReader {
  pos: number;
  /** the opcode being read, for error messages */
  opcode = '';
  opcodeAt = 0;

  constructor(readonly bytes: Uint8Array, start: number, readonly fail: (detail: string) => never) {
    this.pos = start;
  }

  take(length: number): Uint8Array {
    if (length > this.bytes.length - this.pos) {
      this.fail(`truncated: unexpected end of data at byte ${this.bytes.length}: ${this.opcode} at byte ${this.opcodeAt} `
        + `needs ${length} bytes from byte ${this.pos}, only ${this.bytes.length - this.pos} are left`);
    }
    const view = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return view;
  }

  u8(): number {
    return this.take(1)[0];
  }

  u16(): number {
    const b = this.take(2);
    return b[0] | (b[1] << 8);
  }

  u32(): number {
    const b = this.take(4);
    return (b[0] | (b[1] << 8) | (b[2] << 16)) + b[3] * 0x1000000;
  }

  i32(): number {
    const b = this.take(4);
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24);
  }

  /** An unsigned 64-bit length; anything past the end of the data is reported as truncation by take(). */
  u64(): number {
    const low = this.u32();
    const high = this.u32();
    return high >= 0x200000 ? Number.MAX_SAFE_INTEGER : high * 0x100000000 + low;
  }

  f64BigEndian(): number {
    const b = this.take(8);
    return new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, false);
  }

  /** A newline-terminated text argument (GLOBAL, PUT, GET, PERSID). */
  line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) this.fail(`truncated: unexpected end of data at byte ${this.bytes.length}: ${this.opcode} at byte ${this.opcodeAt} has no end of line`);
    const text = UTF8.decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return text;
  }
}

/** A little-endian two's-complement integer of any length (LONG1, LONG4): a number when exact, else a bigint. */
export function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  // through a hex string: linear in the length (shifting a growing bigint byte by byte is quadratic)
  let hex = '';
  for (let i = bytes.length - 1; i >= 0; i--) hex += bytes[i].toString(16).padStart(2, '0');
  let value = BigInt(`0x${hex}`);
  if (bytes[bytes.length - 1] & 0x80) value -= 1n << BigInt(8 * bytes.length);
  return toNumberIfSafe(value);
}

/** Longest LONG4 integer read, in bytes (EDM pickles hold none; a hostile one must not cost much). */
export const MAX_LONG_BYTES = 1 << 16;

/** A bigint as a number when the number is exact. */
export function toNumberIfSafe(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/** A short description of a value's Python type, for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return 'None';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  if (typeof value === 'bigint') return 'int';
  if (typeof value === 'string') return 'str';
  if (value instanceof Uint8Array) return 'bytes';
  if (Array.isArray(value)) return Object.isFrozen(value) ? 'tuple' : 'list';
  if (value instanceof Map) return 'dict';
  if (value instanceof Set) return 'set';
  if (value instanceof PyCallable) return `global ${value.qualifiedName}`;
  if (value instanceof PyObject) return value.className;
  const name = (value as { constructor?: { name?: string } })?.constructor?.name;
  return name ?? typeof value;
}

/** The allowlist's names, grouped by module, for the refusal message: "collections.{OrderedDict}, torch.{...}". */
function allowedNames(globals: GlobalTable): string {
  const byModule = new Map<string, string[]>();
  for (const qualified of [...globals.keys()].sort()) {
    const dot = qualified.lastIndexOf('.');
    const module = qualified.slice(0, dot);
    byModule.set(module, [...(byModule.get(module) ?? []), qualified.slice(dot + 1)]);
  }
  return [...byModule].map(([module, names]) => (names.length === 1 ? `${module}.${names[0]}` : `${module}.{${names.join(', ')}}`)).join(', ');
}

/** Says what a file that is not a pickle looks like, from its first bytes. */
export function describeForeignBytes(bytes: Uint8Array): string {
  const starts = (...magic: number[]) => magic.every((byte, i) => bytes[i] === byte);
  if (bytes.length === 0) return 'the file is empty';
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'it is a PNG image';
  if (starts(0x50, 0x4b, 0x03, 0x04)) return "it is a zip archive (such as torch.save's default format since PyTorch 1.6)";
  if (starts(0x1f, 0x8b)) return 'it is gzip-compressed';
  if (starts(0xff, 0xd8, 0xff)) return 'it is a JPEG image';
  if (starts(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59)) return 'it is a numpy .npy file';
  const head = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return `it starts with bytes ${head}, and a pickle of protocol ${PICKLE_PROTOCOLS[0]}-${PICKLE_PROTOCOLS[PICKLE_PROTOCOLS.length - 1]} starts with 80 0N`;
}

/** Fails unless a pickle of a known protocol starts at `start` (PROTO, then the protocol number). */
function checkPickleStart(bytes: Uint8Array, start: number, fail: (detail: string) => never): void {
  if (bytes[start] === 0x80 && (PICKLE_PROTOCOLS as readonly number[]).includes(bytes[start + 1])) return;
  if (bytes[start] === 0x80 && start + 1 >= bytes.length) fail(`truncated: unexpected end of data at byte ${bytes.length}, inside the PROTO opcode`);
  if (bytes[start] === 0x80) fail(`pickle protocol ${bytes[start + 1]} at byte ${start} is not one this reader knows (${PICKLE_PROTOCOLS.join(', ')})`);
  if (start >= bytes.length && start > 0) fail(`truncated: unexpected end of data at byte ${bytes.length}, where another pickle should start`);
  fail(start === 0 ? `not a pickle: ${describeForeignBytes(bytes)}` : `no pickle at byte ${start}: ${describeForeignBytes(bytes.subarray(start))}`);
}

/**
 * Reads one pickle starting at `options.start` and returns its value and the offset just past its STOP.
 * Nothing pickled is executed: globals come only from `options.globals`, and anything else is refused.
 */
export function unpickleAt(bytes: Uint8Array, options: UnpickleOptions): { value: unknown; end: number } {
  const { source, globals } = options;
  const fail = (detail: string): never => {
    throw new PickleError(source, detail);
  };
  const context: PickleContext = { source, globals, depth: options.depth ?? 0, fail };
  const start = options.start ?? 0;
  checkPickleStart(bytes, start, fail);
  const machine = new PickleMachine(new ByteReader(bytes, start, fail), context, options.persistentLoad);
  const value = machine.run();
  return { value, end: machine.reader.pos };
}

/** A file's bytes as a plain Uint8Array view (a Buffer's slice() would share memory; this one's copies). */
export function readBytes(file: string): Uint8Array {
  const buffer = readFileSync(file);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** Reads a whole pickle (bytes after its STOP are ignored, as Python does). */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): unknown {
  return unpickleAt(bytes, options).value;
}

/** The pickle virtual machine: a value stack, a stack of marks and a memo, driven one opcode at a time. */
class PickleMachine {
  private stack: unknown[] = [];
  private readonly marks: unknown[][] = [];
  private readonly memo = new Map<number, unknown>();

  constructor(
    readonly reader: ByteReader,
    private readonly context: PickleContext,
    private readonly persistentLoad?: (pid: unknown, context: PickleContext) => unknown,
  ) {}

  private fail(detail: string): never {
    return this.context.fail(`${detail} (${this.reader.opcode} at byte ${this.reader.opcodeAt})`);
  }

  private pop(): unknown {
    if (this.stack.length === 0) this.fail('malformed pickle: the stack is empty');
    return this.stack.pop();
  }

  private top(): unknown {
    if (this.stack.length === 0) this.fail('malformed pickle: the stack is empty');
    return this.stack[this.stack.length - 1];
  }

  /** The items pushed since the last MARK, which is removed. */
  private popMark(): unknown[] {
    const items = this.stack;
    const below = this.marks.pop();
    if (below === undefined) this.fail('malformed pickle: no MARK to pop to');
    this.stack = below;
    return items;
  }

  private memoGet(index: number): unknown {
    if (!this.memo.has(index)) this.fail(`malformed pickle: memo entry ${index} was never stored`);
    return this.memo.get(index);
  }

  run(): unknown {
    const reader = this.reader;
    for (;;) {
      reader.opcodeAt = reader.pos;
      reader.opcode = 'an opcode';
      const code = reader.u8();
      reader.opcode = OPCODE_NAMES[code] ?? `opcode 0x${code.toString(16)}`;
      if (code === 0x2e) {
        // STOP
        if (this.marks.length > 0) this.fail('malformed pickle: STOP inside an unclosed MARK');
        return this.pop();
      }
      this.step(code);
    }
  }

  private step(code: number): void {
    const r = this.reader;
    const push = (value: unknown) => this.stack.push(value);
    switch (code) {
      case 0x80: r.u8(); return; // PROTO (checked before the run)
      case 0x95: { // FRAME: a length prefix for buffered reading; the content follows as usual
        const length = r.u64();
        if (length > r.bytes.length - r.pos) r.take(length);
        return;
      }
      case 0x28: this.marks.push(this.stack); this.stack = []; return; // MARK
      case 0x30: this.pop(); return; // POP
      case 0x31: this.popMark(); return; // POP_MARK
      case 0x32: push(this.top()); return; // DUP
      // memo
      case 0x94: this.memo.set(this.memo.size, this.top()); return; // MEMOIZE
      case 0x70: this.memo.set(this.decimal(r.line()), this.top()); return; // PUT
      case 0x71: this.memo.set(r.u8(), this.top()); return; // BINPUT
      case 0x72: this.memo.set(r.u32(), this.top()); return; // LONG_BINPUT
      case 0x67: push(this.memoGet(this.decimal(r.line()))); return; // GET
      case 0x68: push(this.memoGet(r.u8())); return; // BINGET
      case 0x6a: push(this.memoGet(r.u32())); return; // LONG_BINGET
      // constants and numbers
      case 0x4e: push(null); return; // NONE
      case 0x88: push(true); return; // NEWTRUE
      case 0x89: push(false); return; // NEWFALSE
      case 0x4a: push(r.i32()); return; // BININT
      case 0x4b: push(r.u8()); return; // BININT1
      case 0x4d: push(r.u16()); return; // BININT2
      case 0x8a: push(decodeLong(r.take(r.u8()))); return; // LONG1
      case 0x8b: { // LONG4
        const length = r.i32();
        if (length < 0) this.fail('malformed pickle: negative LONG4 length');
        if (length > MAX_LONG_BYTES) this.fail(`LONG4 integer of ${length} bytes is longer than this reader accepts (${MAX_LONG_BYTES})`);
        push(decodeLong(r.take(length)));
        return;
      }
      case 0x47: push(r.f64BigEndian()); return; // BINFLOAT
      // strings and bytes
      case 0x8c: push(UTF8.decode(r.take(r.u8()))); return; // SHORT_BINUNICODE
      case 0x58: push(UTF8.decode(r.take(r.u32()))); return; // BINUNICODE
      case 0x8d: push(UTF8.decode(r.take(r.u64()))); return; // BINUNICODE8
      case 0x43: push(r.take(r.u8())); return; // SHORT_BINBYTES
      case 0x42: push(r.take(r.u32())); return; // BINBYTES
      case 0x8e: push(r.take(r.u64())); return; // BINBYTES8
      case 0x96: push(r.take(r.u64()).slice()); return; // BYTEARRAY8 (a mutable copy)
      // containers
      case 0x29: push(Object.freeze([])); return; // EMPTY_TUPLE
      case 0x85: push(Object.freeze([this.pop()])); return; // TUPLE1
      case 0x86: { const b = this.pop(); const a = this.pop(); push(Object.freeze([a, b])); return; } // TUPLE2
      case 0x87: { const c = this.pop(); const b = this.pop(); const a = this.pop(); push(Object.freeze([a, b, c])); return; } // TUPLE3
      case 0x74: push(Object.freeze(this.popMark())); return; // TUPLE
      case 0x5d: push([]); return; // EMPTY_LIST
      case 0x6c: push(this.popMark()); return; // LIST
      case 0x7d: push(new Map()); return; // EMPTY_DICT
      case 0x64: { const dict = new Map(); this.setItems(dict, this.popMark()); push(dict); return; } // DICT
      case 0x8f: push(new Set()); return; // EMPTY_SET
      case 0x91: push(Object.freeze(new Set(this.popMark()))); return; // FROZENSET
      case 0x61: { const item = this.pop(); this.append(this.top(), [item]); return; } // APPEND
      case 0x65: { const items = this.popMark(); this.append(this.top(), items); return; } // APPENDS
      case 0x73: { const value = this.pop(); const key = this.pop(); this.setItems(this.top(), [key, value]); return; } // SETITEM
      case 0x75: { const items = this.popMark(); this.setItems(this.top(), items); return; } // SETITEMS
      case 0x90: { // ADDITEMS
        const items = this.popMark();
        const target = this.top();
        if (!(target instanceof Set) || Object.isFrozen(target)) this.fail(`malformed pickle: ADDITEMS to a ${describeValue(target)}`);
        for (const item of items) target.add(item);
        return;
      }
      // globals and objects
      case 0x63: { const module = r.line(); const name = r.line(); push(this.resolveGlobal(module, name)); return; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = this.pop();
        const module = this.pop();
        if (typeof module !== 'string' || typeof name !== 'string') this.fail('malformed pickle: STACK_GLOBAL needs two strings');
        push(this.resolveGlobal(module, name));
        return;
      }
      case 0x52: { const args = this.pop(); const callable = this.pop(); push(this.call(callable, args)); return; } // REDUCE
      case 0x81: { const args = this.pop(); const cls = this.pop(); push(this.instantiate(cls, args)); return; } // NEWOBJ
      case 0x92: { // NEWOBJ_EX
        const kwargs = this.pop();
        const args = this.pop();
        const cls = this.pop();
        if (!(kwargs instanceof Map) || kwargs.size > 0) this.fail(`NEWOBJ_EX with keyword arguments is not supported (class ${describeValue(cls)})`);
        push(this.instantiate(cls, args));
        return;
      }
      case 0x62: { const state = this.pop(); this.build(this.top(), state); return; } // BUILD
      case 0x51: push(this.persistent(this.pop())); return; // BINPERSID
      case 0x50: push(this.persistent(r.line())); return; // PERSID
      default:
        this.fail(`unsupported opcode ${OPCODE_NAMES[code] ?? 'unknown'} (0x${code.toString(16).padStart(2, '0')}): `
          + 'this reader knows the opcodes Python writes at protocols 2-5');
    }
  }

  private decimal(text: string): number {
    if (!/^\d+$/.test(text)) this.fail(`malformed pickle: memo index '${text}' is not a number`);
    return Number(text);
  }

  private append(target: unknown, items: unknown[]): void {
    if (!Array.isArray(target) || Object.isFrozen(target)) this.fail(`malformed pickle: APPEND to a ${describeValue(target)}`);
    for (const item of items) target.push(item);
  }

  private setItems(target: unknown, items: unknown[]): void {
    if (!(target instanceof Map)) this.fail(`malformed pickle: SETITEM on a ${describeValue(target)}`);
    if (items.length % 2 !== 0) this.fail('malformed pickle: SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  }

  private resolveGlobal(module: string, name: string): unknown {
    const modern = PYTHON2_MODULES[module] ?? module;
    const qualified = `${modern}.${name}`;
    const value = this.context.globals.get(qualified);
    if (value === undefined) {
      const written = modern === module ? '' : ` (written as \`${module}.${name}\`)`;
      this.context.fail(`pickle refers to global \`${qualified}\`${written}, which is not on the allowlist `
        + `(allowed: ${allowedNames(this.context.globals)}); nothing in the file was run`);
    }
    return value;
  }

  private tupleArgs(args: unknown, what: string): PyTuple {
    if (!Array.isArray(args)) this.fail(`malformed pickle: the arguments of ${what} are a ${describeValue(args)}, not a tuple`);
    return args;
  }

  private call(callable: unknown, args: unknown): unknown {
    if (!(callable instanceof PyCallable) || !callable.handlers.call) this.fail(`${describeValue(callable)} cannot be called`);
    return callable.handlers.call(this.tupleArgs(args, callable.qualifiedName), this.context);
  }

  private instantiate(cls: unknown, args: unknown): unknown {
    if (!(cls instanceof PyCallable) || !cls.handlers.instantiate) this.fail(`${describeValue(cls)} is not a class this reader can make`);
    return cls.handlers.instantiate(this.tupleArgs(args, cls.qualifiedName), this.context);
  }

  private build(target: unknown, state: unknown): void {
    if (target instanceof PyObject) {
      buildPyObject(target, state, this.context);
    } else if (isBuildable(target)) {
      target.build(state, this.context);
    } else if (target instanceof Map && (state === null || state instanceof Map)) {
      // a dict with attributes of its own (a state_dict's OrderedDict carries `_metadata`)
      if (state instanceof Map && state.size > 0) DICT_ATTRIBUTES.set(target, state);
    } else {
      this.fail(`cannot set the state of a ${describeValue(target)}`);
    }
  }

  private persistent(pid: unknown): unknown {
    if (!this.persistentLoad) this.fail('the pickle has a persistent id, which this kind of file does not use');
    return this.persistentLoad(pid, this.context);
  }
}

/** Attributes that BUILD gave a dict (kept aside, so a dict stays a plain Map). */
const DICT_ATTRIBUTES = new WeakMap<PyDict, PyDict>();

/** The attributes a pickled dict carried besides its items, such as a state_dict's `_metadata` (empty if none). */
export function dictAttributes(dict: PyDict): PyDict {
  return DICT_ATTRIBUTES.get(dict) ?? new Map();
}

function isBuildable(value: unknown): value is Buildable {
  return typeof value === 'object' && value !== null && typeof (value as Partial<Buildable>).build === 'function';
}

/** BUILD on a plain object: the state is its __dict__, or a (__dict__, slots) pair. */
function buildPyObject(target: PyObject, state: unknown, context: PickleContext): void {
  const parts = Array.isArray(state) && state.length === 2 ? state : [state];
  for (const part of parts) {
    if (part === null) continue;
    if (!(part instanceof Map)) context.fail(`the state of a ${target.className} is a ${describeValue(part)}, not a dict`);
    for (const [key, value] of part) target.state.set(key, value);
  }
}

/** Makes a globals table from its entries, refusing a name given twice. */
export function globalTable(...groups: ReadonlyArray<readonly [string, unknown]>[]): GlobalTable {
  const table = new Map<string, unknown>();
  for (const [name, value] of groups.flat()) {
    if (table.has(name)) throw new Error(`global ${name} is listed twice`);
    table.set(name, value);
  }
  return table;
}

/** An entry for a function global: REDUCE calls `call`. */
export function functionGlobal(qualifiedName: string, call: (args: PyTuple, context: PickleContext) => unknown): [string, PyCallable] {
  return [qualifiedName, new PyCallable(qualifiedName, { call })];
}

/** An entry for a class global whose instances are PyObjects (their state kept as data). */
export function plainClassGlobal(qualifiedName: string): [string, PyCallable] {
  return [qualifiedName, new PyCallable(qualifiedName, { instantiate: () => new PyObject(qualifiedName), call: () => new PyObject(qualifiedName) })];
}
