//! Analysis gates: what a rollout watches during each soak, and when it
//! says the new revision misbehaves. A gate is one of: the pack's
//! `probe-revision` (N unhealthy answers in a row fail it), GETs the host
//! sends itself (more than a ratio of a bounded number answered otherwise
//! than expected fail it; loopback or granted origins only), an
//! allow-listed command (a non-zero exit fails it), a Prometheus query
//! about the canary (see [`super::prometheus`]), or a manual judgement
//! (the soak holds until `rollout continue`).

use std::time::Duration;

use envpack_model::Grants;
use serde::{Deserialize, Serialize};

use super::prometheus::{Metric, Reading};

/// How long one HTTP request or command of a gate may take.
pub const GATE_CALL_LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Gate {
    /// `probe-revision` of the new revision: `unhealthy` unhealthy answers
    /// in a row fail it.
    Probe { unhealthy: u32 },
    /// Up to `requests` GETs of `url` per soak, one per evaluation: more
    /// than `max_error_ratio` of `requests` answered otherwise than
    /// `status` (or not at all) fail it.
    Http {
        url: String,
        status: u16,
        max_error_ratio: f64,
        requests: u32,
    },
    /// A command the environment grants, run once per evaluation: a
    /// non-zero exit (or no exit within 10 s) fails it.
    Command { command: String, args: Vec<String> },
    /// A PromQL query about the canary against a threshold.
    Prometheus(Metric),
    /// Holds each soak, once its time is up, until `rollout continue`.
    Manual,
}

const HTTP_OPTIONS: [&str; 3] = ["status", "max-error-ratio", "requests"];

/// An HTTP gate's URL starting with this goes to the canary alone, at the
/// base URL its pack gives (`revision-endpoint`, contract 1.2).
pub const CANARY: &str = "{{canary}}";

/// What the `--analysis` help says: the defaults are those applied.
pub const GATES_HELP: &str = "probe[=N] (N unhealthy answers in a row fail it; default 3); \
http=URL[,status=200][,max-error-ratio=0][,requests=20] (more than the ratio of `requests` GETs answered otherwise than `status` fail it; defaults shown; \
a URL starting {{canary}} (e.g. {{canary}}/healthz) goes to the new revision alone, at the address its pack gives, contract 1.2); \
prometheus=URL[,max=X][,min=X][,min-samples=3][,failures=2][,inconclusive=5][,on-inconclusive=pause|rollback],query=PROMQL \
(a result above max or below min is bad; `failures` bad results in a row fail it; a soak needs `min-samples` conclusive results; \
after `inconclusive` results in a row with no data, NaN or Prometheus down it pauses or rolls back; {{revision}}, {{deployment}}, {{environment}} in the query are replaced); \
command=NAME [ARG...] (a granted command; a non-zero exit fails it); \
manual (each soak holds until `host rollout continue`)";

/// What one evaluation of a gate says.
#[derive(Debug, PartialEq)]
pub enum Judgement {
    Fine,
    /// The gate failed: the rollout rolls back.
    Failed(String),
    /// Too many inconclusive results: pause or roll back, as asked.
    Inconclusive(String),
}

impl Gate {
    /// One gate as [`GATES_HELP`] writes it.
    pub fn parse(text: &str) -> Result<Gate, String> {
        let (kind, rest) = text.split_once('=').unwrap_or((text, ""));
        match kind {
            "manual" if rest.is_empty() => Ok(Gate::Manual),
            "manual" => Err(format!("--analysis manual takes no value, got {rest:?}")),
            "prometheus" => Metric::parse(rest).map(Gate::Prometheus),
            "probe" => {
                let unhealthy = if rest.is_empty() { 3 } else { number(rest, "probe")? };
                if unhealthy == 0 {
                    return Err("--analysis probe=N needs N above 0".into());
                }
                Ok(Gate::Probe {
                    unhealthy: u32::try_from(unhealthy).map_err(|_| "--analysis probe=N: N is too large")?,
                })
            }
            "http" => http(rest),
            "command" => {
                let mut words = rest.split_whitespace().map(String::from);
                let command = words
                    .next()
                    .ok_or("--analysis command=NAME needs a command (one the environment grants with --allow-run)")?;
                Ok(Gate::Command {
                    command,
                    args: words.collect(),
                })
            }
            other => Err(format!(
                "unknown gate {other:?}: use probe[=N], http=URL[,...], prometheus=URL[,...],query=PROMQL, command=NAME [ARG...] or manual"
            )),
        }
    }

