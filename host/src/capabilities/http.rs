//! Capability `http`: outbound HTTP through `wasi:http` (wasmtime-wasi-http),
//! always linked, and filtered here, in the one hook every request passes
//! ([`WasiHttpHooks::send_request`], where scheme and authority are final):
//! a pack that does not declare `http`, or an environment that does not
//! grant it, or an origin (`scheme://host:port`) outside the grant, gets
//! `HTTP-request-denied` for every request. Requests declaring a body over
//! [`MAX_REQUEST_BYTES`] and responses declaring one over
//! [`MAX_RESPONSE_BYTES`] are refused, and a response body streamed past
//! [`MAX_RESPONSE_BYTES`] is cut off with an error; every timeout is clamped to what is
//! left of the call's deadline. Each request is recorded (method, URL,
//! status or the refusal).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use envpack_model::{Capability, CapabilityCall, Grants};
use http_body_util::BodyExt;
use serde::Serialize;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::capabilities::ledger::Ledger;

/// Largest request body a pack may declare.
pub const MAX_REQUEST_BYTES: u64 = 8 << 20;
/// Largest response body the host accepts by its `Content-Length`.
pub const MAX_RESPONSE_BYTES: u64 = 32 << 20;

/// One outbound request, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpRecord {
    pub method: String,
    pub url: String,
    pub allowed: bool,
    /// The response status, once it came.
    pub status: Option<u16>,
    /// Why it was refused or failed.
    pub refused: Option<String>,
    /// How many capability calls the call had recorded when this request
    /// was made: where it goes in the recording.
    #[serde(skip)]
    pub after: usize,
}

/// The hooks of one call's `wasi:http`.
pub struct HttpPolicy {
    /// `Err(reason)` when the capability is not declared or not granted.
    capability: Result<(), String>,
    origins: Vec<String>,
    deadline_at: Instant,
    log: Arc<Mutex<Vec<HttpRecord>>>,
    /// Capability calls the call's ledger has recorded so far, so requests
    /// keep their place among them.
    recorded: Arc<AtomicUsize>,
    declared: bool,
}

impl HttpPolicy {
    pub fn new(ledger: &Ledger, grants: &Grants, deadline_at: Instant) -> Self {
        let capability = ledger
            .check(Capability::Http, "wasi:http/outgoing-handler.handle")
            .map_err(|e| e.to_string())
            .and_then(|()| {
                if grants.http.is_empty() {
                    Err("no HTTP origin is granted to this environment (--allow-http)".to_string())
                } else {
                    Ok(())
                }
            });
        HttpPolicy {
            capability,
            origins: grants.http.clone(),
            deadline_at,
            log: Arc::new(Mutex::new(Vec::new())),
            recorded: ledger.counter(),
            declared: ledger.declared(Capability::Http),
        }
    }

    /// The call's requests as capability calls, each with the number of
    /// calls recorded before it; the log is emptied.
    pub fn take_calls(&mut self) -> Vec<(usize, CapabilityCall)> {
        let log = std::mem::take(&mut *self.log.lock().unwrap_or_else(PoisonError::into_inner));
        log.into_iter()
            .map(|entry| {
                let outcome = match (entry.status, &entry.refused) {
                    (_, Some(reason)) => format!(" (refused: {reason})"),
                    (Some(status), None) => format!(" -> {status}"),
                    (None, None) => String::new(),
                };
                let call = CapabilityCall {
                    capability: Capability::Http,
                    operation: "http.request",
                    detail: format!("{} {}{outcome}", entry.method, entry.url),
                    allowed: entry.allowed,
                    declared: self.declared,
                };
                (entry.after, call)
            })
            .collect()
    }

    fn record(&self, record: HttpRecord) -> usize {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push(record);
        log.len() - 1
    }

    /// The request's origin, with the scheme's default port made explicit.
    fn origin(uri: &http::Uri) -> Option<String> {
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?;
        let port = authority.port_u16().or(match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })?;
        Some(format!("{scheme}://{}:{port}", authority.host()))
    }

    fn verdict(&self, request: &http::Request<WasiBody>) -> Result<(), String> {
        self.capability.clone()?;
        let origin =
            Self::origin(request.uri()).ok_or_else(|| format!("{} has no scheme://host:port", request.uri()))?;
        if !self.origins.iter().any(|o| o.eq_ignore_ascii_case(&origin)) {
            return Err(format!("origin {origin} is not granted (--allow-http)"));
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_REQUEST_BYTES) {
            return Err(format!("request body over {MAX_REQUEST_BYTES} bytes"));
        }
        Ok(())
    }

    fn clamp(&self, options: Option<RequestOptions>) -> RequestOptions {
        let left = self.deadline_at.saturating_duration_since(Instant::now());
        let clamp = |d: Option<Duration>| Some(d.map_or(left, |d| d.min(left)));
        let options = options.unwrap_or_default();
        RequestOptions {
            connect_timeout: clamp(options.connect_timeout),
            first_byte_timeout: clamp(options.first_byte_timeout),
            between_bytes_timeout: clamp(options.between_bytes_timeout),
        }
    }
}

/// The response body, failing once more than [`MAX_RESPONSE_BYTES`] have
/// streamed (a body without `Content-Length` is only known as it comes);
/// the overrun is recorded against the request.
fn capped<B>(body: B, log: Arc<Mutex<Vec<HttpRecord>>>, index: usize, status: u16) -> WasiBody
where
    B: http_body::Body<Data = bytes::Bytes, Error = HttpError> + Send + 'static,
{
    http_body_util::Limited::new(body, MAX_RESPONSE_BYTES as usize)
        .map_err(move |e| match e.downcast::<HttpError>() {
            Ok(inner) => *inner,
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(entry) = log.get_mut(index) {
                    entry.status = Some(status);
                    entry.refused = Some(format!("response body over {MAX_RESPONSE_BYTES} bytes, cut off"));
                }
                HttpError::HttpResponseBodySize(Some(MAX_RESPONSE_BYTES))
            }
            Err(e) => HttpError::InternalError(Some(e.to_string())),
        })
        .boxed_unsync()
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        drop(fut);
        let verdict = self.verdict(&request);
        let index = self.record(HttpRecord {
            method: request.method().to_string(),
            url: request.uri().to_string(),
            allowed: verdict.is_ok(),
            status: None,
            refused: verdict.clone().err(),
            after: self.recorded.load(Ordering::Relaxed),
        });
        if verdict.is_err() {
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let options = self.clamp(options);
        let log = self.log.clone();
        Box::new(async move {
            let set = |status: Option<u16>, refused: Option<String>| {
                let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(entry) = log.get_mut(index) {
                    entry.status = status;
                    entry.refused = refused;
                }
            };
            let (response, io) = match wasmtime_wasi_http::default_send_request(request, Some(options)).await {
                Ok(sent) => sent,
                Err(e) => {
                    set(None, Some(e.to_string()));
                    return Err(e);
                }
            };
            let length = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if let Some(n) = length.filter(|n| *n > MAX_RESPONSE_BYTES) {
                set(
                    Some(response.status().as_u16()),
                    Some(format!("response body of {n} bytes refused")),
                );
                return Err(HttpError::HttpResponseBodySize(Some(n)));
            }
            let status = response.status().as_u16();
            set(Some(status), None);
            Ok((
                response.map(|body| capped(body, log, index, status)),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}
