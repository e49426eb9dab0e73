/**
 * The memory the onednn kernels write their outputs into: arrays carved from a few large chunks and given back
 * to them when their tensor is disposed. A freed block merges with its free neighbours, and the next output takes
 * the smallest free segment it fits in (best fit): once the chunks cover a step's working set, steps allocate
 * nothing (no page faults, no garbage collection). Arrays given to user code are copies (see readSync in index.ts).
 *
 * Why chunks and not one free list per array length (the earlier design): a pass frees and makes arrays of many
 * lengths, and the arrays of each length peak at different moments, so per-length lists held the sum of those
 * peaks, about twice the most bytes ever live at once (a res32-ch64 generation batch: 383 MB of arrays for a live
 * peak of 175 MB; in chunks it takes 260 MB). A block of a chunk serves any length.
 */

/**
 * Blocks start on addresses that are multiples of this many bytes (a cache line: an AVX-512 load or store of a
 * misaligned array touches two lines; malloc's own large blocks start 16 bytes past a page boundary).
 */
export const ALIGN_BYTES = 64;
/** Size of a chunk (an array larger than a chunk gets a chunk of its own size). */
export const CHUNK_BYTES = 64 << 20;
/** Arrays below SMALL_BYTES come from chunks of their own, of SMALL_CHUNK_BYTES, so that long-lived small outputs do not split the large chunks. */
export const SMALL_BYTES = 256 << 10;
export const SMALL_CHUNK_BYTES = 4 << 20;
/** Arrays remembered per chunk for reuse (Chunk.floats); beyond that the chunk forgets them all and starts again. */
const VIEWS_PER_CHUNK = 4096;

interface Segment { offset: number; bytes: number }

class Chunk {
  /** Free segments, sorted by offset, never adjacent (a freed block merges with its neighbours). */
  readonly free: Segment[];
  /**
   * The last float array made at each offset: handed out again when a block of its length starts there (a steady
   * loop places its outputs the same way each time, and a new typed array per output is work for the GC).
   */
  private readonly views = new Map<number, Float32Array>();

  /** `skip`: bytes at the start left unused, so that offset `skip` lies on an ALIGN_BYTES boundary of the real address. */
  constructor(readonly memory: Buffer, skip: number) {
    this.free = [{ offset: skip, bytes: memory.byteLength - skip }];
  }

  /** A Float32Array of `length` at `offset`, reusing the array made there before when it has that length. */
  floats(offset: number, length: number): Float32Array {
    const known = this.views.get(offset);
    if (known && known.length === length) return known;
    const array = new Float32Array(this.memory.buffer, this.memory.byteOffset + offset, length);
    if (this.views.size >= VIEWS_PER_CHUNK) this.views.clear();
    this.views.set(offset, array);
    return array;
  }

  get bytes(): number {
    return this.memory.byteLength;
  }

  /** Returns [offset, bytes] to the free segments, merging with free neighbours. */
  giveBack(offset: number, bytes: number): void {
    const free = this.free;
    let lo = 0, hi = free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (free[mid].offset < offset) lo = mid + 1;
      else hi = mid;
    }
    const before = lo > 0 ? free[lo - 1] : undefined, after = lo < free.length ? free[lo] : undefined;
    if ((before && before.offset + before.bytes > offset) || (after && offset + bytes > after.offset)) {
      throw new Error(`output pool: block [${offset}, ${offset + bytes}) given back twice or overlapping free memory`);
    }
    const joinsBefore = before !== undefined && before.offset + before.bytes === offset;
    const joinsAfter = after !== undefined && offset + bytes === after.offset;
    if (joinsBefore && joinsAfter) {
      before.bytes += bytes + after.bytes;
      free.splice(lo, 1);
    } else if (joinsBefore) {
      before.bytes += bytes;
    } else if (joinsAfter) {
      after.offset = offset;
      after.bytes += bytes;
    } else {
      free.splice(lo, 0, { offset, bytes });
    }
  }
}

interface Block { chunk: Chunk; offset: number; bytes: number }

/** What native code tells about the memory of a chunk (the addon's function of this name). */
export interface MemoryPlacement {
  /** The address of the array's first byte modulo `alignment`, a power of two (JavaScript sees only offsets within a buffer). */
  addressOffset(array: Uint8Array, alignment: number): number;
}

export class FloatBufferPool {
  private chunks: Chunk[] = [];       // for arrays of SMALL_BYTES or more
  private smallChunks: Chunk[] = [];  // for smaller arrays
  private placement: MemoryPlacement | undefined;
  // a Map, not a WeakMap (faster to look up): every entry is deleted when its array comes back
  private readonly blocks = new Map<Float32Array | Int32Array, Block>();
  private capacityBytes = 0;
  private liveBytes = 0;
  private highWaterBytes = 0;
  /** Arrays handed out so far: those that needed a new chunk (and the chunks' bytes), and those served from chunks already made. */
  readonly counts = { allocated: 0, allocatedBytes: 0, reused: 0 };

  /**
   * Chunks made from now on place their blocks at ALIGN_BYTES boundaries of the real address. Without a placement,
   * blocks are aligned within their chunk only.
   */
  placeWith(placement: MemoryPlacement): void {
    this.placement = placement;
  }

  /** An array of `length` floats with undefined contents (the caller overwrites all of it). */
  take(length: number): Float32Array {
    const block = this.carve(length * 4);
    const array = block.chunk.floats(block.offset, length);
    this.blocks.set(array, block);
    return array;
  }

