"""envpack.deployer.static-site-py: publishes static sites, in Python.

Each revision's artifact is a .tar.gz of a site. `stage` fetches it into
the environment's work directory (the host checks its digest);
`apply-traffic-split` publishes the deployment: it unpacks the site of the
split's heaviest entry (the first of equal ones) into `site-<deployment>.next`
and renames that to `site-<deployment>`, the directory a web server serves.
Static files take no traffic fractions: a split's other entries are
recorded and reported, not served.

Capabilities: `log`, `kv` (what each revision is, what was published) and
`process`, granted these commands (`host env create --allow-run ...`):

    tar -xzf {path} -C {path} --no-same-owner
    mkdir -p {path}
    rm -rf {path}
    mv {path} {path}

Built with `componentize-py -d wit -w pack componentize --stub-wasi app`
(see build.sh): without --stub-wasi the interpreter reads WASI clocks and
randomness, which count as the undeclared capability `clock`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv, log, process, types
from wit_world.imports.environment import Environment

DESCRIPTOR = "envpack.deployer.static-site-py@1.0.0"
CONTRACT = "1.1.0"
TIMEOUT_MS = 1500

STAGED, WARM, DRAINED = "staged", "warm", "drained"


def info(message: str) -> None:
    log.log(log.Level.INFO, message)


def provider(message: str) -> Err:
    log.log(log.Level.ERROR, message)
    return Err(types.DeployError_Provider(message))


def find_revision(env: Environment, revision: str) -> types.Revision:
    found = env.revision(revision)
    if found is None:
        raise Err(types.DeployError_RevisionNotFound(revision))
    return found


def record(revision: str):
    """What the pack knows of a revision: {"state": ..., "dir": ...} or None."""
    raw = kv.get("rev/" + revision)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        if value["state"] in (STAGED, WARM, DRAINED):
            return value
    except (ValueError, KeyError, TypeError):
        pass
    raise provider(f"the record of revision {revision} is corrupt")


def save(revision: str, state: str, directory: str) -> None:
    kv.set("rev/" + revision, json.dumps({"state": state, "dir": directory}).encode())


def describe_error(error) -> str:
    value = getattr(error, "value", error)
    return f"{type(error).__name__.split('_')[-1]}: {value}"


def run(command: str, args: list, cwd: str = "") -> None:
    """Runs a granted command in the work directory to completion."""
    line = " ".join([command] + args)
    try:
        started = process.spawn(process.SpawnRequest(command=command, args=args, env=[], cwd=cwd))
        done = process.wait(started.id, TIMEOUT_MS)
    except Err as e:
        raise provider(f"{line}: {describe_error(e.value)}")
    if isinstance(done.state, process.ProcessState_Running):
        try:
            process.send_signal(done.id, process.Signal.KILL)
        except Err:
            pass
        raise provider(f"{line} did not finish within {TIMEOUT_MS} ms")
    if done.state.value != 0:
        raise provider(f"{line} failed (exit {done.state.value}); its stderr is {done.stderr_path}")


def fnv1a(text: str) -> str:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def site_name(deployment: str) -> str:
    """`site-<deployment>`, the deployment written with safe bytes only
    (and hashed when long): a directory name in the work directory."""
    safe = "".join(
        chr(b) if b < 128 and (chr(b).isalnum() or chr(b) in "-_") else f"%{b:02x}" for b in deployment.encode()
    )
    if len(safe) > 100:
        safe = safe[:48] + "~" + fnv1a(deployment)
    return "site-" + safe


def transition(env: Environment, verb: str, revision: str, allowed: tuple, to: str) -> types.RevisionOutcome:
    info(f"{verb} {revision}")
    find_revision(env, revision)
    current = record(revision)
    state = current["state"] if current else None
    if state == to:
        return types.RevisionOutcome(revision=revision, detail=f"already {to}")
    if state not in allowed:
        raise provider(f"cannot {verb} revision {revision}: it is {state or 'not staged'} here")
    save(revision, to, current["dir"])
    return types.RevisionOutcome(revision=revision, detail=to)


def applied_split(deployment: str) -> dict:
    raw = kv.get("split/" + deployment)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise provider(f"the applied split of {deployment} is corrupt")


def publish(revision_dir: str, site: str) -> None:
    """Unpacks the revision's site beside the served one, then swaps them."""
    run("rm", ["-rf", site + ".next"])
    run("mkdir", ["-p", site + ".next"])
    run("tar", ["-xzf", revision_dir + "/artifact", "-C", site + ".next", "--no-same-owner"])
    run("rm", ["-rf", site])
    run("mv", [site + ".next", site])


