/**
 * Recycles the Float32Arrays the onednn kernels write their outputs into. A disposed tensor's array goes
 * back to a free list by length and the next output of that length reuses it: no allocation, no garbage
 * collection, and memory that is still in cache. Arrays given to user code are copies (see readSync in index.ts).
 */
/** Free arrays kept, as a multiple of the most bytes ever live at once (see release). */
export const HELD_PER_HIGH_WATER = 2;

export class FloatBufferPool {
  private readonly free = new Map<number, Float32Array[]>();
  private readonly owned = new WeakSet<Float32Array>();
  private readonly views = new WeakMap<Int32Array, Float32Array>();
  private freeBytes = 0;
  private liveBytes = 0;
  private highWaterBytes = 0;
  /** Arrays handed out so far: freshly allocated, and reused from the free lists (a profile reads both). */
  readonly counts = { allocated: 0, allocatedBytes: 0, reused: 0 };

  /** An array of `length` floats with undefined contents (the caller overwrites all of it). */
  take(length: number): Float32Array {
    const reused = this.free.get(length)?.pop();
    this.liveBytes += length * 4;
    this.highWaterBytes = Math.max(this.highWaterBytes, this.liveBytes);
    if (reused) {
      this.freeBytes -= reused.byteLength;
      this.counts.reused += 1;
      return reused;
    }
    this.counts.allocated += 1;
    this.counts.allocatedBytes += length * 4;
    // allocUnsafeSlow skips the zero-filling pass of `new Float32Array(n)`
    const bytes = Buffer.allocUnsafeSlow(length * 4);
    const array = new Float32Array(bytes.buffer, bytes.byteOffset, length);
    this.owned.add(array);
    return array;
  }

  /**
   * An Int32Array over the memory of a pooled array of `length` floats (a kernel output of another element type, such as
   * a bf16 copy stored two values per element): released like the pool's own arrays, by the view.
   */
  takeInt32(length: number): Int32Array {
    const floats = this.take(length);
    const view = new Int32Array(floats.buffer, floats.byteOffset, length);
    this.views.set(view, floats);
    return view;
  }

  /** True for arrays this pool made and views over them (only those are ever recycled). */
  owns(array: unknown): array is Float32Array | Int32Array {
    return (array instanceof Float32Array && this.owned.has(array)) || (array instanceof Int32Array && this.views.has(array));
  }

  /**
   * Returns an array whose tensor was disposed; arrays the pool did not make are ignored. It is kept for reuse
   * while the free arrays total at most HELD_PER_HIGH_WATER times the pool's high-water mark (the most bytes it
   * had handed out at once): a training step takes the same arrays every step, so steady steps allocate nothing
   * (a cap below a step's working set made every step allocate the excess afresh: page faults and garbage
   * collection). The working set of distinct lengths exceeds the live peak, because an array serves only its own
   * length: with the backward pass freeing as it goes, a res28-ch16 step peaks at 265 MB live but cycles through
   * 329 MB of arrays, and a cap of 1x re-allocated 249 arrays a step. Beyond the cap the array is left to the GC.
   */
  release(released: Float32Array | Int32Array): void {
    const array = released instanceof Int32Array ? this.views.get(released) : released;
    if (!array || !this.owned.has(array)) return;
    if (released instanceof Int32Array) this.views.delete(released);
    this.liveBytes -= array.byteLength;
    if (this.freeBytes + array.byteLength > HELD_PER_HIGH_WATER * this.highWaterBytes) return;
    const list = this.free.get(array.length);
    if (list) list.push(array);
    else this.free.set(array.length, [array]);
    this.freeBytes += array.byteLength;
  }

  /** Bytes held in free lists. */
  get heldBytes(): number {
    return this.freeBytes;
  }

  /** Drops every free array (for the GC). */
  clear(): void {
    this.free.clear();
    this.freeBytes = 0;
  }
}
