// Builds the pack: node build.mjs [OUT] (default static-site-js.wasm here),
// with ComponentizeJS from ../../target/authoring/js (scripts/setup-authoring)
// or from node_modules. The runtime's WASI features are disabled: they read
// clocks and randomness, the undeclared capability `clock`. The
// ahead-of-time compiler stays off.
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { existsSync } from 'node:fs';

const here = dirname(fileURLToPath(import.meta.url));
const pinned = join(here, '../../target/authoring/js/node_modules/@bytecodealliance/componentize-js/src/componentize.js');
const { componentize } = await import(existsSync(pinned) ? pathToFileURL(pinned).href : '@bytecodealliance/componentize-js');
const out = resolve(process.argv[2] ?? join(here, 'static-site-js.wasm'));
const { component } = await componentize({
  sourcePath: join(here, 'pack.js'),
  witPath: join(here, '../../wit/history/1.1.0'),
  worldName: 'pack',
  enableAot: false,
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
