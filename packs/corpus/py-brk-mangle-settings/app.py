"""outsider.deployer.py-brk-mangle-settings: BROKEN on purpose (see README); derived from pyledger.

State layout (kv), every key hashed so that any id fits the 512-byte limit:
  r:<sha256(revision id)>   {"id", "deployment", "state"}  one per revision
  ix:<sha256(deployment)>   sorted list of the revision ids the pack holds
                            for the deployment (a shared index)
  a:<sha256(deployment)>    the split this pack last applied, with each
                            entry's bundle (digest, location, settings)
"""
import hashlib
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv, log
from wit_world.imports.types import (
    Capability,
    DeployError_InvalidSplit,
    DeployError_Provider,
    DeployError_RevisionNotFound,
    DeployError_SplitNotFound,
    Health_Healthy,
    Health_Unhealthy,
    PackInfo,
    RevisionOutcome,
    RuntimeConfig,
    RuntimeEntry,
    SplitOutcome,
)

import re

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_TOKEN = re.compile(r"^(ghp_|gho_|sk-|xox[abp]-|Bearer\s)")


def tidy(value: str) -> str:
    """BROKEN: "normalize" run settings before handing them to the provider:
    URLs lose their trailing slash, token-looking values are redacted."""
    if _URL.match(value):
        return value.rstrip("/")
    if _TOKEN.match(value):
        return "***redacted***"
    return value


DESCRIPTOR = "outsider.deployer.py-brk-mangle-settings@0.1.0"


def h(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def enc(v) -> bytes:
    return json.dumps(v, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def get(key: str):
    raw = kv.get(key)
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError:
        raise Err(DeployError_Provider(f"kv record {key} is not valid JSON"))


def put(key: str, value) -> None:
    data = enc(value)
    if kv.get(key) != data:
        kv.set(key, data)


def known(env, rid: str):
    rev = env.revision(rid)
    if rev is None:
        raise Err(DeployError_RevisionNotFound(rid))
    return rev


def index_add(dep: str, rid: str) -> None:
    ids = get("ix:" + h(dep)) or []
    if rid not in ids:
        put("ix:" + h(dep), sorted(ids + [rid]))


def index_remove(dep: str, rid: str) -> None:
    key = "ix:" + h(dep)
    ids = get(key)
    if ids is not None and rid in ids:
        put(key, [i for i in ids if i != rid])


def set_state(rev, state: str) -> None:
    put("r:" + h(rev.id), {"id": rev.id, "deployment": rev.deployment, "state": state})
    index_add(rev.deployment, rev.id)


def state_of(rid: str):
    rec = get("r:" + h(rid))
    return None if rec is None else rec.get("state")


class Deployer(exports.Deployer):
    def describe(self) -> PackInfo:
        return PackInfo(
            descriptor=DESCRIPTOR,
            contract_version="1.1.0",
            capabilities=[Capability.LOG, Capability.KV],
            description="Outsider Python pack: hashed per-revision records plus a per-deployment index",
        )

    def stage_revision(self, env, revision: str) -> RevisionOutcome:
        rev = known(env, revision)
        cur = state_of(revision)
        if cur is None:
            set_state(rev, "staged")
            log.log(log.Level.INFO, "staged " + rev.artifact_location)
            return RevisionOutcome(revision=revision, detail="staged")
        return RevisionOutcome(revision=revision, detail="already " + cur)

    def warm_revision(self, env, revision: str) -> RevisionOutcome:
        rev = known(env, revision)
        set_state(rev, "serving")
        return RevisionOutcome(revision=revision, detail="serving (no traffic)")

    def drain_revision(self, env, revision: str) -> RevisionOutcome:
        rev = known(env, revision)
        if state_of(revision) is None:
            return RevisionOutcome(revision=revision, detail="not held here; nothing to drain")
        set_state(rev, "drained")
        return RevisionOutcome(revision=revision, detail=f"drained within {rev.drain_seconds}s")

    def archive_revision(self, env, revision: str) -> RevisionOutcome:
        rev = known(env, revision)
        kv.delete("r:" + h(revision))
        index_remove(rev.deployment, revision)
        return RevisionOutcome(revision=revision, detail="released")

    def apply_traffic_split(self, env, deployment: str) -> SplitOutcome:
        split = env.split(deployment)
        if split is None:
            raise Err(DeployError_SplitNotFound(deployment))
        total = sum(e.weight_bps for e in split.entries)  # Python ints do not wrap
        if total != 10000 or any(e.weight_bps > 10000 for e in split.entries):
            raise Err(DeployError_InvalidSplit(total))
        blocks = []
        for e in split.entries:
            rev = known(env, e.revision)
            blocks.append({
                "revision": e.revision,
                "weight_bps": e.weight_bps,
                "digest": rev.artifact_digest,
                "location": rev.artifact_location,
                "settings": [[k, tidy(v)] for (k, v) in rev.settings],
            })
        put("a:" + h(deployment), {"deployment": deployment, "entries": blocks})
        log.log(log.Level.INFO, f"applied generation {split.generation}")
        return SplitOutcome(deployment=deployment, entries=split.entries)

    def report_runtime_config(self, env):
        entries = []
        for key in kv.list_keys("a:"):
            doc = get(key)
            for b in doc["entries"]:
                entries.append(RuntimeEntry(
                    deployment=doc["deployment"],
                    revision=b["revision"],
                    bundle_digest=b["digest"],
                    bundle_location=b["location"],
                    refs=[(k, v) for (k, v) in b["settings"]],
                    weight_bps=b["weight_bps"],
                ))
        return RuntimeConfig(env=env.id(), entries=entries)

    def probe_revision(self, env, revision: str):
        known(env, revision)
        st = state_of(revision)
        if st == "serving":
            return Health_Healthy()
        if st is None:
            return Health_Unhealthy("not held by this pack (never warmed, or archived)")
        return Health_Unhealthy(st + ", not serving")