  /**
   * An Int32Array of `length` elements from the same chunks (a kernel output of another element type, such as a
   * bf16 copy stored two values per element): released like the pool's float arrays.
   */
  takeInt32(length: number): Int32Array {
    const block = this.carve(length * 4);
    const array = new Int32Array(block.chunk.memory.buffer, block.chunk.memory.byteOffset + block.offset, length);
    this.blocks.set(array, block);
    return array;
  }

  /** True for arrays this pool handed out and has not taken back (only those are ever recycled). */
  owns(array: unknown): array is Float32Array | Int32Array {
    return (array instanceof Float32Array || array instanceof Int32Array) && this.blocks.has(array);
  }

  /**
   * Takes back an array whose tensor was disposed; arrays the pool did not hand out are ignored. Its block joins
   * the free memory of its chunk. Chunks are kept, even empty ones, until clear(): the chunks grow only when no
   * free segment fits an output, so a loop that makes the same arrays each step allocates nothing after its first
   * steps (dropping a chunk that empties at the end of each step made every step allocate it afresh: page faults
   * and garbage collection).
   */
  release(array: Float32Array | Int32Array): void {
    const block = this.blocks.get(array);
    if (!block) return;
    this.blocks.delete(array);
    this.liveBytes -= block.bytes;
    block.chunk.giveBack(block.offset, block.bytes);
  }

  /** Bytes of the chunks not handed out (free to serve the next outputs). */
  get heldBytes(): number {
    return this.capacityBytes - this.liveBytes;
  }

  /** Bytes handed out and not taken back. */
  get bytesInUse(): number {
    return this.liveBytes;
  }

  /**
   * Drops the chunks that hold no array handed out (their memory goes back to the GC); returns the bytes dropped.
   * For a pool whose working set moved elsewhere (a recorded training step's scratch pool took the step's
   * intermediates), not for a steady loop, which would then allocate its chunks afresh.
   */
  dropEmptyChunks(): number {
    let dropped = 0;
    const keep = (chunk: Chunk) => {
      const empty = chunk.free.length === 1 && chunk.free[0].bytes === chunk.bytes - chunk.free[0].offset && chunk.free[0].offset < ALIGN_BYTES;
      if (empty) dropped += chunk.bytes;
      return !empty;
    };
    this.chunks = this.chunks.filter(keep);
    this.smallChunks = this.smallChunks.filter(keep);
    this.capacityBytes -= dropped;
    return dropped;
  }

  /** Bytes of every chunk, handed out or free. */
  get chunkBytes(): number {
    return this.capacityBytes;
  }

  /** The most bytes handed out at once. */
  get highWater(): number {
    return this.highWaterBytes;
  }

  /**
   * Forgets every chunk and every array handed out (for the GC), when the backend is disposed with all its tensors:
   * an array still held elsewhere keeps its memory alive, but is never recycled.
   */
  clear(): void {
    this.chunks = [];
    this.smallChunks = [];
    this.blocks.clear();
    this.capacityBytes = 0;
    this.liveBytes = 0;
  }

  /** A block of at least `requested` bytes: the start of the smallest free segment it fits in, else of a new chunk. */
  private carve(requested: number): Block {
    const bytes = Math.max(ALIGN_BYTES, Math.ceil(requested / ALIGN_BYTES) * ALIGN_BYTES);
    const small = bytes < SMALL_BYTES;
    const block = this.fit(bytes, small) ?? this.fitNew(bytes, small);
    this.liveBytes += bytes;
    this.highWaterBytes = Math.max(this.highWaterBytes, this.liveBytes);
    return block;
  }

  /** The start of the smallest free segment of `bytes` or more, in a chunk of its class; undefined when none fits. */
  private fit(bytes: number, small: boolean): Block | undefined {
    let best: Segment | undefined, bestChunk: Chunk | undefined, bestIndex = -1;
    search: for (const chunk of small ? this.smallChunks : this.chunks) {
      const free = chunk.free;
      for (let i = 0; i < free.length; i++) {
        const segment = free[i];
        if (segment.bytes >= bytes && (!best || segment.bytes < best.bytes)) {
          best = segment;
          bestChunk = chunk;
          bestIndex = i;
          if (segment.bytes === bytes) break search;
        }
      }
    }
    if (!best || !bestChunk) return undefined;
    this.counts.reused += 1;
    return this.cut(bestChunk, bestIndex, bytes);
  }

  /** A block at the start of a new chunk. */
  private fitNew(bytes: number, small: boolean): Block {
    const chunk = this.grow(small ? SMALL_CHUNK_BYTES : Math.max(CHUNK_BYTES, bytes), small);
    this.counts.allocated += 1;
    return this.cut(chunk, 0, bytes);
  }

  /** `bytes` from the start of free segment `index` of `chunk`. */
  private cut(chunk: Chunk, index: number, bytes: number): Block {
    const segment = chunk.free[index];
    const offset = segment.offset;
    segment.offset += bytes;
    segment.bytes -= bytes;
    if (segment.bytes === 0) chunk.free.splice(index, 1);
    return { chunk, offset, bytes };
  }

  private grow(bytes: number, small: boolean): Chunk {
    // allocUnsafeSlow: no zero-filling pass, and pages become resident only when an output is first written to them
    // the first block starts at an ALIGN_BYTES boundary of the real address: the chunk has room to skip to it
    const memory = Buffer.allocUnsafeSlow(bytes + ALIGN_BYTES);
    const skip = this.placement ? (ALIGN_BYTES - this.placement.addressOffset(memory, ALIGN_BYTES)) % ALIGN_BYTES : 0;
    const chunk = new Chunk(memory, skip);
    (small ? this.smallChunks : this.chunks).push(chunk);
    this.capacityBytes += chunk.bytes;
    this.counts.allocatedBytes += chunk.bytes;
    return chunk;
  }
}
