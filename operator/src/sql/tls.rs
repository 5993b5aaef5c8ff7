//! TLS to the database, as libpq's `sslmode` asks: `disable` never,
//! `require` always, `prefer` (the default) whenever the server is not on
//! this machine (loopback addresses and Unix sockets go plain). The
//! server's certificate is verified against the system's roots, or the PEM
//! file named by `PGSSLROOTCERT` (libpq's variable) for a private CA.

use std::sync::Arc;

use postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::DbError;

/// libpq's `sslrootcert` option taken out of a URL (`?sslrootcert=PATH`)
/// or a `key=value` connection string, which the client does not parse:
/// the URL without it, and its path.
pub fn take_root_cert(url: &str) -> (String, Option<std::ffi::OsString>) {
    let mut found = None;
    let mut keep = |pair: &&str| match pair.strip_prefix("sslrootcert=") {
        Some(path) => {
            found = Some(std::ffi::OsString::from(path));
            false
        }
        None => true,
    };
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let kept: Vec<&str> = query.split('&').filter(&mut keep).collect();
            match kept.is_empty() {
                true => base.to_string(),
                false => format!("{base}?{}", kept.join("&")),
            }
        }
        None if !url.contains("://") => url.split_whitespace().filter(&mut keep).collect::<Vec<_>>().join(" "),
        None => url.to_string(),
    };
    (url, found)
}

/// The connector `config` calls for: `None` for a plain connection. The
/// roots: `root_cert` (the URL's `sslrootcert`), else `PGSSLROOTCERT`,
/// else the system's.
pub fn connector(
    config: &postgres::Config,
    root_cert: Option<&std::ffi::OsStr>,
) -> Result<Option<MakeRustlsConnect>, DbError> {
    let wanted = match config.get_ssl_mode() {
        SslMode::Disable => false,
        SslMode::Require => true,
        _ => !config.get_hosts().iter().all(is_local),
    };
    if !wanted {
        return Ok(None);
    }
    let fail = |what: String| DbError::Postgres(format!("cannot set up TLS to the database: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    match root_cert
        .map(std::ffi::OsStr::to_os_string)
        .or_else(|| std::env::var_os("PGSSLROOTCERT"))
    {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let shown = std::path::Path::new(&path).display().to_string();
            let certs =
                CertificateDer::pem_file_iter(&path).map_err(|e| fail(format!("PGSSLROOTCERT {shown}: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| fail(format!("PGSSLROOTCERT {shown}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("PGSSLROOTCERT {shown}: {e}")))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(fail(
            "no root certificate to verify the server with: set PGSSLROOTCERT to its CA's PEM file".into(),
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn is_local(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wants_tls(url: &str) -> bool {
        connector(&url.parse().unwrap(), None)
            .map(|c| c.is_some())
            .unwrap_or(true)
    }

    #[test]
    fn sslrootcert_is_taken_out_of_urls_and_connection_strings() {
        let (url, cert) = take_root_cert("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem&application_name=x");
        assert_eq!(url, "postgres://u@h/db?sslmode=require&application_name=x");
        assert_eq!(cert.as_deref(), Some(std::ffi::OsStr::new("/ca.pem")));
        let (url, cert) = take_root_cert("host=h sslrootcert=/ca.pem dbname=d");
        assert_eq!((url.as_str(), cert.is_some()), ("host=h dbname=d", true));
        assert_eq!(take_root_cert("postgres://u@h/db").1, None);
    }

    #[test]
    fn loopback_goes_plain_unless_tls_is_required() {
        assert!(!wants_tls("postgres://u@127.0.0.1:5432/db"));
        assert!(!wants_tls("postgres://u@localhost/db"));
        assert!(!wants_tls("postgres://u@db.internal/db?sslmode=disable"));
        assert!(wants_tls("postgres://u@127.0.0.1/db?sslmode=require"));
        assert!(wants_tls("postgres://u@db.internal/db"));
    }
}
