//! Private certificate authorities for the TLS tests, made with Debian's `openssl`: a CA, and
//! certificates it signs for a server on 127.0.0.1 or for a client.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `openssl ARGS` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug)]
pub enum Usage {
    /// A server reached at 127.0.0.1.
    Server,
    /// A client that authenticates with it.
    Client,
}

/// A CA in `dir`: `ca.pem` (its certificate) and `ca.key`. Returns the certificate's path.
pub fn ca(dir: &Path) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=ci test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    dir.join("ca.pem")
}

/// A certificate `NAME.pem` with its key `NAME.key` (0600) in `dir`, signed by the CA made there
/// by [`ca`]. Returns the paths of the certificate and the key.
pub fn signed(dir: &Path, name: &str, usage: Usage) -> (PathBuf, PathBuf) {
    let (cn, extensions) = match usage {
        Usage::Server => (
            "/CN=127.0.0.1",
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        Usage::Client => (
            "/CN=ci-controller",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    };
    let (key, csr, cert, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.cnf"),
    );
    std::fs::write(dir.join(&ext), extensions).unwrap();
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", cn, "-keyout", &key, "-out", &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
    let key = dir.join(key);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (dir.join(cert), key)
}
