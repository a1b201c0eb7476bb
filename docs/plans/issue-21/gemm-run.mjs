// Times gemm.rs built for wasm (simd128 and scalar) in Node: ms per query of t tokens.
import { readFileSync } from "node:fs";
for (const file of ["/tmp/gemm-simd.wasm", "/tmp/gemm-scalar.wasm"]) {
  const { instance } = await WebAssembly.instantiate(readFileSync(file), {});
  const { bench, check } = instance.exports;
  console.log(file, "max error", check());
  bench(1, 17); // builds the model
  for (const t of [17, 64, 128]) {
    const reps = t === 17 ? 20 : 5;
    bench(1, t);
    const start = performance.now();
    bench(reps, t);
    const ms = (performance.now() - start) / reps;
    const gflop = (6 * 2 * t * 1769472) / 1e9;
    console.log(`  t=${t}: ${ms.toFixed(2)} ms/query, ${(gflop / ms * 1000).toFixed(1)} GFLOP/s`);
  }
}
