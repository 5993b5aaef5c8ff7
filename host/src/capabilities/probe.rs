//! Capability `probe`: a TCP connect or an HTTP `GET` (status line only) to a
//! granted `host:port`, bounded by the pack's timeout and by the call's
//! deadline. Nothing else is reachable: an address that is not granted is
//! refused before any connection is attempted.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use envpack_model::{Capability, Grants, parse_address};

use crate::capabilities::CallEnv;
use crate::capabilities::ledger::Ledger;
use crate::contract::bindings::envpack::deployer::probe::{Host, HttpResponse, ProbeError};

/// Most bytes read while looking for the status line.
const MAX_HEAD: usize = 8 * 1024;

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The `probe` capability's part of one call: which addresses the
/// environment grants.
pub struct ProbeState {
    env_id: String,
    grants: Grants,
}

impl ProbeState {
    pub fn new(env: &CallEnv) -> Self {
        ProbeState {
            env_id: env.id.clone(),
            grants: env.grants.only(Capability::Probe),
        }
    }
}

/// What `probe` is linked with: its state and the call's ledger.
pub struct ProbeView<'a> {
    pub(crate) state: &'a mut ProbeState,
    pub(crate) ledger: &'a mut Ledger,
}

impl ProbeView<'_> {
    /// The checked address and the time the probe may take.
    fn probe_target(&mut self, address: &str, timeout_ms: u32) -> Result<Duration, ProbeError> {
        if let Err(e) = parse_address(address) {
            self.ledger.refused("malformed address");
            return Err(ProbeError::NotAllowed(e.to_string()));
        }
        if !self.state.grants.probe_allowed(address) {
            self.ledger.refused("address not granted");
            return Err(ProbeError::NotAllowed(format!(
                "{address} is not granted to environment {:?} (grant it with --allow-probe)",
                self.state.env_id
            )));
        }
        Ok(Duration::from_millis(u64::from(timeout_ms)).min(self.ledger.remaining()))
    }
}

async fn connect(address: &str, limit: Duration) -> Result<TcpStream, ProbeError> {
    match tokio::time::timeout(limit, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(ProbeError::Failed(format!("connect {address}: {e}"))),
        Err(_) => Err(ProbeError::Timeout(millis(limit))),
    }
}

/// Sends the request and reads the status code of the response.
async fn get_status(stream: &mut TcpStream, address: &str, path: &str) -> Result<u16, ProbeError> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: envpack-probe\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ProbeError::Failed(format!("send to {address}: {e}")))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_HEAD {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| ProbeError::Failed(format!("read from {address}: {e}")))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|s| s.parse::<u16>().ok())) {
        (Some(version), Some(status)) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err(ProbeError::Failed(format!("{address} did not answer HTTP: {line:?}"))),
    }
}

impl Host for ProbeView<'_> {
    async fn http_get(
        &mut self,
        host_port: String,
        path: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<HttpResponse, ProbeError>> {
        self.ledger
            .call(Capability::Probe, "probe.http-get", format!("{host_port}{path}"))?;
        let limit = match self.probe_target(&host_port, timeout_ms) {
            Ok(limit) => limit,
            Err(e) => return Ok(Err(e)),
        };
        if !path.starts_with('/') || path.contains(['\r', '\n', ' ']) {
            return Ok(Err(ProbeError::Failed(format!(
                "{path:?} is not an absolute request path"
            ))));
        }
        let started = Instant::now();
        let probe = async {
            let mut stream = connect(&host_port, limit).await?;
            get_status(&mut stream, &host_port, &path).await
        };
        let result = match tokio::time::timeout(limit, probe).await {
            Ok(Ok(status)) => Ok(HttpResponse {
                status,
                latency_ms: millis(started.elapsed()),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ProbeError::Timeout(millis(limit))),
        };
        Ok(result)
    }

    async fn tcp_connect(&mut self, host_port: String, timeout_ms: u32) -> wasmtime::Result<Result<u32, ProbeError>> {
        self.ledger
            .call(Capability::Probe, "probe.tcp-connect", host_port.clone())?;
        let limit = match self.probe_target(&host_port, timeout_ms) {
            Ok(limit) => limit,
            Err(e) => return Ok(Err(e)),
        };
        let started = Instant::now();
        Ok(connect(&host_port, limit).await.map(|_| millis(started.elapsed())))
    }
}
