//! One signed AWS API call over `wasi:http`: the request is signed with
//! SigV4 by `aws-sigv4` (credentials from the `secrets` capability, the
//! time from the `clock` capability), sent through the host's outgoing
//! handler (which only lets granted origins through), and an error
//! response becomes an [`AwsError`] naming the action and AWS's code.
//! ECS speaks JSON 1.1 (`X-Amz-Target`), ELBv2 the query protocol
//! (form-encoded, XML back); both are here, the parsing of their bodies is
//! in `ecs.rs` and `elb.rs`.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use wasip2::http::outgoing_handler::handle;
use wasip2::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

use crate::envpack::deployer::clock::now_ms;
use crate::envpack::deployer::secrets::{SecretError, get as secret};

/// Secret names the pack reads (granted with `--allow-secret`).
pub const ACCESS_KEY_SECRET: &str = "aws-access-key-id";
pub const SECRET_KEY_SECRET: &str = "aws-secret-access-key";
/// Optional: temporary credentials.
pub const SESSION_TOKEN_SECRET: &str = "aws-session-token";

/// Largest response body read (AWS answers are small; describe calls of
/// a big account are paged far below this).
const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// What failed in one call.
#[derive(Debug)]
pub struct AwsError {
    /// `ECS CreateTaskSet`, `ELBv2 ModifyListener`.
    pub action: String,
    /// AWS's error code (`ClientException`, `TargetGroupNotFound`), or
    /// `transport` when no AWS answer came.
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}: {}", self.action, self.code, self.message)
    }
}

/// An AWS service the pack calls.
#[derive(Clone, Copy, Debug)]
pub enum Service {
    Ecs,
    Elb,
}

impl Service {
    /// The SigV4 signing name.
    fn signing_name(self) -> &'static str {
        match self {
            Service::Ecs => "ecs",
            Service::Elb => "elasticloadbalancing",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Service::Ecs => "ECS",
            Service::Elb => "ELBv2",
        }
    }
}

/// Signs and sends calls for one region and endpoint.
pub struct Client {
    region: String,
    /// `scheme://host[:port]` for every service (an emulator), or `None`
    /// for AWS's regional endpoints.
    endpoint: Option<String>,
    credentials: Credentials,
}

impl Client {
    /// Reads the credentials from the granted secrets.
    pub fn new(region: String, endpoint: Option<String>) -> Result<Self, String> {
        let access_key = required_secret(ACCESS_KEY_SECRET)?;
        let secret_key = required_secret(SECRET_KEY_SECRET)?;
        // Optional: absent or not granted means long-term keys.
        let token = secret(SESSION_TOKEN_SECRET).ok();
        Ok(Client {
            region,
            endpoint,
            credentials: Credentials::new(access_key, secret_key, token, None, "envpack-secrets"),
        })
    }

    fn origin(&self, service: Service) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
            None => match service {
                Service::Ecs => format!("https://ecs.{}.amazonaws.com", self.region),
                Service::Elb => format!("https://elasticloadbalancing.{}.amazonaws.com", self.region),
            },
        }
    }

    /// An ECS JSON 1.1 action; the response document.
    pub fn ecs(&self, action: &str, body: &serde_json::Value) -> Result<serde_json::Value, AwsError> {
        let body = body.to_string();
        let target = format!("AmazonEC2ContainerServiceV20141113.{action}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let (status, bytes) = self.send(Service::Ecs, action, &headers, body.as_bytes())?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                error(
                    Service::Ecs,
                    action,
                    "InvalidResponse".into(),
                    format!("response is not JSON: {e}"),
                )
            });
        }
        let (code, message) = error_document(status, &bytes);
        Err(error(Service::Ecs, action, code, message))
    }

    /// An ELBv2 query action; the response XML.
    pub fn elb(&self, action: &str, params: &[(String, String)]) -> Result<String, AwsError> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action).append_pair("Version", "2015-12-01");
        for (key, value) in params {
            form.append_pair(key, value);
        }
        let body = form.finish();
        let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
        let (status, bytes) = self.send(Service::Elb, action, &headers, body.as_bytes())?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let (code, message) = error_document(status, &bytes);
        Err(error(Service::Elb, action, code, message))
    }

    /// Signs and sends one POST; (status, body).
    fn send(
        &self,
        service: Service,
        action: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), AwsError> {
        let fail = |message: String| error(service, action, "transport".into(), message);
        let origin = self.origin(service);
        let url = format!("{origin}/");
        let signed = self.sign(service, &url, headers, body).map_err(fail)?;
        let (scheme, authority) = origin
            .split_once("://")
            .ok_or_else(|| fail(format!("endpoint {origin:?} has no scheme")))?;

        let fields = Fields::new();
        let length = body.len().to_string();
        for (name, value) in headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain(signed)
            .chain([("content-length".to_string(), length)])
        {
            fields
                .append(&name, value.as_bytes())
                .map_err(|e| fail(format!("header {name}: {e:?}")))?;
        }
        let request = OutgoingRequest::new(fields);
        let scheme = match scheme {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => Scheme::Other(other.to_string()),
        };
        let set = |ok: Result<(), ()>, what: &str| ok.map_err(|()| fail(format!("invalid request {what}")));
        set(request.set_method(&Method::Post), "method")?;
        set(request.set_scheme(Some(&scheme)), "scheme")?;
        set(request.set_authority(Some(authority)), "authority")?;
        set(request.set_path_with_query(Some("/")), "path")?;
        let outgoing = request.body().map_err(|()| fail("request body taken".into()))?;
        let future =
            handle(request, None).map_err(|e| fail(format!("{e:?} (is {origin} granted with --allow-http?)")))?;
        write_body(outgoing, body).map_err(fail)?;
        future.subscribe().block();
        let response = future
            .get()
            .ok_or_else(|| fail("no response".into()))?
            .map_err(|()| fail("response taken twice".into()))?
            .map_err(|e| fail(format!("{e:?} (calling {origin})")))?;
        let status = response.status();
        let incoming = response.consume().map_err(|()| fail("response body taken".into()))?;
        let bytes = read_body(incoming).map_err(fail)?;
        Ok((status, bytes))
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, and the session
    /// token when there is one) for one request.
    fn sign(
        &self,
        service: Service,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let identity = self.credentials.clone().into();
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms());
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service.signing_name())
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("signing parameters: {e}"))?
            .into();
        let request = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(body))
            .map_err(|e| format!("signing: {e}"))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| format!("signing: {e}"))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect())
    }
}