    /// Refuses what the environment does not allow: an HTTP gate to an
    /// origin neither loopback nor granted (`--allow-http`), a command not
    /// granted (`--allow-run`). Returns the gate with its command resolved.
    pub fn allowed(self, grants: &Grants) -> Result<Gate, String> {
        match self {
            // The canary's own address is known only when the gate runs,
            // and checked then.
            Gate::Http { ref url, .. } if url.starts_with(CANARY) => Ok(self),
            Gate::Http { ref url, .. } => {
                reachable("HTTP gate", url, grants)?;
                Ok(self)
            }
            Gate::Prometheus(ref metric) => {
                reachable("Prometheus gate", &metric.url, grants)?;
                Ok(self)
            }
            Gate::Command { command, args } => {
                let candidates: Vec<_> = grants
                    .commands(&command)
                    .filter(|c| !c.path.as_os_str().is_empty())
                    .collect();
                if candidates.is_empty() {
                    return Err(format!(
                        "the gate's command {command:?} is not granted to this environment (grant it with --allow-run '{command} PATTERN...')"
                    ));
                }
                let granted = candidates.iter().find(|c| c.allows(&args).is_ok()).ok_or_else(|| {
                    let shown: Vec<String> = candidates.iter().map(|c| format!("'{}'", c.shown())).collect();
                    format!(
                        "the gate's command {command} {args:?} matches no grant of {command} (granted: {})",
                        shown.join(", ")
                    )
                })?;
                Ok(Gate::Command {
                    command: granted.path.display().to_string(),
                    args,
                })
            }
            probe_or_manual => Ok(probe_or_manual),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Gate::Probe { .. } => "probe".into(),
            Gate::Http { url, .. } => format!("http {url}"),
            Gate::Command { command, .. } => format!("command {command}"),
            Gate::Prometheus(metric) => format!("prometheus {}", metric.url),
            Gate::Manual => "manual".into(),
        }
    }
}

/// Refuses an address a pack gave (the canary's own, `revision-endpoint`)
/// unless the pack itself may reach it: a probe target (`--allow-probe`) or
/// a granted origin (`--allow-http`). Loopback alone is not enough: the
/// host must not request, for a pack, what the pack could not.
pub fn pack_may_reach(url: &str, grants: &Grants) -> Result<(), String> {
    let origin = envpack_host::http_origin(url).ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let address = origin.split_once("://").map_or(origin.as_str(), |(_, a)| a);
    if grants.probe_allowed(address) || grants.origin_allowed(&origin) {
        Ok(())
    } else {
        Err(format!(
            "the canary's address {origin} is neither a probe target nor an origin granted to this environment (--allow-probe {address})"
        ))
    }
}

/// Refuses a gate's URL whose origin is neither loopback nor granted.
pub fn reachable(what: &str, url: &str, grants: &Grants) -> Result<(), String> {
    let origin = envpack_host::http_origin(url).ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let loopback = matches!(uri.host(), Some("localhost" | "[::1]"))
        || uri
            .host()
            .and_then(|h| h.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback());
    if !loopback && !grants.origin_allowed(&origin) {
        return Err(format!(
            "the {what}'s {origin} is neither loopback nor granted to this environment (grant it with --allow-http {origin})"
        ));
    }
    Ok(())
}

fn number(text: &str, what: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("--analysis {what}: {text:?} is not a whole number"))
}

fn http(spec: &str) -> Result<Gate, String> {
    let mut url = spec.to_string();
    let (mut status, mut max_error_ratio, mut requests) = (200, 0.0, 20);
    // Options are peeled off the end, so that the URL keeps its commas; a
    // last piece shaped like an option must be one.
    while let Some((head, option)) = url.rsplit_once(',') {
        let Some((key, value)) = option
            .split_once('=')
            .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        else {
            break;
        };
        if !HTTP_OPTIONS.contains(&key) {
            return Err(format!(
                "--analysis http: unknown option {key:?} (options: {}; write a comma inside the URL as %2C)",
                HTTP_OPTIONS.join(", ")
            ));
        }
        match key {
            "status" => {
                status = value
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (100..600).contains(s))
                    .ok_or_else(|| format!("--analysis http: status={value:?} is not an HTTP status"))?
            }
            "max-error-ratio" => {
                max_error_ratio = value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("--analysis http: max-error-ratio={value:?} is not between 0 and 1"))?
            }
            _ => {
                requests = number(value, "http requests")?;
                if !(1..=1000).contains(&requests) {
                    return Err(format!("--analysis http: requests={value} must be 1 to 1000"));
                }
            }
        }
        url = head.to_string();
    }
    if let Some(path) = url.strip_prefix(CANARY) {
        if !(path.is_empty() || path.starts_with('/')) {
            return Err(format!(
                "--analysis http={url:?}: after {CANARY} comes a path (e.g. {CANARY}/healthz)"
            ));
        }
    } else if !(url.starts_with("http://") || url.starts_with("https://")) || envpack_host::http_origin(&url).is_none()
    {
        return Err(format!("--analysis http={url:?}: not an http(s) URL"));
    }
    Ok(Gate::Http {
        url,
        status,
        max_error_ratio,
        requests: requests as u32,
    })
}

