/** The onednn backend's output pool (lib/backend/onednn/buffer-pool.ts): best-fit blocks of large chunks. */
import { strict as assert } from 'assert';
import seedrandom from 'seedrandom';
import { ALIGN_BYTES, CHUNK_BYTES, FloatBufferPool, SMALL_BYTES } from '../lib/backend/onednn/buffer-pool';

/** The byte range an array covers within its ArrayBuffer. */
function range(array: Float32Array | Int32Array): [ArrayBufferLike, number, number] {
  return [array.buffer, array.byteOffset, array.byteOffset + array.byteLength];
}

function assertDisjoint(arrays: Array<Float32Array | Int32Array>): void {
  const ranges = arrays.map(range).sort((a, b) => a[1] - b[1]);
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      const [bi, si, ei] = ranges[i], [bj, sj, ej] = ranges[j];
      if (bi === bj) assert.ok(ei <= sj || ej <= si, `live arrays overlap: [${si}, ${ei}) and [${sj}, ${ej})`);
    }
  }
}

describe('the output pool', () => {
  it('serves repeated steps without allocating, and from less memory than one list per length would hold', () => {
    const pool = new FloatBufferPool();
    // forward: arrays of several lengths alive together; backward: each freed, first to last, as one of another
    // length is made (a hole at the front of the chunk, not next to its free tail)
    const forward = [300_000, 300_000, 150_000, 150_000, 40, 1000];
    const backward = [250_000, 250_000, 120_000, 120_000, 40, 1000];
    const extent = new Map<ArrayBufferLike, number>();  // per chunk, the furthest byte any array reached
    const take = (n: number) => {
      const array = pool.take(n);
      extent.set(array.buffer, Math.max(extent.get(array.buffer) ?? 0, array.byteOffset + array.byteLength));
      return array;
    };
    const step = () => {
      const held = forward.map(take);
      for (let i = 0; i < held.length; i++) {
        pool.release(held[i]);
        pool.release(take(backward[i]));
      }
    };
    step();
    const { allocated, allocatedBytes } = pool.counts;
    for (let i = 0; i < 5; i++) step();
    assert.equal(pool.counts.allocated, allocated, 'steady steps allocate nothing');
    assert.equal(pool.counts.allocatedBytes, allocatedBytes);
    assert.ok(pool.counts.reused >= 5 * 2 * forward.length, `reused ${pool.counts.reused}`);
    // the live peak is the forward pass; per-length lists would keep forward and backward arrays both
    const live = forward.reduce((s, n) => s + 4 * n, 0);
    assert.ok(pool.highWater >= live && pool.highWater < live + 64 * forward.length, `high-water ${pool.highWater} for ${live} live`);
    assert.equal(pool.heldBytes, pool.chunkBytes, 'nothing live after a step');
    // the backward arrays took the memory the forward ones gave back: what the chunks ever used is the live peak
    const used = [...extent.values()].reduce((s, e) => s + e, 0);
    assert.ok(used <= live + 2 * 64 * forward.length, `the chunks used ${used} bytes for a live peak of ${live}`);
  });

  it('never hands out overlapping memory, and a freed block merges with its free neighbours', () => {
    const rng = seedrandom('pool');
    const pool = new FloatBufferPool();
    const live: Array<Float32Array | Int32Array> = [];
    const marks = new Map<Float32Array | Int32Array, number>();
    for (let op = 0; op < 3000; op++) {
      if (live.length > 0 && rng() < 0.45) {
        const [array] = live.splice(Math.floor(rng() * live.length), 1);
        // nothing else wrote into it while it was live
        assert.ok(array.every((v) => v === marks.get(array)), 'a live array was overwritten by another');
        pool.release(array);
        continue;
      }
      const length = rng() < 0.7 ? 1 + Math.floor(rng() * 2000) : 70_000 + Math.floor(rng() * 200_000);
      const array = rng() < 0.2 ? pool.takeInt32(length) : pool.take(length);
      assert.equal(array.length, length);
      array.fill(op);
      marks.set(array, op);
      live.push(array);
      assertDisjoint(live);
    }
    live.forEach((a) => pool.release(a));
    assert.equal(pool.heldBytes, pool.chunkBytes);
    // with everything back, each chunk is one free segment again: an array of a whole large chunk's size fits without a new chunk
    const chunks = pool.counts.allocated;
    pool.release(pool.take(Math.floor(CHUNK_BYTES / 4)));
    assert.equal(pool.counts.allocated, chunks, 'a freed chunk served an array of its whole size');
  });

  it('puts small arrays in chunks of their own, and gives an array larger than a chunk a chunk of its size', () => {
    const pool = new FloatBufferPool();
    const small = pool.take(SMALL_BYTES / 4 - 100), large = pool.take(SMALL_BYTES / 4);
    assert.notEqual(small.buffer, large.buffer, 'a small and a large array share no chunk');
    const huge = pool.take(CHUNK_BYTES / 4 + 1000);
    assert.equal(huge.length, CHUNK_BYTES / 4 + 1000);
    assert.notEqual(huge.buffer, large.buffer);
    assert.ok(pool.chunkBytes >= CHUNK_BYTES + 4000 + CHUNK_BYTES, `chunk bytes ${pool.chunkBytes}`);
    [small, large, huge].forEach((a) => pool.release(a));
  });

  it('aligns blocks to the real addresses it is told of, ignores arrays it did not hand out, and forgets everything on clear', () => {
    const pool = new FloatBufferPool();
    // a chunk whose memory starts 48 bytes past a cache line: its blocks start 16 bytes into it
    pool.placeWith({ addressOffset: (array, alignment) => (48 + array.byteOffset) % alignment });
    const arrays = [pool.take(10), pool.take(33), pool.take(100_000), pool.takeInt32(7)];
    for (const a of arrays) assert.equal((48 + a.byteOffset) % ALIGN_BYTES, 0, `byte offset ${a.byteOffset}`);
    assert.equal(pool.owns(new Float32Array(4)), false);
    pool.release(new Float32Array(4));
    pool.release(arrays[0]);
    pool.release(arrays[0]);  // a second release of the same array: ignored
    assert.equal(pool.owns(arrays[0]), false);
    assert.ok(pool.owns(arrays[3]));
    pool.clear();
    assert.equal(pool.chunkBytes, 0);
    assert.equal(pool.owns(arrays[1]), false, 'arrays live at clear are forgotten, not recycled');
    pool.release(arrays[1]);
    assert.equal(pool.chunkBytes, 0);
  });
});
