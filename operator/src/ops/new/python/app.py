"""{{name}}: an envpack deployer pack, in Python.

Its "provider" is the host's `kv` capability: one key per revision
(`rev/<id>` -> staged | warm | drained) and one per deployment
(`split/<deployment>` -> the entries last applied, as JSON). Replace the
bodies of the verbs with calls to your provider; keep the order every verb
follows: validate (spec errors, no side effect), act, echo.

Built with `componentize-py -d wit -w pack componentize --stub-wasi app`:
the bindings (`wit_world`) are generated from `wit/` at build time.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv, log, types
from wit_world.imports.environment import Environment

DESCRIPTOR = "{{descriptor}}"
# The version of the WIT package in wit/deployer.wit this pack is built with.
CONTRACT = "{{contract}}"

STAGED, WARM, DRAINED = "staged", "warm", "drained"


def info(message: str) -> None:
    log.log(log.Level.INFO, message)


def provider(message: str) -> Err:
    """A provider error: the message must say what failed."""
    return Err(types.DeployError_Provider(message))


def find_revision(env: Environment, revision: str) -> types.Revision:
    """The revision a verb names, or the spec error for an unknown id."""
    found = env.revision(revision)
    if found is None:
        raise Err(types.DeployError_RevisionNotFound(revision))
    return found


def state_of(revision: str):
    raw = kv.get("rev/" + revision)
    if raw is None:
        return None
    state = raw.decode("utf-8", "replace")
    if state not in (STAGED, WARM, DRAINED):
        raise provider(f"the record of revision {revision} is corrupt: {state!r}")
    return state


def transition(env: Environment, verb: str, revision: str, allowed: tuple, to: str) -> types.RevisionOutcome:
    """Moves a revision to `to` if its provider state is one of `allowed`
    (already `to` succeeds too: every verb is idempotent)."""
    info(f"{verb} {revision}")
    found = find_revision(env, revision)
    current = state_of(revision)
    if current == to:
        return types.RevisionOutcome(revision=revision, detail=f"already {to}")
    if current not in allowed:
        raise provider(f"cannot {verb} revision {revision}: it is {current or 'absent'} on this provider")
    kv.set("rev/" + revision, to.encode())
    return types.RevisionOutcome(revision=revision, detail=f"{to} at {found.artifact_location}")


def applied_entries(deployment: str) -> list:
    raw = kv.get("split/" + deployment)
    if raw is None:
        return []
    try:
        return [types.SplitEntry(revision=r, weight_bps=w) for r, w in json.loads(raw)]
    except (ValueError, TypeError) as e:
        raise provider(f"the applied split of {deployment} is corrupt: {e}")


class Deployer(exports.Deployer):
    def describe(self) -> types.PackInfo:
        # Pure: no capability calls here.
        return types.PackInfo(
            descriptor=DESCRIPTOR,
            contract_version=CONTRACT,
            capabilities=[types.Capability.LOG, types.Capability.KV],
            description="{{description}}",
        )

    def stage_revision(self, env: Environment, revision: str) -> types.RevisionOutcome:
        # From warm too: the host re-stages a revision whose warm failed
        # (failed -> staged), whatever the provider did before the failure.
        return transition(env, "stage", revision, (None, DRAINED, WARM), STAGED)

    def warm_revision(self, env: Environment, revision: str) -> types.RevisionOutcome:
        return transition(env, "warm", revision, (STAGED, DRAINED), WARM)

    def drain_revision(self, env: Environment, revision: str) -> types.RevisionOutcome:
        return transition(env, "drain", revision, (STAGED, WARM), DRAINED)

    def archive_revision(self, env: Environment, revision: str) -> types.RevisionOutcome:
        info(f"archive {revision}")
        find_revision(env, revision)
        # Release whatever the revision holds, whatever its state.
        kv.delete("rev/" + revision)
        return types.RevisionOutcome(revision=revision, detail="released")

    def apply_traffic_split(self, env: Environment, deployment: str) -> types.SplitOutcome:
        info(f"apply-traffic-split {deployment}")
        split = env.split(deployment)
        if split is None:
            raise Err(types.DeployError_SplitNotFound(deployment))
        # Python ints do not wrap: this is the u64 sum the contract wants.
        total = sum(e.weight_bps for e in split.entries)
        if not split.entries or total != 10000 or any(e.weight_bps > 10000 for e in split.entries):
            raise Err(types.DeployError_InvalidSplit(total))
        for entry in split.entries:
            find_revision(env, entry.revision)
        for entry in split.entries:
            if entry.weight_bps > 0 and state_of(entry.revision) != WARM:
                raise provider(f"revision {entry.revision} has {entry.weight_bps} bps but is not warm; warm it first")
        kv.set("split/" + deployment, json.dumps([[e.revision, e.weight_bps] for e in split.entries]).encode())
        return types.SplitOutcome(deployment=deployment, entries=split.entries)

    def report_runtime_config(self, env: Environment):
        entries = []
        for deployment in env.deployments():
            for entry in applied_entries(deployment):
                revision = find_revision(env, entry.revision)
                entries.append(
                    types.RuntimeEntry(
                        deployment=deployment,
                        revision=entry.revision,
                        bundle_digest=revision.artifact_digest,
                        bundle_location=revision.artifact_location,
                        refs=revision.settings,
                        weight_bps=entry.weight_bps,
                    )
                )
        return types.RuntimeConfig(env=env.id(), entries=entries)

    def probe_revision(self, env: Environment, revision: str) -> types.Health:
        find_revision(env, revision)
        state = state_of(revision)
        if state == WARM:
            return types.Health_Healthy()
        return types.Health_Unhealthy(f"revision is {state or 'not staged'} on this provider")