class Deployer(exports.Deployer):
    def describe(self) -> types.PackInfo:
        return types.PackInfo(
            descriptor=DESCRIPTOR,
            contract_version=CONTRACT,
            capabilities=[types.Capability.LOG, types.Capability.KV, types.Capability.PROCESS],
            description="Publishes static sites from .tar.gz revisions into a served directory (Python)",
        )

    def stage_revision(self, env: Environment, revision: str) -> types.RevisionOutcome:
        info(f"stage {revision}")
        find_revision(env, revision)
        current = record(revision)
        if current and current["state"] in (STAGED, WARM):
            return types.RevisionOutcome(revision=revision, detail=f"already {current['state']}")
        try:
            artifact = process.fetch_artifact(env, revision)
        except Err as e:
            raise provider(f"fetch-artifact: {describe_error(e.value)}")
        save(revision, STAGED, artifact.rsplit("/", 1)[0])
        return types.RevisionOutcome(revision=revision, detail=f"fetched to {artifact}")

    def warm_revision(self, env: Environment, revision: str) -> types.RevisionOutcome:
        # Static files need no process: warm means "may be published".
        return transition(env, "warm", revision, (STAGED, DRAINED), WARM)

    def drain_revision(self, env: Environment, revision: str) -> types.RevisionOutcome:
        return transition(env, "drain", revision, (STAGED, WARM), DRAINED)

    def archive_revision(self, env: Environment, revision: str) -> types.RevisionOutcome:
        info(f"archive {revision}")
        find_revision(env, revision)
        current = record(revision)
        if current:
            run("rm", ["-rf", current["dir"]])
            kv.delete("rev/" + revision)
        return types.RevisionOutcome(revision=revision, detail="released")

    def apply_traffic_split(self, env: Environment, deployment: str) -> types.SplitOutcome:
        info(f"apply-traffic-split {deployment}")
        split = env.split(deployment)
        if split is None:
            raise Err(types.DeployError_SplitNotFound(deployment))
        total = sum(e.weight_bps for e in split.entries)
        if not split.entries or total != 10000 or any(e.weight_bps > 10000 for e in split.entries):
            raise Err(types.DeployError_InvalidSplit(total))
        for entry in split.entries:
            find_revision(env, entry.revision)
        served = None
        for entry in split.entries:
            if entry.weight_bps == 0:
                continue
            current = record(entry.revision)
            if not current or current["state"] != WARM:
                raise provider(f"revision {entry.revision} has {entry.weight_bps} bps but is not warm; warm it first")
            if served is None or entry.weight_bps > served[2]:
                served = (entry.revision, current["dir"], entry.weight_bps)
        applied = applied_split(deployment)
        if applied.get("served") != served[0]:
            publish(served[1], site_name(deployment))
        applied = {"entries": [[e.revision, e.weight_bps] for e in split.entries], "served": served[0]}
        kv.set("split/" + deployment, json.dumps(applied).encode())
        return types.SplitOutcome(deployment=deployment, entries=split.entries)

    def report_runtime_config(self, env: Environment):
        entries = []
        for deployment in env.deployments():
            for revision, weight in applied_split(deployment).get("entries", []):
                found = find_revision(env, revision)
                entries.append(types.RuntimeEntry(
                    deployment=deployment,
                    revision=revision,
                    bundle_digest=found.artifact_digest,
                    bundle_location=found.artifact_location,
                    refs=found.settings,
                    weight_bps=weight,
                ))
        return types.RuntimeConfig(env=env.id(), entries=entries)

    def probe_revision(self, env: Environment, revision: str) -> types.Health:
        find_revision(env, revision)
        current = record(revision)
        if current and current["state"] == WARM:
            return types.Health_Healthy()
        state = current["state"] if current else "not staged"
        return types.Health_Unhealthy(f"revision is {state} here")