/// AWS's error code and message from an error response: JSON (`__type`,
/// `message`) from JSON services, XML (`<Code>`, `<Message>`) from query
/// services and from the authentication layer of both; else the HTTP
/// status and a summary of the body.
fn error_document(status: u16, bytes: &[u8]) -> (String, String) {
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(kind) = doc.get("__type").and_then(|t| t.as_str())
    {
        let code = kind.rsplit('#').next().unwrap_or(kind).to_string();
        let message = ["message", "Message"]
            .iter()
            .find_map(|k| doc.get(*k).and_then(|m| m.as_str()))
            .unwrap_or_default()
            .to_string();
        return (code, message);
    }
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(doc) = roxmltree::Document::parse(text)
        && let Some(code) = child_text(doc.root(), "Code")
    {
        return (code, child_text(doc.root(), "Message").unwrap_or_default());
    }
    (format!("HTTP {status}"), summary(bytes))
}

/// A body that is not AWS's error document, in one line: an HTML page's
/// title, else its first 200 characters.
fn summary(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if let Some(start) = text.find("<title>")
        && let Some(len) = text[start + 7..].find("</title>")
    {
        return text[start + 7..start + 7 + len].trim().to_string();
    }
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let short: String = line.chars().take(200).collect();
    if short.is_empty() {
        "(empty body)".to_string()
    } else {
        short
    }
}

fn required_secret(name: &str) -> Result<String, String> {
    secret(name).map_err(|e| match e {
        SecretError::NotAllowed(_) => {
            format!("secret {name:?} is not granted to this environment (env create/bind --allow-secret {name})")
        }
        SecretError::Missing(_) => format!("secret {name:?} is granted but not set (host secret set {name})"),
    })
}

fn error(service: Service, action: &str, code: String, message: String) -> AwsError {
    AwsError {
        action: format!("{} {action}", service.label()),
        code,
        message,
    }
}

fn write_body(outgoing: OutgoingBody, body: &[u8]) -> Result<(), String> {
    let stream = outgoing.write().map_err(|()| "request stream taken".to_string())?;
    for chunk in body.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| format!("writing the request: {e:?}"))?;
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("finishing the request: {e:?}"))
}

fn read_body(incoming: IncomingBody) -> Result<Vec<u8>, String> {
    let stream = incoming.stream().map_err(|()| "response stream taken".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_RESPONSE_BYTES {
                    return Err(format!("response over {MAX_RESPONSE_BYTES} bytes"));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading the response: {}", e.to_debug_string()));
            }
        }
    }
    drop(stream);
    Ok(bytes)
}

/// The text of the first element named `name` under `node`.
pub fn child_text(node: roxmltree::Node, name: &str) -> Option<String> {
    node.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .and_then(|n| n.text())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::error_document;

    #[test]
    fn error_documents_of_every_shape_give_code_and_message() {
        let json = br#"{"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"Cluster not found."}"#;
        assert_eq!(
            error_document(400, json),
            ("ClusterNotFoundException".into(), "Cluster not found.".into())
        );
        let xml = br#"<?xml version="1.0"?><ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>TargetGroupNotFound</Code><Message>One or more target groups not found</Message></Error></ErrorResponse>"#;
        assert_eq!(
            error_document(400, xml),
            (
                "TargetGroupNotFound".into(),
                "One or more target groups not found".into()
            )
        );
        let html = b"<!doctype html><html><title>500 Internal Server Error</title><p>boom</p></html>";
        assert_eq!(
            error_document(500, html),
            ("HTTP 500".into(), "500 Internal Server Error".into())
        );
        assert_eq!(error_document(502, b""), ("HTTP 502".into(), "(empty body)".into()));
    }
}
