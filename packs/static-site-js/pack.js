// envpack.deployer.static-site-js: publishes static sites, in JavaScript.
//
// Each revision's artifact is a .tar.gz of a site. `stage` fetches it into
// the environment's work directory (the host checks its digest);
// `apply-traffic-split` publishes the deployment: it unpacks the site of the
// split's heaviest entry (the first of equal ones) into
// `site-<deployment>.next` and renames that to `site-<deployment>`, the
// directory a web server serves. Static files take no traffic fractions: a
// split's other entries are recorded and reported, not served.
//
// Capabilities: `log`, `kv` (what each revision is, what was published) and
// `process`, granted these commands (`host env create --allow-run ...`):
//
//     tar -xzf {path} -C {path} --no-same-owner
//     mkdir -p {path}
//     rm -rf {path}
//     mv {path} {path}
//
// Built with ComponentizeJS with the runtime's WASI features disabled (see
// build.mjs): StarlingMonkey otherwise reads WASI clocks and randomness,
// which count as the undeclared capability `clock`.

import { log } from 'envpack:deployer/log@1.1.0';
import * as kv from 'envpack:deployer/kv@1.1.0';
import * as process from 'envpack:deployer/process@1.1.0';

const DESCRIPTOR = 'envpack.deployer.static-site-js@1.0.0';
const CONTRACT = '1.1.0';
const TIMEOUT_MS = 1500;

const STAGED = 'staged';
const WARM = 'warm';
const DRAINED = 'drained';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const info = (message) => log('info', message);

function provider(message) {
  log('error', message);
  return { tag: 'provider', val: message };
}

function findRevision(env, id) {
  const revision = env.revision(id);
  if (revision === undefined) {
    throw { tag: 'revision-not-found', val: id };
  }
  return revision;
}

// An error an import returned: ComponentizeJS throws it with the WIT
// variant as `payload`.
function describeError(e) {
  const variant = e && e.payload !== undefined ? e.payload : e;
  return variant && variant.tag !== undefined ? `${variant.tag}: ${variant.val}` : String(e);
}

// What the pack knows of a revision: { state, dir } or undefined.
function record(id) {
  const raw = kv.get(`rev/${id}`);
  if (raw === undefined) {
    return undefined;
  }
  try {
    const value = JSON.parse(decoder.decode(raw));
    if ([STAGED, WARM, DRAINED].includes(value.state)) {
      return value;
    }
  } catch (e) {
    // corrupt: below
  }
  throw provider(`the record of revision ${id} is corrupt`);
}

function save(id, state, dir) {
  kv.set(`rev/${id}`, encoder.encode(JSON.stringify({ state, dir })));
}

function appliedSplit(deployment) {
  const raw = kv.get(`split/${deployment}`);
  if (raw === undefined) {
    return {};
  }
  try {
    return JSON.parse(decoder.decode(raw));
  } catch (e) {
    throw provider(`the applied split of ${deployment} is corrupt`);
  }
}

// Runs a granted command in the work directory to completion.
function run(command, args) {
  const line = [command, ...args].join(' ');
  let done;
  try {
    const started = process.spawn({ command, args, env: [], cwd: '' });
    done = process.wait(started.id, TIMEOUT_MS);
  } catch (e) {
    throw provider(`${line}: ${describeError(e)}`);
  }
  if (done.state.tag === 'running') {
    try {
      process.sendSignal(done.id, 'kill');
    } catch (e) {
      // gone already
    }
    throw provider(`${line} did not finish within ${TIMEOUT_MS} ms`);
  }
  if (done.state.val !== 0) {
    throw provider(`${line} failed (exit ${done.state.val}); its stderr is ${done.stderrPath}`);
  }
}

// 64-bit FNV-1a of the UTF-8 bytes, as 16 hex digits.
function fnv1a(bytes) {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) {
    h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, '0');
}

// `site-<deployment>`, the deployment written with safe bytes only (and
// hashed when long): a directory name in the work directory.
function siteName(deployment) {
  const bytes = encoder.encode(deployment);
  let safe = '';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    safe += b < 128 && /[A-Za-z0-9_-]/.test(c) ? c : `%${b.toString(16).padStart(2, '0')}`;
  }
  if (safe.length > 100) {
    safe = `${safe.slice(0, 48)}~${fnv1a(bytes)}`;
  }
  return `site-${safe}`;
}

