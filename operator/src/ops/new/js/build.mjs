// Builds {{name}}.wasm from pack.js with ComponentizeJS (the version pinned
// in package.json). The language runtime's own WASI features (stdio,
// randomness, clocks, HTTP) are disabled: StarlingMonkey reads WASI clocks
// and randomness in every instance otherwise, which the host counts as the
// `clock` capability (conformance check capability.declared). The
// ahead-of-time compiler stays off (enableAot: false).
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const { component } = await componentize({
  sourcePath: 'pack.js',
  witPath: 'wit',
  worldName: 'pack',
  enableAot: false,
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile('{{name}}.wasm', component);
console.log(`wrote {{name}}.wasm (${component.length} bytes)`);
