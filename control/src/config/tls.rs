//! `tls:` of `control.yaml`: the API's certificate and key, read and checked with the
//! proxy's own PEM code (`floodgate::tls::check_cert_and_key`) while the config is
//! validated, so a bad file fails `--check` and the start, naming file, field and reason.

use std::fmt;
use std::path::{Path, PathBuf};

use super::file::FileTls;
use super::ConfigError;

/// The API's TLS material, read from disk during validation.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiTls {
    /// Path of the PEM certificate chain.
    pub cert: PathBuf,
    /// Path of the PEM private key.
    pub key: PathBuf,
    /// The chain's PEM bytes.
    pub cert_pem: Vec<u8>,
    /// The key's PEM bytes.
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key material stays out of logs.
        f.debug_struct("ApiTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Validates `tls:`; pushes every problem to `errors` and returns `None` then.
pub(super) fn validate(
    t: FileTls,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<ApiTls> {
    let cert = read(
        t.cert,
        "tls.cert",
        "the PEM certificate chain",
        base_dir,
        errors,
    );
    let key = read(t.key, "tls.key", "the PEM private key", base_dir, errors);
    let ((cert, cert_pem), (key, key_pem)) = (cert?, key?);
    if let Err(e) = floodgate::tls::check_cert_and_key(&cert_pem, &key_pem) {
        // A key problem (missing, unsupported, mismatched) is the key's field; the rest the cert's.
        let field = match e {
            floodgate::tls::TlsError::NoPrivateKey
            | floodgate::tls::TlsError::InvalidKey(_)
            | floodgate::tls::TlsError::KeyMismatch => "tls.key",
            _ => "tls.cert",
        };
        let path = if field == "tls.key" { &key } else { &cert };
        errors.push(ConfigError::at(field, format!("{}: {e}", path.display())));
        return None;
    }
    Some(ApiTls {
        cert,
        key,
        cert_pem,
        key_pem,
    })
}

fn read(
    path: Option<String>,
    field: &str,
    what: &str,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<(PathBuf, Vec<u8>)> {
    let Some(p) = path.filter(|p| !p.trim().is_empty()) else {
        errors.push(ConfigError::at(
            field,
            format!("required with `tls:`: the path of {what}"),
        ));
        return None;
    };
    let path = base_dir.join(p);
    match std::fs::read(&path) {
        Ok(bytes) => Some((path, bytes)),
        Err(e) => {
            errors.push(ConfigError::at(
                field,
                format!("cannot read {}: {e}", path.display()),
            ));
            None
        }
    }
}
