/** Tests of the pickle reader on hand-assembled pickles: every opcode it reads, and every way it refuses. */
import * as assert from 'assert';
import { EDM_PICKLE_GLOBALS } from '../lib/import/edm-pickle';
import { PickleError, PyObject, unpickle } from '../lib/import/pickle';
import { NumpyDtype } from '../lib/import/python-globals';

const SOURCE = 'hand-made.pkl';

/** Bytes from opcode characters, byte values and byte arrays. */
function bytes(...parts: Array<string | number | Uint8Array | number[]>): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === 'string') out.push(...Buffer.from(part, 'latin1'));
    else if (typeof part === 'number') out.push(part);
    else out.push(...part);
  }
  return new Uint8Array(out);
}

const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
const u64 = (n: bigint) => [...Array(8)].map((_, i) => Number((n >> BigInt(8 * i)) & 0xffn));
const utf8 = (text: string) => new Uint8Array(Buffer.from(text, 'utf8'));
const shortUnicode = (text: string) => bytes(0x8c, utf8(text).length, utf8(text));

/** A protocol-4 pickle of the given body (the opcodes that push the value), ending in STOP. */
const pickle4 = (...body: Array<string | number | Uint8Array | number[]>) => bytes(0x80, 4, ...body, '.');
const read = (data: Uint8Array) => unpickle(data, { source: SOURCE, globals: EDM_PICKLE_GLOBALS });

/** Asserts that reading fails with a PickleError naming the source and matching `pattern`. */
function assertRefused(data: Uint8Array, pattern: RegExp): PickleError {
  let caught: unknown;
  try {
    read(data);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof PickleError, `expected a PickleError, got ${String(caught)}`);
  assert.ok(caught.message.includes(`\`${SOURCE}\``), caught.message);
  assert.match(caught.message, pattern);
  return caught;
}