// Unpacks the revision's site beside the served one, then swaps them.
function publish(revisionDir, site) {
  run('rm', ['-rf', `${site}.next`]);
  run('mkdir', ['-p', `${site}.next`]);
  run('tar', ['-xzf', `${revisionDir}/artifact`, '-C', `${site}.next`, '--no-same-owner']);
  run('rm', ['-rf', site]);
  run('mv', [`${site}.next`, site]);
}

function transition(env, verb, id, allowed, to) {
  info(`${verb} ${id}`);
  findRevision(env, id);
  const current = record(id);
  const state = current?.state;
  if (state === to) {
    return { revision: id, detail: `already ${to}` };
  }
  if (!allowed.includes(state)) {
    throw provider(`cannot ${verb} revision ${id}: it is ${state ?? 'not staged'} here`);
  }
  save(id, to, current.dir);
  return { revision: id, detail: to };
}

export const deployer = {
  describe() {
    return {
      descriptor: DESCRIPTOR,
      contractVersion: CONTRACT,
      capabilities: ['log', 'kv', 'process'],
      description: 'Publishes static sites from .tar.gz revisions into a served directory (JavaScript)',
    };
  },

  stageRevision(env, id) {
    info(`stage ${id}`);
    findRevision(env, id);
    const current = record(id);
    if (current && (current.state === STAGED || current.state === WARM)) {
      return { revision: id, detail: `already ${current.state}` };
    }
    let artifact;
    try {
      artifact = process.fetchArtifact(env, id);
    } catch (e) {
      throw provider(`fetch-artifact: ${describeError(e)}`);
    }
    save(id, STAGED, artifact.slice(0, artifact.lastIndexOf('/')));
    return { revision: id, detail: `fetched to ${artifact}` };
  },

  // Static files need no process: warm means "may be published".
  warmRevision(env, id) {
    return transition(env, 'warm', id, [STAGED, DRAINED], WARM);
  },

  drainRevision(env, id) {
    return transition(env, 'drain', id, [STAGED, WARM], DRAINED);
  },

  archiveRevision(env, id) {
    info(`archive ${id}`);
    findRevision(env, id);
    const current = record(id);
    if (current) {
      run('rm', ['-rf', current.dir]);
      kv.delete(`rev/${id}`);
    }
    return { revision: id, detail: 'released' };
  },

  applyTrafficSplit(env, deployment) {
    info(`apply-traffic-split ${deployment}`);
    const split = env.split(deployment);
    if (split === undefined) {
      throw { tag: 'split-not-found', val: deployment };
    }
    const total = split.entries.reduce((sum, e) => sum + BigInt(e.weightBps), 0n);
    if (split.entries.length === 0 || total !== 10000n || split.entries.some((e) => e.weightBps > 10000)) {
      throw { tag: 'invalid-split', val: total };
    }
    for (const entry of split.entries) {
      findRevision(env, entry.revision);
    }
    let served;
    for (const entry of split.entries) {
      if (entry.weightBps === 0) {
        continue;
      }
      const current = record(entry.revision);
      if (!current || current.state !== WARM) {
        throw provider(`revision ${entry.revision} has ${entry.weightBps} bps but is not warm; warm it first`);
      }
      if (served === undefined || entry.weightBps > served.weight) {
        served = { revision: entry.revision, dir: current.dir, weight: entry.weightBps };
      }
    }
    if (appliedSplit(deployment).served !== served.revision) {
      publish(served.dir, siteName(deployment));
    }
    const applied = { entries: split.entries.map((e) => [e.revision, e.weightBps]), served: served.revision };
    kv.set(`split/${deployment}`, encoder.encode(JSON.stringify(applied)));
    return { deployment, entries: split.entries };
  },

  reportRuntimeConfig(env) {
    const entries = [];
    for (const deployment of env.deployments()) {
      for (const [revision, weightBps] of appliedSplit(deployment).entries ?? []) {
        const found = findRevision(env, revision);
        entries.push({
          deployment,
          revision,
          bundleDigest: found.artifactDigest,
          bundleLocation: found.artifactLocation,
          refs: found.settings,
          weightBps,
        });
      }
    }
    return { env: env.id(), entries };
  },

  probeRevision(env, id) {
    findRevision(env, id);
    const current = record(id);
    if (current?.state === WARM) {
      return { tag: 'healthy' };
    }
    return { tag: 'unhealthy', val: `revision is ${current?.state ?? 'not staged'} here` };
  },
};
