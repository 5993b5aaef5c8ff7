//! The metric gate: a PromQL query with the canary's revision (and its
//! deployment and environment) substituted, asked of a Prometheus HTTP API
//! at every evaluation and compared with a threshold. A result with no
//! data, NaN, several series or Prometheus unreachable is inconclusive: it
//! counts neither way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The placeholders a query may hold, replaced by the rollout's own.
pub const PLACEHOLDERS: [&str; 3] = ["{{revision}}", "{{deployment}}", "{{environment}}"];

/// What the operator chose for too many inconclusive results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnInconclusive {
    /// Pause the rollout, the soak's time kept: `rollout resume` goes on.
    Pause,
    /// Roll the rollout back, as a failing gate does.
    Rollback,
}

/// A metric gate as asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The Prometheus server: `http://127.0.0.1:9090` (a path prefix kept).
    pub url: String,
    /// The PromQL template, placeholders unreplaced.
    pub query: String,
    /// A result above `max` (or below `min`) is bad.
    pub max: Option<f64>,
    pub min: Option<f64>,
    /// Conclusive results a soak needs before it may end.
    pub min_samples: u32,
    /// Bad results in a row that fail the gate.
    pub failures: u32,
    /// Inconclusive results in a row that pause (or roll back).
    pub inconclusive: u32,
    pub on_inconclusive: OnInconclusive,
}

pub const DEFAULT_MIN_SAMPLES: u32 = 3;
pub const DEFAULT_FAILURES: u32 = 2;
pub const DEFAULT_INCONCLUSIVE: u32 = 5;

const OPTIONS: [&str; 6] = [
    "max",
    "min",
    "min-samples",
    "failures",
    "inconclusive",
    "on-inconclusive",
];

/// What one evaluation found.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    Value(f64),
    Inconclusive(String),
}

impl Metric {
    /// `URL[,max=X][,min=X][,min-samples=N][,failures=N][,inconclusive=N][,on-inconclusive=pause|rollback],query=PROMQL`:
    /// the query is last and runs to the end of the text, commas included.
    pub fn parse(spec: &str) -> Result<Metric, String> {
        let bad = |what: String| format!("--analysis prometheus: {what}");
        let (head, query) = spec
            .split_once(",query=")
            .ok_or_else(|| bad("needs ,query=PROMQL as its last option".into()))?;
        let query = query.trim().to_string();
        if query.is_empty() {
            return Err(bad("the query is empty".into()));
        }
        check_placeholders(&query).map_err(bad)?;
        let mut parts = head.split(',');
        let url = parts.next().unwrap_or_default().trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) || envpack_host::http_origin(&url).is_none() {
            return Err(bad(format!("{url:?} is not an http(s) URL")));
        }
        let mut metric = Metric {
            url,
            query,
            max: None,
            min: None,
            min_samples: DEFAULT_MIN_SAMPLES,
            failures: DEFAULT_FAILURES,
            inconclusive: DEFAULT_INCONCLUSIVE,
            on_inconclusive: OnInconclusive::Pause,
        };
        for option in parts {
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| bad(format!("{option:?} is not KEY=VALUE")))?;
            let count = |what: &str| -> Result<u32, String> {
                value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad(format!("{what}={value:?} must be a whole number from 1 to 1000")))
            };
            let threshold = |what: &str| -> Result<f64, String> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad(format!("{what}={value:?} is not a number")))
            };
            match key {
                "max" => metric.max = Some(threshold(key)?),
                "min" => metric.min = Some(threshold(key)?),
                "min-samples" => metric.min_samples = count(key)?,
                "failures" => metric.failures = count(key)?,
                "inconclusive" => metric.inconclusive = count(key)?,
                "on-inconclusive" => {
                    metric.on_inconclusive = match value {
                        "pause" => OnInconclusive::Pause,
                        "rollback" => OnInconclusive::Rollback,
                        other => return Err(bad(format!("on-inconclusive={other:?}: use pause or rollback"))),
                    }
                }
                other => {
                    return Err(bad(format!(
                        "unknown option {other:?} (options: {}, then query=PROMQL last)",
                        OPTIONS.join(", ")
                    )));
                }
            }
        }
        if metric.max.is_none() && metric.min.is_none() {
            return Err(bad("needs a threshold: max=X (fail above) or min=X (fail below)".into()));
        }
        if let (Some(min), Some(max)) = (metric.min, metric.max)
            && min > max
        {
            return Err(bad(format!("min={min} is above max={max}: no result could pass")));
        }
        Ok(metric)
    }

    /// The query for this rollout's canary.
    pub fn query_for(&self, environment: &str, deployment: &str, revision: &str) -> String {
        self.query
            .replace("{{revision}}", revision)
            .replace("{{deployment}}", deployment)
            .replace("{{environment}}", environment)
    }

    /// `Some(why)` when `value` is outside the threshold.
    pub fn judge(&self, value: f64) -> Option<String> {
        if let Some(max) = self.max
            && value > max
        {
            return Some(format!("{value} is above max={max}"));
        }
        if let Some(min) = self.min
            && value < min
        {
            return Some(format!("{value} is below min={min}"));
        }
        None
    }

    /// Asks Prometheus once, before the rollout is recorded: a query it
    /// refuses as malformed (`bad_data`) could never judge anything, so it
    /// is refused now, with Prometheus's words. Unreachable, or any other
    /// answer, is left to the evaluations.
    pub async fn refused(&self, query: &str, limit: Duration) -> Option<String> {
        let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let url = format!("{}/api/v1/query?query={encoded}", self.url);
        let (_, body) = envpack_host::http_get_text(&url, limit, MAX_ANSWER_BYTES).await.ok()?;
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        (answer["errorType"] == "bad_data").then(|| {
            format!(
                "Prometheus at {} refuses the query {query:?}: {}",
                self.url,
                answer["error"].as_str().unwrap_or("bad_data")
            )
        })
    }

    /// One evaluation of `query` against the server, within `limit`.
    pub async fn read(&self, query: &str, limit: Duration) -> Reading {
        let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let url = format!("{}/api/v1/query?query={encoded}", self.url);
        match envpack_host::http_get_text(&url, limit, MAX_ANSWER_BYTES).await {
            Err(e) => Reading::Inconclusive(format!("Prometheus at {} unreachable: {e}", self.url)),
            Ok((status, body)) => interpret(status, &body),
        }
    }
}

