//! TLS to the database, as libpq's `sslmode` asks: `disable` never,
//! `require` always, `prefer` (the default) whenever the server is not on
//! this machine (loopback addresses and Unix sockets go plain). The
//! server's certificate is verified against the system's roots, or the PEM
//! file named by `PGSSLROOTCERT` (libpq's variable) for a private CA.

use std::sync::Arc;

use postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::DbError;

/// The connector `config` calls for: `None` for a plain connection.
pub fn connector(config: &postgres::Config) -> Result<Option<MakeRustlsConnect>, DbError> {
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
    match std::env::var_os("PGSSLROOTCERT") {
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
        connector(&url.parse().unwrap()).map(|c| c.is_some()).unwrap_or(true)
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
