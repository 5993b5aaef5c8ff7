//! Artifacts over `http(s)://`: a GET to an origin the environment grants
//! (`--allow-http`), through the same client `wasi:http` uses
//! (wasmtime-wasi-http's hyper + rustls with the webpki roots), streamed to
//! a file while its sha256 is computed, capped in size and bounded by the
//! call's deadline.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use wasmtime_wasi_http::RequestOptions;

use crate::contract::bindings::envpack::deployer::process::ArtifactError;
use envpack_model::{Grants, MAX_ARTIFACT_BYTES};

/// `scheme://host:port` of an `http(s)` URL, default ports filled in.
pub fn origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(format!("{scheme}://{}:{port}", uri.host()?))
}

/// Downloads `url` into `to`, returning the sha256 of what was written.
pub async fn download(url: &str, grants: &Grants, to: &Path, left: Duration) -> Result<String, ArtifactError> {
    let Some(origin) = origin(url) else {
        return Err(ArtifactError::NotAllowed(format!("{url:?} is not an http(s) URL")));
    };
    if !grants.origin_allowed(&origin) {
        return Err(ArtifactError::NotAllowed(format!(
            "{origin} is not granted to this environment (grant it with --allow-http {origin})"
        )));
    }
    match tokio::time::timeout(left, get(url, to, left)).await {
        Ok(result) => result,
        Err(_) => {
            let _ = std::fs::remove_file(to);
            Err(ArtifactError::Unavailable(format!(
                "{url}: not fetched within the call's deadline ({} ms left)",
                left.as_millis()
            )))
        }
    }
}

/// A GET of `url`, sent with the same client as artifacts: the response
/// and the task driving its connection (abort it when done).
async fn send_get(
    url: &str,
    left: Duration,
) -> Result<
    (
        http::Response<impl http_body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Unpin>,
        tokio::task::JoinHandle<()>,
    ),
    String,
> {
    let empty = http_body_util::Empty::<bytes::Bytes>::new().map_err(|never| match never {});
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
    // The client sends the path alone: the authority goes in `Host`, which
    // HTTP/1.1 servers (nginx) require.
    let host = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
    let request = http::Request::get(uri)
        .header(http::header::HOST, host)
        .body(empty)
        .map_err(|e| e.to_string())?;
    let options = RequestOptions {
        connect_timeout: Some(left),
        first_byte_timeout: Some(left),
        between_bytes_timeout: Some(left),
    };
    let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options))
        .await
        .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(async move {
        let _ = io.await;
    });
    Ok((response, connection))
}

async fn get(url: &str, to: &Path, left: Duration) -> Result<String, ArtifactError> {
    let (response, connection) = send_get(url, left)
        .await
        .map_err(|e| ArtifactError::Unavailable(format!("{url}: {e}")))?;
    let result = save(url, response, to).await;
    connection.abort();
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}

/// The status `url` answers a GET with (its body read and dropped), within
/// `left`: what a rollout's HTTP gate asks.
pub async fn status(url: &str, left: Duration) -> Result<u16, String> {
    let ask = async {
        let (response, connection) = send_get(url, left).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| e.to_string())?;
        }
        connection.abort();
        Ok(status)
    };
    match tokio::time::timeout(left, ask).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", left.as_millis())),
    }
}

/// The status and text `url` answers a GET with, within `left`; an answer
/// longer than `max_bytes` is refused: what a rollout's metric gate asks.
pub async fn get_text(url: &str, left: Duration, max_bytes: usize) -> Result<(u16, String), String> {
    let ask = async {
        let (response, connection) = send_get(url, left).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                if text.len() + data.len() > max_bytes {
                    connection.abort();
                    return Err(format!("the answer is larger than {max_bytes} bytes"));
                }
                text.extend_from_slice(&data);
            }
        }
        connection.abort();
        Ok((status, String::from_utf8_lossy(&text).into_owned()))
    };
    match tokio::time::timeout(left, ask).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", left.as_millis())),
    }
}

async fn save(
    url: &str,
    response: http::Response<impl http_body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Unpin>,
    to: &Path,
) -> Result<String, ArtifactError> {
    let unavailable = |what: String| ArtifactError::Unavailable(format!("{url}: {what}"));
    if !response.status().is_success() {
        return Err(unavailable(format!("answered {}", response.status())));
    }
    let mut file = std::fs::File::create(to).map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
    let mut body = response.into_body();
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unavailable(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len() as u64;
        if total > MAX_ARTIFACT_BYTES {
            return Err(unavailable(format!("larger than {MAX_ARTIFACT_BYTES} bytes")));
        }
        hasher.update(&data);
        file.write_all(&data)
            .map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
    }
    file.sync_all()
        .map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origins_get_their_default_ports() {
        assert_eq!(
            origin("http://127.0.0.1:8000/a.tgz").as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(
            origin("https://example.com/x").as_deref(),
            Some("https://example.com:443")
        );
        assert_eq!(origin("http://example.com/x").as_deref(), Some("http://example.com:80"));
        assert_eq!(origin("file:///x"), None);
    }
}
