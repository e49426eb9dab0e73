/**
 * Recycles the Float32Arrays the onednn kernels write their outputs into. A disposed tensor's array goes
 * back to a free list by length and the next output of that length reuses it: no allocation, no garbage
 * collection, and memory that is still in cache. Arrays given to user code are copies (see readSync in index.ts).
 */
export class FloatBufferPool {
  private readonly free = new Map<number, Float32Array[]>();
  private readonly owned = new WeakSet<Float32Array>();
  private freeBytes = 0;
  /** Arrays handed out so far: freshly allocated, and reused from the free lists (a profile reads both). */
  readonly counts = { allocated: 0, allocatedBytes: 0, reused: 0 };

  /** maxFreeBytes: free arrays kept for reuse at most; beyond it released arrays are left to the GC. */
  constructor(readonly maxFreeBytes: number) {}

  /** An array of `length` floats with undefined contents (the caller overwrites all of it). */
  take(length: number): Float32Array {
    const reused = this.free.get(length)?.pop();
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

  /** True for arrays this pool made (only those are ever recycled). */
  owns(array: unknown): array is Float32Array {
    return array instanceof Float32Array && this.owned.has(array);
  }

  /** Returns an array whose tensor was disposed; arrays the pool did not make are ignored. */
  release(array: Float32Array): void {
    if (!this.owned.has(array) || this.freeBytes + array.byteLength > this.maxFreeBytes) return;
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