describe('import: pickle reader', () => {
  it('reads ints of every width, as bigints beyond 2^53', () => {
    assert.strictEqual(read(pickle4('K', 255)), 255);
    assert.strictEqual(read(pickle4('M', 0xff, 0xff)), 65535);
    assert.strictEqual(read(pickle4('J', u32(-5 >>> 0))), -5);
    assert.strictEqual(read(pickle4(0x8a, 0)), 0);
    assert.strictEqual(read(pickle4(0x8a, 1, 0xff)), -1);
    assert.strictEqual(read(pickle4(0x8a, 9, u64(0n), 1)), 2n ** 64n);
    assert.strictEqual(read(pickle4(0x8a, 8, u64(2n ** 53n - 1n))), 2 ** 53 - 1);
    assert.strictEqual(read(pickle4(0x8b, u32(10), u64(0n), 0, 0xc0)), -(2n ** 78n));
  });

  it('reads big-endian doubles, including inf, -inf and nan', () => {
    const double = (x: number) => { const b = Buffer.alloc(8); b.writeDoubleBE(x); return new Uint8Array(b); };
    assert.strictEqual(read(pickle4('G', double(0.1))), 0.1);
    assert.strictEqual(read(pickle4('G', double(Infinity))), Infinity);
    assert.strictEqual(read(pickle4('G', double(-Infinity))), -Infinity);
    assert.ok(Number.isNaN(read(pickle4('G', double(NaN)))));
  });

  it('reads strings and bytes of every length prefix', () => {
    const text = 'grüß 😀';
    assert.strictEqual(read(pickle4(shortUnicode(text))), text);
    assert.strictEqual(read(pickle4('X', u32(utf8(text).length), utf8(text))), text);
    assert.strictEqual(read(pickle4(0x8d, u64(BigInt(utf8(text).length)), utf8(text))), text);
    assert.deepStrictEqual(read(pickle4('C', 2, 0, 255)), new Uint8Array([0, 255]));
    assert.deepStrictEqual(read(pickle4('B', u32(1), 7)), new Uint8Array([7]));
    assert.deepStrictEqual(read(pickle4(0x8e, u64(3n), 1, 2, 3)), new Uint8Array([1, 2, 3]));
    assert.deepStrictEqual(read(pickle4(0x96, u64(2n), 9, 8)), new Uint8Array([9, 8]));
    assert.strictEqual(read(pickle4('N')), null);
    assert.strictEqual(read(pickle4(0x88)), true);
    assert.strictEqual(read(pickle4(0x89)), false);
  });

  it('builds tuples, lists, dicts and sets, and shares memoised objects', () => {
    // [(1, 2, 3), (), (4,), (5, 6), x, x] where x = {'a': 1, 'b': {7}} is memoised once
    const value = read(pickle4(
      ']', 0x94, '(',
      '(', 'K', 1, 'K', 2, 'K', 3, 't', ')', 'K', 4, 0x85, 'K', 5, 'K', 6, 0x86,
      '}', 0x94, '(', shortUnicode('a'), 'K', 1, shortUnicode('b'), 0x8f, '(', 'K', 7, 0x90, 'u',
      'h', 1, 'e',
    )) as unknown[];
    assert.strictEqual(value.length, 6);
    assert.deepStrictEqual(value.slice(0, 4), [[1, 2, 3], [], [4], [5, 6]]);
    assert.ok(value.slice(0, 4).every((tuple) => Object.isFrozen(tuple)), 'tuples are frozen');
    assert.ok(!Object.isFrozen(value), 'lists are not');
    const dict = value[4] as Map<string, unknown>;
    assert.deepStrictEqual([...dict.keys()], ['a', 'b']);
    assert.deepStrictEqual(dict.get('b'), new Set([7]));
    assert.strictEqual(value[5], dict, 'BINGET returns the same object');
  });

  it('reads the text memo opcodes, DUP, POP, POP_MARK, DICT, LIST and FROZENSET', () => {
    const value = read(pickle4(
      '(', 'K', 1, 'K', 2, 'l', 'p', '12\n', '0', // a list stored as memo 12, popped
      '(', 'K', 9, '1', // marked garbage, popped
      'g', '12\n', '2', 0x86, // (list, list)
      '(', shortUnicode('k'), 'K', 3, 'd',
      '(', 'K', 1, 0x91,
      0x87,
    )) as unknown[];
    const [pair, dict, frozen] = value as [unknown[], Map<string, number>, Set<number>];
    assert.deepStrictEqual(pair, [[1, 2], [1, 2]]);
    assert.strictEqual(pair[0], pair[1]);
    assert.deepStrictEqual(dict, new Map([['k', 3]]));
    assert.ok(frozen instanceof Set && frozen.has(1) && Object.isFrozen(frozen));
  });

  it('makes allowlisted classes through NEWOBJ, NEWOBJ_EX and BUILD, and numpy scalars through REDUCE', () => {
    const moduleDict = shortUnicode('torch.nn.modules.container');
    const value = read(pickle4(
      moduleDict, shortUnicode('ModuleDict'), 0x93, 0x94, ')', '}', 0x92,
      '}', shortUnicode('training'), 0x89, 's', 'b',
      shortUnicode('numpy.core.multiarray'), shortUnicode('scalar'), 0x93,
      shortUnicode('numpy'), shortUnicode('dtype'), 0x93, shortUnicode('i2'), 0x89, 0x88, 0x87, 'R',
      '(', 'K', 3, shortUnicode('>'), 'N', 'N', 'N', 'J', u32(0xffffffff), 'J', u32(0xffffffff), 'K', 0, 't', 'b',
      'C', 2, 0xff, 0xfe, 0x86, 'R',
      0x86,
    )) as unknown[];
    const [object, scalar] = value;
    assert.ok(object instanceof PyObject);
    assert.strictEqual(object.className, 'torch.nn.modules.container.ModuleDict');
    assert.strictEqual(object.state.get('training'), false);
    assert.strictEqual(scalar, -2, 'big-endian int16 ff fe');
  });

  it('keeps a numpy dtype as data with its byte order', () => {
    const dtype = read(pickle4(
      shortUnicode('numpy'), shortUnicode('dtype'), 0x93, shortUnicode('f8'), 0x89, 0x88, 0x87, 'R',
      '(', 'K', 3, shortUnicode('<'), 'N', 'N', 'N', 'J', u32(0xffffffff), 'J', u32(0xffffffff), 'K', 0, 't', 'b',
    ));
    assert.ok(dtype instanceof NumpyDtype);
    assert.strictEqual(dtype.name, 'float64');
    assert.strictEqual(dtype.byteOrder, '<');
  });

  it('refuses a global that is not on the allowlist, naming it and the file, whichever opcode names it', () => {
    const system = assertRefused(pickle4(shortUnicode('os'), shortUnicode('system'), 0x93, shortUnicode('echo hi'), 0x85, 'R'), /global `os\.system`, which is not on the allowlist/);
    assert.match(system.message, /allowed: .*collections\.OrderedDict/);
    assertRefused(bytes(0x80, 2, 'c', 'subprocess\nPopen\n', ')', 'R', '.'), /global `subprocess\.Popen`/);
    assertRefused(bytes(0x80, 2, 'c', '__builtin__\neval\n', '.'), /global `builtins\.eval` \(written as `__builtin__\.eval`\)/);
  });

  it('refuses allowlisted globals called with arguments they do not take', () => {
    assertRefused(pickle4(shortUnicode('_codecs'), shortUnicode('encode'), 0x93, shortUnicode('x'), shortUnicode('rot13'), 0x86, 'R'), /latin-1/);
    assertRefused(pickle4(shortUnicode('collections'), shortUnicode('OrderedDict'), 0x93, ')', 0x81), /not a class/);
    assertRefused(pickle4(shortUnicode('torch'), shortUnicode('FloatStorage'), 0x93, ')', 'R'), /cannot be called/);
  });

  it('reads the torch stream inside a bytes object with the same allowlist, and no stream inside that', () => {
    // torch's legacy stream: magic number, format version, system info, then the object pickle
    const magic = bytes(0x80, 2, 0x8a, 10, [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19], '.');
    const header = bytes(magic, 0x80, 2, 'M', 0xe9, 0x03, '.', 0x80, 2, '}', 'X', u32(13), 'little_endian', 0x88, 's', '.');
    const loadFromBytes = (stream: Uint8Array) => bytes(shortUnicode('torch.storage'), shortUnicode('_load_from_bytes'), 0x93, 'B', u32(stream.length), stream, 0x85, 'R');
    const hostile = bytes(header, 0x80, 2, 'c', 'posix\nsystem\n', '.');
    const refused = assertRefused(pickle4(loadFromBytes(hostile)), /global `posix\.system`, which is not on the allowlist/);
    assert.match(refused.message, /^`hand-made\.pkl`: in a torch storage stream: pickle refers/);
    const nested = bytes(header, 0x80, 4, loadFromBytes(hostile), '.');
    assertRefused(pickle4(loadFromBytes(nested)), /a torch stream nested inside another torch stream/);
  });

  it('names an unsupported opcode with its byte offset', () => {
    assertRefused(bytes(0x80, 2, 'I', '1\n', '.'), /unsupported opcode INT \(0x49\).*at byte 2/);
    assertRefused(bytes(0x80, 5, 0x97, '.'), /unsupported opcode NEXT_BUFFER/);
    assertRefused(bytes(0x80, 4, 0xf0, '.'), /unsupported opcode unknown \(0xf0\)/);
  });

  it('refuses a persistent id outside a torch storage stream', () => {
    assertRefused(pickle4('K', 1, 'Q'), /persistent id/);
  });

  it('says "truncated" wherever the data ends early, without allocating what a length prefix claims', () => {
    const whole = pickle4(']', 0x94, '(', shortUnicode('abc'), 'B', u32(4), 1, 2, 3, 4, 'e');
    for (let cut = 1; cut < whole.length; cut++) assertRefused(whole.subarray(0, cut), /truncated: unexpected end of data/);
    assertRefused(pickle4(0x8e, u64(2n ** 62n), 0), /truncated.*needs \d+ bytes/);
    assertRefused(bytes(0x80, 4, 0x95, u64(2n ** 40n), 'K', 1, '.'), /truncated/);
    assertRefused(bytes(0x80, 2, 'c', 'collections'), /truncated.*GLOBAL/);
  });

  it('names malformed pickles: empty stack, missing memo, unclosed mark, appending to a tuple', () => {
    assertRefused(pickle4('R'), /stack is empty/);
    assertRefused(pickle4('j', u32(7)), /memo entry 7 was never stored/);
    assertRefused(pickle4('(', 'K', 1), /STOP inside an unclosed MARK/);
    assertRefused(pickle4(')', 'K', 1, 'a'), /APPEND to a tuple/);
    assertRefused(pickle4('e'), /no MARK/);
  });

  it('says what a file that is not a pickle is', () => {
    assertRefused(bytes(0x89, 'PNG\r\n', 0x1a, '\n'), /not a pickle: it is a PNG image/);
    assertRefused(bytes('PK', 3, 4, 0, 0), /not a pickle: it is a zip archive/);
    assertRefused(new Uint8Array(0), /not a pickle: the file is empty/);
    assertRefused(bytes('hello world'), /not a pickle: it starts with bytes 68 65 6c 6c/);
    assertRefused(bytes(0x80, 6, '.'), /protocol 6 .* is not one this reader knows/);
  });
});