/// What one gate has seen during the current soak.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    pub gate: String,
    /// Unhealthy probe answers (bad metric results) in a row.
    pub unhealthy_in_row: u32,
    /// Requests sent and those that failed.
    pub sent: u32,
    pub errors: u32,
    /// Conclusive and inconclusive metric results.
    pub samples: u32,
    pub inconclusive: u32,
    pub inconclusive_in_row: u32,
    /// The last thing it saw, for the progress display.
    pub last: String,
}

impl Tally {
    pub fn new(gate: &Gate) -> Tally {
        Tally {
            gate: gate.name(),
            ..Tally::default()
        }
    }

    /// Records a probe answer; `Some(reason)` once the gate fails.
    pub fn probe(&mut self, unhealthy: Option<String>, limit: u32) -> Option<String> {
        match unhealthy {
            None => {
                self.unhealthy_in_row = 0;
                self.last = "healthy".into();
                None
            }
            Some(why) => {
                self.unhealthy_in_row += 1;
                self.last = format!("unhealthy ({}/{limit}): {why}", self.unhealthy_in_row);
                (self.unhealthy_in_row >= limit).then(|| {
                    format!(
                        "probe: {limit} unhealthy {} in a row, the last: {why}",
                        if limit == 1 { "answer" } else { "answers" }
                    )
                })
            }
        }
    }

    /// Records one HTTP answer; `Some(reason)` once errors exceed the ratio.
    pub fn http(&mut self, answer: Result<(), String>, max_error_ratio: f64, requests: u32) -> Option<String> {
        self.sent += 1;
        if let Err(why) = answer {
            self.errors += 1;
            self.last = why;
        } else {
            self.last = "ok".into();
        }
        let allowed = (max_error_ratio * f64::from(requests)).floor() as u32;
        (self.errors > allowed).then(|| {
            format!(
                "http: {} of {} requests failed (at most {allowed} of {requests} allowed), the last: {}",
                self.errors, self.sent, self.last
            )
        })
    }

    /// Records one metric reading.
    pub fn metric(&mut self, reading: Reading, metric: &Metric) -> Judgement {
        match reading {
            Reading::Inconclusive(why) => {
                self.inconclusive += 1;
                self.inconclusive_in_row += 1;
                self.last = format!(
                    "inconclusive ({}/{} in a row): {why}",
                    self.inconclusive_in_row, metric.inconclusive
                );
                if self.inconclusive_in_row >= metric.inconclusive {
                    return Judgement::Inconclusive(format!(
                        "prometheus: {} inconclusive results in a row, the last: {why}",
                        self.inconclusive_in_row
                    ));
                }
            }
            Reading::Value(value) => {
                self.samples += 1;
                self.inconclusive_in_row = 0;
                match metric.judge(value) {
                    None => {
                        self.unhealthy_in_row = 0;
                        self.last = format!("{value}");
                    }
                    Some(why) => {
                        self.unhealthy_in_row += 1;
                        self.last = format!("bad ({}/{}): {why}", self.unhealthy_in_row, metric.failures);
                        if self.unhealthy_in_row >= metric.failures {
                            return Judgement::Failed(format!(
                                "prometheus: {} bad results in a row, the last: {why}",
                                self.unhealthy_in_row
                            ));
                        }
                    }
                }
            }
        }
        Judgement::Fine
    }

    /// Whether the gate lets its soak end once the soak's time is up: a
    /// metric gate needs its minimum of conclusive results, a manual one
    /// an operator's `rollout continue`.
    pub fn lets_soak_end(&self, gate: &Gate) -> bool {
        match gate {
            Gate::Prometheus(metric) => self.samples >= metric.min_samples,
            Gate::Manual => false,
            _ => true,
        }
    }

    pub fn summary(&self) -> String {
        if self.sent > 0 {
            format!(
                "{}: {}/{} failed, last {}",
                self.gate, self.errors, self.sent, self.last
            )
        } else if self.samples + self.inconclusive > 0 {
            format!(
                "{}: {} results, {} inconclusive, last {}",
                self.gate, self.samples, self.inconclusive, self.last
            )
        } else {
            format!("{}: {}", self.gate, self.last)
        }
    }
}

/// One GET: `Ok` if answered with `status`.
pub async fn http_once(url: &str, status: u16) -> Result<(), String> {
    match envpack_host::http_status(url, GATE_CALL_LIMIT).await {
        Ok(got) if got == status => Ok(()),
        Ok(got) => Err(format!("answered {got}, expected {status}")),
        Err(e) => Err(e),
    }
}

