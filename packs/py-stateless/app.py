"""A stateless deployer pack in Python (componentize-py): validates each
request against the environment, logs, and answers from the request alone.
A port of packs/indie-stateless; it exists so that `host bench` can time an
interpreter pack (CPython in the component: ~18 MB) against the reference
pack. Build it with `scripts/build-python-pack`."""

from typing import Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, log, types

DESCRIPTOR = "envpack.deployer.py-stateless@0.1.0"


def _check_revision(env: environment.Environment, verb: str, rid: str) -> None:
    if env.revision(rid) is None:
        log.log(log.Level.WARN, f"{verb}: revision {rid!r} not found")
        raise Err(types.DeployError_RevisionNotFound(rid))


def _revision_verb(env: environment.Environment, verb: str, rid: str) -> types.RevisionOutcome:
    _check_revision(env, verb, rid)
    log.log(log.Level.INFO, f"{verb}: revision {rid!r} (nothing to do, stateless)")
    return types.RevisionOutcome(revision=rid, detail="")


class Deployer(exports.Deployer):
    def describe(self) -> types.PackInfo:
        return types.PackInfo(
            descriptor=DESCRIPTOR,
            contract_version="1.1.0",
            capabilities=[types.Capability.LOG],
            description="Stateless pack in Python: validates and logs, keeps no state",
        )

    def stage_revision(self, env: environment.Environment, revision: str) -> types.RevisionOutcome:
        return _revision_verb(env, "stage", revision)

    def warm_revision(self, env: environment.Environment, revision: str) -> types.RevisionOutcome:
        return _revision_verb(env, "warm", revision)

    def drain_revision(self, env: environment.Environment, revision: str) -> types.RevisionOutcome:
        return _revision_verb(env, "drain", revision)

    def archive_revision(self, env: environment.Environment, revision: str) -> types.RevisionOutcome:
        return _revision_verb(env, "archive", revision)

    def apply_traffic_split(self, env: environment.Environment, deployment: str) -> types.SplitOutcome:
        split = env.split(deployment)
        if split is None:
            log.log(log.Level.WARN, f"apply: deployment {deployment!r} has no split")
            raise Err(types.DeployError_SplitNotFound(deployment))
        total = sum(entry.weight_bps for entry in split.entries)
        if total != 10000 or any(entry.weight_bps > 10000 for entry in split.entries):
            log.log(log.Level.WARN, f"apply: split of {deployment!r} is invalid (sum {total})")
            raise Err(types.DeployError_InvalidSplit(total))
        log.log(
            log.Level.INFO,
            f"apply: deployment {deployment!r} generation {split.generation} ({len(split.entries)} entries)",
        )
        return types.SplitOutcome(deployment=deployment, entries=split.entries)

    def report_runtime_config(self, env: environment.Environment) -> Optional[types.RuntimeConfig]:
        log.log(log.Level.DEBUG, "report: no own view, the host's projection stands")
        return None

    def probe_revision(self, env: environment.Environment, revision: str) -> types.Health:
        _check_revision(env, "probe", revision)
        log.log(log.Level.DEBUG, f"probe: {revision!r}: no way to probe")
        return types.Health_Unsupported()
