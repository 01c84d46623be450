//! The `tls` section: TLS on its own port beside the plain one, under Redis's `tls-*` names
//! (`tls-port`, `tls-cert-file`, `tls-key-file`, `tls-ca-cert-file`, `tls-auth-clients`,
//! `tls-protocols`, `tls-ciphersuites`, `tls-ciphers`). It only holds and checks the settings; `crate::tls` turns them into a
//! rustls configuration, and CONFIG SET of any of them reloads the certificates.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::params::{optional_path_shown, parse_optional_path, Mutability, Param};

/// Whether TLS clients must present a certificate the CA signed (Redis's
/// `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsAuthClients {
    /// Required (Redis's default).
    Yes,
    /// Not asked for.
    No,
    /// Checked if presented.
    Optional,
}

impl TlsAuthClients {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsAuthClients::Yes => "yes",
            TlsAuthClients::No => "no",
            TlsAuthClients::Optional => "optional",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "yes" => Some(TlsAuthClients::Yes),
            "no" => Some(TlsAuthClients::No),
            "optional" => Some(TlsAuthClients::Optional),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// TLS port on the same address as the plain one; 0 = no TLS. Default 0.
    pub port: u16,
    /// The server's certificate chain (PEM). Required with a TLS port.
    pub cert_file: Option<PathBuf>,
    /// The server's private key (PEM). Required with a TLS port.
    pub key_file: Option<PathBuf>,
    /// CA certificates client certificates are checked against (PEM). Required unless
    /// `auth_clients` is no.
    pub ca_cert_file: Option<PathBuf>,
    /// yes | no | optional. Default yes, as Redis.
    pub auth_clients: TlsAuthClients,
    /// The protocol versions allowed, space-separated: TLSv1.2, TLSv1.3. Default both.
    pub protocols: String,
    /// TLS 1.3 cipher suites offered, colon-separated as OpenSSL writes them
    /// (`TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256`); empty = rustls's defaults.
    /// Default empty.
    pub ciphersuites: String,
    /// TLS 1.2 cipher suites offered, colon-separated in OpenSSL's names
    /// (`ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305`); empty = rustls's
    /// defaults (all ECDHE with AES-GCM or ChaCha20-Poly1305). Default empty.
    pub ciphers: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            port: 0,
            cert_file: None,
            key_file: None,
            ca_cert_file: None,
            auth_clients: TlsAuthClients::Yes,
            protocols: "TLSv1.2 TLSv1.3".into(),
            ciphersuites: String::new(),
            ciphers: String::new(),
        }
    }
}

impl TlsConfig {
    /// What serde cannot check; the message starts with the key.
    pub fn validate(&self) -> Result<(), String> {
        check_protocols(&self.protocols)?;
        if self.port == 0 {
            return Ok(());
        }
        if self.cert_file.is_none() || self.key_file.is_none() {
            return Err("cert_file, key_file: both are needed for a TLS port".into());
        }
        if self.auth_clients != TlsAuthClients::No && self.ca_cert_file.is_none() {
            return Err(
                "ca_cert_file: needed to check client certificates (or auth_clients: no)".into(),
            );
        }
        Ok(())
    }
}

/// Checks a `protocols` value: only TLSv1.2 and TLSv1.3 may be named.
fn check_protocols(protocols: &str) -> Result<(), String> {
    for word in protocols.split_whitespace() {
        if !matches!(word, "TLSv1.2" | "TLSv1.3") {
            return Err(format!(
                "protocols: '{word}' is not TLSv1.2 or TLSv1.3 (older versions are not offered)"
            ));
        }
    }
    Ok(())
}

/// The `tls-*` CONFIG parameters (listed after the others). Setting any of them reloads
/// the certificates (CONFIG SET fails, changing nothing, if they do not load).
pub const PARAMS: &[Param] = &[
    Param {
        name: "tls-port",
        mutability: Mutability::Fixed,
        get: |c| c.tls.port.to_string(),
        set: |c, v| {
            c.tls.port = super::params::in_range(v, 0, 65535)? as u16;
            Ok(())
        },
    },
    Param {
        name: "tls-cert-file",
        mutability: Mutability::Live,
        get: |c| optional_path_shown(&c.tls.cert_file),
        set: |c, v| {
            c.tls.cert_file = parse_optional_path(v);
            Ok(())
        },
    },
    Param {
        name: "tls-key-file",
        mutability: Mutability::Live,
        get: |c| optional_path_shown(&c.tls.key_file),
        set: |c, v| {
            c.tls.key_file = parse_optional_path(v);
            Ok(())
        },
    },
    Param {
        name: "tls-ca-cert-file",
        mutability: Mutability::Live,
        get: |c| optional_path_shown(&c.tls.ca_cert_file),
        set: |c, v| {
            c.tls.ca_cert_file = parse_optional_path(v);
            Ok(())
        },
    },
    Param {
        name: "tls-auth-clients",
        mutability: Mutability::Live,
        get: |c| c.tls.auth_clients.as_str().into(),
        set: |c, v| {
            c.tls.auth_clients = TlsAuthClients::parse(v)
                .ok_or_else(|| super::params::one_of(&["no", "yes", "optional"]))?;
            Ok(())
        },
    },
    Param {
        name: "tls-protocols",
        mutability: Mutability::Live,
        get: |c| c.tls.protocols.clone(),
        set: |c, v| {
            check_protocols(v)?;
            c.tls.protocols = if v.is_empty() {
                TlsConfig::default().protocols
            } else {
                v.to_string()
            };
            Ok(())
        },
    },
    Param {
        name: "tls-ciphersuites",
        mutability: Mutability::Live,
        get: |c| c.tls.ciphersuites.clone(),
        set: |c, v| {
            c.tls.ciphersuites = v.to_string();
            Ok(())
        },
    },
    Param {
        name: "tls-ciphers",
        mutability: Mutability::Live,
        get: |c| c.tls.ciphers.clone(),
        set: |c, v| {
            c.tls.ciphers = v.to_string();
            Ok(())
        },
    },
];
