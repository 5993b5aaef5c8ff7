// outsider.deployer.js-brk-echo-order: BROKEN on purpose (see README); derived from
// jsstateless, a JavaScript deployer pack (ComponentizeJS)
// that keeps no state at all. Its provider is "nothing to hold": every verb
// validates its input against the environment and logs what it would do;
// probe says `unsupported`; the runtime config is the host's projection.
import { log } from 'envpack:deployer/log@1.1.0';

function known(env, id) {
  const rev = env.revision(id);
  if (rev === undefined || rev === null) {
    throw { tag: 'revision-not-found', val: id };
  }
  return rev;
}

function revisionVerb(what) {
  return (env, revision) => {
    const rev = known(env, revision);
    log('info', `${what} ${rev.deployment}/${rev.id} (${rev.artifactDigest})`);
    return { revision, detail: `${what}: nothing held` };
  };
}

export const deployer = {
  describe() {
    return {
      descriptor: 'outsider.deployer.js-brk-echo-order@0.1.0',
      contractVersion: '1.1.0',
      capabilities: ['log'],
      description: 'Outsider JavaScript pack: stateless, accepts the host projection',
    };
  },
  stageRevision: revisionVerb('stage'),
  warmRevision: revisionVerb('warm'),
  drainRevision: revisionVerb('drain'),
  archiveRevision: revisionVerb('archive'),
  applyTrafficSplit(env, deployment) {
    const split = env.split(deployment);
    if (split === undefined || split === null) {
      throw { tag: 'split-not-found', val: deployment };
    }
    let sum = 0n;
    let over = false;
    for (const e of split.entries) {
      sum += BigInt(e.weightBps);
      if (e.weightBps > 10000) over = true;
    }
    if (over || sum !== 10000n) {
      throw { tag: 'invalid-split', val: sum };
    }
    for (const e of split.entries) known(env, e.revision);
    log('info', `route ${deployment} generation ${split.generation}`);
    // BROKEN: the provider gets (and the outcome echoes) the entries heaviest
    // first, not in the recorded order.
    const applied = [...split.entries].sort((a, b) => b.weightBps - a.weightBps);
    return { deployment, entries: applied };
  },
  reportRuntimeConfig(env) {
    return undefined;
  },
  probeRevision(env, revision) {
    known(env, revision);
    return { tag: 'unsupported' };
  },
};
