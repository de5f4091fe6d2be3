/** Turns texts into vectors. Implementations are deterministic for a given `id`. */
export interface Embedder {
  /** Length of every vector this embedder returns. */
  readonly dimensions: number;
  /** Identifies the model and its settings; vectors of different ids are not comparable. */
  readonly id: string;
  embed(texts: string[]): Promise<Float32Array[]>;
}

/** Scales a vector to unit length in place (a zero vector stays zero). */
export function normalize(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const v of vector) sum += v * v;
  if (sum === 0) return vector;
  const inv = 1 / Math.sqrt(sum);
  for (let i = 0; i < vector.length; i++) vector[i] = (vector[i] as number) * inv;
  return vector;
}

/** Dot product of two vectors of equal length (cosine when both are unit length). */
export function dot(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) sum += (a[i] as number) * (b[i] as number);
  return sum;
}
