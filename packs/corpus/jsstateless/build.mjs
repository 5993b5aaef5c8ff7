// Build: ComponentizeJS, AOT (weval) off, every WASI feature of the engine
// disabled so the pack never reads WASI clocks or randomness.
// (In this repository the toolchain's path comes from the build script:
// scripts/setup-authoring installs it under target/authoring.)
const { componentize } = await import(process.env.COMPONENTIZE_JS ?? '/work/outsider/toolchains/js/node_modules/@bytecodealliance/componentize-js/src/componentize.js');
import { writeFile, mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const src = process.argv[2] ?? 'pack.js';
const out = process.argv[3] ?? 'out/pack.wasm';
const { component } = await componentize({
  sourcePath: resolve(here, src),
  witPath: resolve(here, 'wit'),
  worldName: 'pack',
  enableAot: false,
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await mkdir(resolve(here, dirname(out)), { recursive: true });
await writeFile(resolve(here, out), component);
console.log(`wrote ${out} (${component.length} bytes)`);