/// Runs the command once: `Ok` on exit status 0.
pub async fn command_once(command: &str, args: &[String]) -> Result<(), String> {
    let child = tokio::process::Command::new(command)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {command}: {e}"))?;
    match tokio::time::timeout(GATE_CALL_LIMIT, child.wait_with_output()).await {
        Err(_) => Err(format!("{command} did not exit within {} s", GATE_CALL_LIMIT.as_secs())),
        Ok(Err(e)) => Err(format!("{command}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("").trim();
            Err(format!(
                "{command} exited with {}{}",
                out.status,
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_with_their_defaults_and_options() {
        assert_eq!(Gate::parse("probe").unwrap(), Gate::Probe { unhealthy: 3 });
        assert_eq!(Gate::parse("probe=2").unwrap(), Gate::Probe { unhealthy: 2 });
        assert!(Gate::parse("probe=0").is_err());
        assert_eq!(
            Gate::parse("http=http://127.0.0.1:8080/a,b?x=1,status=204,max-error-ratio=0.25,requests=8").unwrap(),
            Gate::Http {
                url: "http://127.0.0.1:8080/a,b?x=1".into(),
                status: 204,
                max_error_ratio: 0.25,
                requests: 8
            }
        );
        assert!(Gate::parse("http=ftp://x/").is_err());
        assert!(Gate::parse("http=http://127.0.0.1/,max-error-ratio=2").is_err());
        assert!(Gate::parse("http=http://127.0.0.1/,requests=0").is_err());
        let typo = Gate::parse("http=http://127.0.0.1/,max-errors=0.1").unwrap_err();
        assert!(typo.contains("unknown option \"max-errors\""), "{typo}");
        assert_eq!(Gate::parse("manual").unwrap(), Gate::Manual);
        assert!(matches!(
            Gate::parse("http={{canary}}/healthz,requests=5").unwrap(),
            Gate::Http { ref url, requests: 5, .. } if url == "{{canary}}/healthz"
        ));
        assert!(Gate::parse("http={{canary}}healthz").is_err());
        assert!(Gate::parse("manual=yes").is_err());
        assert!(matches!(
            Gate::parse("prometheus=http://127.0.0.1:9090,max=0.1,query=up").unwrap(),
            Gate::Prometheus(_)
        ));
        assert_eq!(
            Gate::parse("command=check --fast").unwrap(),
            Gate::Command {
                command: "check".into(),
                args: vec!["--fast".into()]
            }
        );
        assert!(Gate::parse("latency=5").unwrap_err().contains("unknown gate"));
    }

    #[test]
    fn http_gates_reach_loopback_or_granted_origins_only() {
        let gate = |url: &str| Gate::parse(&format!("http={url}")).unwrap();
        let none = Grants::default();
        assert!(gate("http://127.0.0.1:9000/").allowed(&none).is_ok());
        assert!(gate("http://localhost:9000/").allowed(&none).is_ok());
        let refused = gate("http://example.com/").allowed(&none).unwrap_err();
        assert!(refused.contains("--allow-http http://example.com:80"), "{refused}");
        let granted = Grants {
            http: vec!["http://example.com:80".into()],
            ..Grants::default()
        };
        assert!(gate("http://example.com/").allowed(&granted).is_ok());
        // An address a pack gives: only what the pack itself may reach.
        let probes = Grants {
            probe: vec!["127.0.0.1:8000-8099".into()],
            ..Grants::default()
        };
        assert!(pack_may_reach("http://127.0.0.1:8001/", &probes).is_ok());
        assert!(pack_may_reach("http://127.0.0.1:2375/containers/json", &probes).is_err());
        assert!(
            pack_may_reach("http://127.0.0.1:8001/", &none).is_err(),
            "loopback alone is not enough"
        );
        let command = Gate::parse("command=true").unwrap().allowed(&none).unwrap_err();
        assert!(command.contains("--allow-run 'true PATTERN...'"), "{command}");
    }

    #[test]
    fn tallies_fail_at_their_limits_only() {
        let mut probe = Tally::default();
        assert!(probe.probe(Some("down".into()), 2).is_none());
        assert!(probe.probe(None, 2).is_none(), "a healthy answer resets the row");
        assert!(probe.probe(Some("down".into()), 2).is_none());
        assert!(probe.probe(Some("down".into()), 2).is_some());
        let mut http = Tally::default();
        // 10% of 20 requests: two errors pass, the third fails the gate.
        assert!(http.http(Err("500".into()), 0.1, 20).is_none());
        assert!(http.http(Ok(()), 0.1, 20).is_none());
        assert!(http.http(Err("500".into()), 0.1, 20).is_none());
        assert!(http.http(Err("500".into()), 0.1, 20).is_some());
    }
}
