//! TLS (issue 14): turns the `tls` configuration (Redis's `tls-*` names) into a rustls
//! server configuration. It owns reading the PEM files (certificate chain, private key, CA),
//! checking client certificates against the CA as `tls-auth-clients` asks, and the protocol
//! versions offered. The server's TLS listener builds its acceptor here at start and CONFIG
//! SET of a `tls-*` parameter rebuilds it (so renewed certificates load without a restart).
//!
//! It must never accept a client certificate the CA did not sign when `tls-auth-clients` is
//! yes, never offer a protocol older than TLS 1.2, and never let a configuration it could not
//! load replace one that works: every error names the file and what was wrong.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::{TlsAuthClients, TlsConfig};

/// The rustls server configuration `tls` describes, or why it cannot be built.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(with_ciphersuites(
        rustls::crypto::ring::default_provider(),
        &tls.ciphersuites,
    )?);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = tls
        .protocols
        .split_whitespace()
        .filter_map(|word| match word {
            "TLSv1.2" => Some(&rustls::version::TLS12),
            "TLSv1.3" => Some(&rustls::version::TLS13),
            _ => None,
        })
        .collect();
    if versions.is_empty() {
        return Err("tls-protocols: no protocol left to offer".into());
    }
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|err| format!("tls-protocols: {err}"))?;
    let builder = match tls.auth_clients {
        TlsAuthClients::No => builder.with_no_client_auth(),
        auth => {
            let ca = tls
                .ca_cert_file
                .as_deref()
                .ok_or("tls-ca-cert-file: needed to check client certificates")?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca, "tls-ca-cert-file")? {
                roots
                    .add(cert)
                    .map_err(|err| format!("tls-ca-cert-file {}: {err}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                TlsAuthClients::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|err| format!("tls-ca-cert-file {}: {err}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let cert_file = tls
        .cert_file
        .as_deref()
        .ok_or("tls-cert-file: needed for TLS")?;
    let key_file = tls
        .key_file
        .as_deref()
        .ok_or("tls-key-file: needed for TLS")?;
    let chain = certificates(cert_file, "tls-cert-file")?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|err| format!("tls-key-file {}: {err}", key_file.display()))?;
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|err| format!("tls-cert-file / tls-key-file: {err}"))?;
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file (at least one).
fn certificates(path: &Path, param: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("{param} {}: {err}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{param} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Keeps, of `provider`'s TLS 1.3 suites, those `ciphersuites` names (colon-separated,
/// OpenSSL's spelling `TLS_AES_128_GCM_SHA256`, or rustls's `TLS13_AES_128_GCM_SHA256`);
/// empty keeps them all. TLS 1.2 suites are left as they are (`tls-ciphers` is not
/// supported).
fn with_ciphersuites(
    mut provider: rustls::crypto::CryptoProvider,
    ciphersuites: &str,
) -> Result<rustls::crypto::CryptoProvider, String> {
    let wanted: Vec<&str> = ciphersuites
        .split(':')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(provider);
    }
    let name_of = |suite: &rustls::SupportedCipherSuite| suite.suite().as_str().unwrap_or("");
    let tls13_names: Vec<&str> = provider
        .cipher_suites
        .iter()
        .filter(|suite| suite.tls13().is_some())
        .map(name_of)
        .collect();
    for name in &wanted {
        let known = tls13_names
            .iter()
            .any(|offered| suite_matches(offered, name));
        if !known {
            let openssl_names: Vec<String> = tls13_names
                .iter()
                .map(|offered| offered.replacen("TLS13_", "TLS_", 1))
                .collect();
            return Err(format!(
                "tls-ciphersuites: '{name}' is not a TLS 1.3 suite this server offers ({})",
                openssl_names.join(", ")
            ));
        }
    }
    provider.cipher_suites.retain(|suite| {
        suite.tls13().is_none()
            || wanted
                .iter()
                .any(|name| suite_matches(name_of(suite), name))
    });
    Ok(provider)
}

/// Whether rustls's suite name `offered` (`TLS13_AES_128_GCM_SHA256`) is the `requested`
/// one, in either spelling.
fn suite_matches(offered: &str, requested: &str) -> bool {
    offered.eq_ignore_ascii_case(requested)
        || offered
            .strip_prefix("TLS13_")
            .zip(requested.strip_prefix("TLS_"))
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
}
