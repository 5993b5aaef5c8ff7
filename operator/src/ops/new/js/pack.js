// {{name}}: an envpack deployer pack, in JavaScript (ComponentizeJS).
//
// Its "provider" is the host's `kv` capability: one key per revision
// (`rev/<id>` -> staged | warm | drained) and one per deployment
// (`split/<deployment>` -> the entries last applied, as JSON). Replace the
// bodies of the verbs with calls to your provider; keep the order every verb
// follows: validate (spec errors, no side effect), act, echo.
//
// How WIT maps to JavaScript here: functions and record fields are
// camelCase (`stageRevision`, `weightBps`); enums are lowercase strings
// ('info', 'kv'); variants are `{ tag, val }` with kebab-case tags; `u64`
// is a BigInt; `option` is a value or `undefined`; `list<u8>` is a
// Uint8Array; an error result is thrown as the variant `{ tag, val }`.

import { log } from 'envpack:deployer/log@{{contract}}';
import * as kv from 'envpack:deployer/kv@{{contract}}';

const DESCRIPTOR = '{{descriptor}}';
// The version of the WIT package in wit/deployer.wit this pack is built with.
const CONTRACT = '{{contract}}';

const STAGED = 'staged';
const WARM = 'warm';
const DRAINED = 'drained';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const info = (message) => log('info', message);

// A provider error: the message must say what failed.
const provider = (message) => ({ tag: 'provider', val: message });

// The revision a verb names, or the spec error for an unknown id.
function findRevision(env, id) {
  const revision = env.revision(id);
  if (revision === undefined) {
    throw { tag: 'revision-not-found', val: id };
  }
  return revision;
}

function stateOf(id) {
  const raw = kv.get(`rev/${id}`);
  if (raw === undefined) {
    return undefined;
  }
  const state = decoder.decode(raw);
  if (state !== STAGED && state !== WARM && state !== DRAINED) {
    throw provider(`the record of revision ${id} is corrupt: ${JSON.stringify(state)}`);
  }
  return state;
}

// Moves a revision to `to` if its provider state is one of `allowed`
// (already `to` succeeds too: every verb is idempotent).
function transition(env, verb, id, allowed, to) {
  info(`${verb} ${id}`);
  const revision = findRevision(env, id);
  const current = stateOf(id);
  if (current === to) {
    return { revision: id, detail: `already ${to}` };
  }
  if (!allowed.includes(current)) {
    throw provider(`cannot ${verb} revision ${id}: it is ${current ?? 'absent'} on this provider`);
  }
  kv.set(`rev/${id}`, encoder.encode(to));
  return { revision: id, detail: `${to} at ${revision.artifactLocation}` };
}

function appliedEntries(deployment) {
  const raw = kv.get(`split/${deployment}`);
  if (raw === undefined) {
    return [];
  }
  try {
    return JSON.parse(decoder.decode(raw)).map(([revision, weightBps]) => ({ revision, weightBps }));
  } catch (e) {
    throw provider(`the applied split of ${deployment} is corrupt: ${e}`);
  }
}

export const deployer = {
  describe() {
    // Pure: no capability calls here.
    return {
      descriptor: DESCRIPTOR,
      contractVersion: CONTRACT,
      capabilities: ['log', 'kv'],
      description: '{{description}}',
    };
  },

  stageRevision(env, id) {
    // From warm too: the host re-stages a revision whose warm failed
    // (failed -> staged), whatever the provider did before the failure.
    return transition(env, 'stage', id, [undefined, DRAINED, WARM], STAGED);
  },

  warmRevision(env, id) {
    return transition(env, 'warm', id, [STAGED, DRAINED], WARM);
  },

  drainRevision(env, id) {
    return transition(env, 'drain', id, [STAGED, WARM], DRAINED);
  },

  archiveRevision(env, id) {
    info(`archive ${id}`);
    findRevision(env, id);
    // Release whatever the revision holds, whatever its state.
    kv.delete(`rev/${id}`);
    return { revision: id, detail: 'released' };
  },

  applyTrafficSplit(env, deployment) {
    info(`apply-traffic-split ${deployment}`);
    const split = env.split(deployment);
    if (split === undefined) {
      throw { tag: 'split-not-found', val: deployment };
    }
    // The contract wants the sum in u64: a BigInt never wraps.
    const total = split.entries.reduce((sum, e) => sum + BigInt(e.weightBps), 0n);
    if (split.entries.length === 0 || total !== 10000n || split.entries.some((e) => e.weightBps > 10000)) {
      throw { tag: 'invalid-split', val: total };
    }
    for (const entry of split.entries) {
      findRevision(env, entry.revision);
    }
    for (const entry of split.entries) {
      if (entry.weightBps > 0 && stateOf(entry.revision) !== WARM) {
        throw provider(`revision ${entry.revision} has ${entry.weightBps} bps but is not warm; warm it first`);
      }
    }
    const record = split.entries.map((e) => [e.revision, e.weightBps]);
    kv.set(`split/${deployment}`, encoder.encode(JSON.stringify(record)));
    return { deployment, entries: split.entries };
  },

  reportRuntimeConfig(env) {
    const entries = [];
    for (const deployment of env.deployments()) {
      for (const entry of appliedEntries(deployment)) {
        const revision = findRevision(env, entry.revision);
        entries.push({
          deployment,
          revision: entry.revision,
          bundleDigest: revision.artifactDigest,
          bundleLocation: revision.artifactLocation,
          refs: revision.settings,
          weightBps: entry.weightBps,
        });
      }
    }
    return { env: env.id(), entries };
  },

  probeRevision(env, id) {
    findRevision(env, id);
    const state = stateOf(id);
    if (state === WARM) {
      return { tag: 'healthy' };
    }
    return { tag: 'unhealthy', val: `revision is ${state ?? 'not staged'} on this provider` };
  },
};
