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
        tls,
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

/// The TLS 1.2 suites rustls offers, by its name and OpenSSL's (what `tls-ciphers` and
/// `redis-cli --tls-ciphers` say).
const TLS12_OPENSSL_NAMES: &[(&str, &str)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

/// A suite's name as OpenSSL writes it: `TLS_AES_128_GCM_SHA256` for TLS 1.3,
/// `ECDHE-RSA-AES128-GCM-SHA256` for TLS 1.2.
fn openssl_name(suite: &rustls::SupportedCipherSuite) -> String {
    let name = suite.suite().as_str().unwrap_or("");
    if suite.tls13().is_some() {
        return name.replacen("TLS13_", "TLS_", 1);
    }
    TLS12_OPENSSL_NAMES
        .iter()
        .find(|(rustls_name, _)| *rustls_name == name)
        .map_or_else(|| name.to_string(), |(_, openssl)| openssl.to_string())
}

/// Whether `suite` is the `requested` one, in OpenSSL's spelling or rustls's.
fn suite_matches(suite: &rustls::SupportedCipherSuite, requested: &str) -> bool {
    let rustls_name = suite.suite().as_str().unwrap_or("");
    rustls_name.eq_ignore_ascii_case(requested)
        || openssl_name(suite).eq_ignore_ascii_case(requested)
}

/// `tls-ciphersuites` (TLS 1.3) and `tls-ciphers` (TLS 1.2): of `provider`'s suites of
/// each version, keeps those the list names (colon-separated); an empty list keeps them
/// all. OpenSSL's keywords (`HIGH`, `!aNULL`, ...) are not understood: name the suites.
fn with_ciphersuites(
    provider: rustls::crypto::CryptoProvider,
    tls: &TlsConfig,
) -> Result<rustls::crypto::CryptoProvider, String> {
    let provider = keep_suites(provider, &tls.ciphersuites, true)?;
    keep_suites(provider, &tls.ciphers, false)
}

/// Keeps, of `provider`'s TLS 1.3 (`tls13`) or TLS 1.2 suites, those `names` lists.
fn keep_suites(
    mut provider: rustls::crypto::CryptoProvider,
    names: &str,
    tls13: bool,
) -> Result<rustls::crypto::CryptoProvider, String> {
    let wanted: Vec<&str> = names
        .split(':')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(provider);
    }
    let of_version = |suite: &rustls::SupportedCipherSuite| suite.tls13().is_some() == tls13;
    let (param, version) = if tls13 {
        ("tls-ciphersuites", "TLS 1.3")
    } else {
        ("tls-ciphers", "TLS 1.2")
    };
    for name in &wanted {
        let known = provider
            .cipher_suites
            .iter()
            .any(|suite| of_version(suite) && suite_matches(suite, name));
        if !known {
            let offered: Vec<String> = provider
                .cipher_suites
                .iter()
                .filter(|suite| of_version(suite))
                .map(openssl_name)
                .collect();
            return Err(format!(
                "{param}: '{name}' is not a {version} suite this server offers ({})",
                offered.join(", ")
            ));
        }
    }
    provider
        .cipher_suites
        .retain(|suite| !of_version(suite) || wanted.iter().any(|name| suite_matches(suite, name)));
    Ok(provider)
}