/// Larger answers are not a single series.
const MAX_ANSWER_BYTES: usize = 1 << 20;

fn check_placeholders(query: &str) -> Result<(), String> {
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| format!("the query has an unclosed {{{{ at {:?}", &rest[start..]))?;
        let placeholder = &rest[start..start + end + 2];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(format!(
                "unknown placeholder {placeholder} in the query (known: {})",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &rest[start + end + 2..];
    }
    Ok(())
}

/// Reads the answer of `/api/v1/query`: one number, or why there is none.
pub fn interpret(status: u16, body: &str) -> Reading {
    let inconclusive = |why: String| Reading::Inconclusive(why);
    let Ok(answer) = serde_json::from_str::<serde_json::Value>(body) else {
        let head: String = body.chars().take(120).collect();
        return inconclusive(format!("Prometheus answered {status} with no JSON: {head:?}"));
    };
    if answer["status"] != "success" {
        return inconclusive(format!(
            "Prometheus answered {status}: {} {}",
            answer["errorType"].as_str().unwrap_or("error"),
            answer["error"].as_str().unwrap_or("")
        ));
    }
    let data = &answer["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => {
            let series = data["result"].as_array().map(Vec::as_slice).unwrap_or_default();
            match series {
                [] => return inconclusive("no data".into()),
                [one] => &one["value"],
                many => {
                    return inconclusive(format!(
                        "{} series, not one: aggregate the query (e.g. sum(...))",
                        many.len()
                    ));
                }
            }
        }
        other => return inconclusive(format!("a {} result, not a number", other.unwrap_or("missing"))),
    };
    match sample[1].as_str().and_then(|v| v.parse::<f64>().ok()) {
        Some(v) if v.is_nan() => inconclusive("NaN (no requests to divide by?)".into()),
        Some(v) => Reading::Value(v),
        None => inconclusive(format!("an unreadable sample {sample}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_gate_parses_with_its_defaults_and_refuses_unknown_options() {
        let m = Metric::parse(
            "http://127.0.0.1:9090/,max=0.05,query=sum(rate(x{revision=\"{{revision}}\",code=~\"5..\"}[30s]))",
        )
        .unwrap();
        assert_eq!(m.url, "http://127.0.0.1:9090");
        assert_eq!(m.max, Some(0.05));
        assert_eq!(
            (m.min_samples, m.failures, m.inconclusive, m.on_inconclusive),
            (
                DEFAULT_MIN_SAMPLES,
                DEFAULT_FAILURES,
                DEFAULT_INCONCLUSIVE,
                OnInconclusive::Pause
            )
        );
        assert_eq!(
            m.query_for("e", "web", "R2"),
            "sum(rate(x{revision=\"R2\",code=~\"5..\"}[30s]))"
        );
        let e = Metric::parse("http://127.0.0.1:9090,maxx=1,query=up").unwrap_err();
        assert!(e.contains("unknown option \"maxx\""), "{e}");
        assert!(
            Metric::parse("http://127.0.0.1:9090,query=up")
                .unwrap_err()
                .contains("threshold")
        );
        assert!(
            Metric::parse("http://127.0.0.1:9090,max=1")
                .unwrap_err()
                .contains("query=")
        );
        assert!(
            Metric::parse("http://127.0.0.1:9090,max=1,query={{canary}}")
                .unwrap_err()
                .contains("{{canary}}")
        );
        assert!(Metric::parse("http://127.0.0.1:9090,min=2,max=1,query=up").is_err());
        assert!(Metric::parse("http://127.0.0.1:9090,max=1,failures=0,query=up").is_err());
        let m = Metric::parse("http://127.0.0.1:9090,min=0.9,on-inconclusive=rollback,query=up").unwrap();
        assert_eq!(m.on_inconclusive, OnInconclusive::Rollback);
        assert!(m.judge(0.5).is_some() && m.judge(0.95).is_none());
    }

    #[test]
    fn only_one_number_is_conclusive() {
        let vector =
            |result: &str| format!(r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}}}"#);
        assert_eq!(
            interpret(200, &vector(r#"[{"metric":{},"value":[1,"0.25"]}]"#)),
            Reading::Value(0.25)
        );
        let inconclusive = |r: Reading| matches!(r, Reading::Inconclusive(_));
        assert!(inconclusive(interpret(200, &vector("[]"))));
        assert!(inconclusive(interpret(
            200,
            &vector(r#"[{"metric":{},"value":[1,"NaN"]}]"#)
        )));
        assert!(inconclusive(interpret(
            200,
            &vector(r#"[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]"#)
        )));
        assert!(inconclusive(interpret(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#
        )));
        assert!(inconclusive(interpret(502, "<html>bad gateway</html>")));
        assert_eq!(
            interpret(
                200,
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#
            ),
            Reading::Value(3.0)
        );
    }
}
