//! The Docker hosts the controller runs jobs on: where each engine is (`--docker-host`,
//! repeatable, or a hosts file), how many jobs it may run at once, and how to reach it.
//!
//! The hosts file (`--docker-hosts-file`, TOML) lists one `[[host]]` table per engine:
//!
//! ```toml
//! [[host]]
//! name = "build-1"                      # what jobs record; default: the URL
//! url = "tcp://build-1.internal:2376"   # unix:///path, tcp://host:port or http://host:port
//! capacity = 4                          # jobs at once; default: only --max-concurrent-jobs
//! [host.tls]                            # client certificates, for a tcp:// engine with TLS
//! ca = "/etc/ci/docker/ca.pem"
//! cert = "/etc/ci/docker/cert.pem"
//! key = "/etc/ci/docker/key.pem"
//! ```

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The name of the one host of a controller given none: the local engine (`DOCKER_HOST`, then
/// the local socket).
pub const LOCAL: &str = "local";

/// One Docker engine of the controller.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSpec {
    /// What jobs record as their host and `ci-admin hosts` shows.
    pub name: String,
    /// Where the engine listens; `None`: the local default (`DOCKER_HOST`, then the socket).
    pub url: Option<String>,
    /// Jobs it may run at once; `None`: bounded only by `--max-concurrent-jobs`.
    pub capacity: Option<NonZeroUsize>,
    /// Client certificates for an engine that requires TLS (`tcp://` with `--tlsverify`).
    pub tls: Option<TlsFiles>,
}

impl HostSpec {
    /// The URL as shown to operators (the local default has none of its own).
    pub fn shown_url(&self) -> String {
        self.url.clone().unwrap_or_else(|| {
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
        })
    }
}

/// PEM files of a TLS client: the CA that signed the engine's certificate, and the client's
/// certificate and key (Docker's `ca.pem`, `cert.pem`, `key.pem`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    #[serde(rename = "host", default)]
    hosts: Vec<FileHost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHost {
    name: Option<String>,
    url: String,
    capacity: Option<NonZeroUsize>,
    tls: Option<TlsFiles>,
}

/// Why the host list cannot be used; each says what to change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HostsError {
    #[error("give the Docker hosts either with --docker-host or in --docker-hosts-file, not both")]
    Both,
    #[error("cannot read the Docker hosts file {path}: {error}")]
    Read { path: PathBuf, error: String },
    #[error("the Docker hosts file {path} is not valid: {error}")]
    Invalid { path: PathBuf, error: String },
    #[error("the Docker hosts file {0} lists no host: add a [[host]] table with a url")]
    Empty(PathBuf),
    #[error("two Docker hosts are named {0:?}: give each a name of its own")]
    Duplicate(String),
    #[error("the Docker host {name:?} has the URL {url:?}: use unix:///path, tcp://host:port or http://host:port")]
    Scheme { name: String, url: String },
    #[error(
        "the Docker host {0:?} has TLS files but no tcp:// or https:// URL: TLS needs a TCP engine"
    )]
    TlsWithoutTcp(String),
}

/// The hosts the operator gave: `flags` (each `--docker-host` URL, named by itself), or the
/// hosts file at `file`, or else the local engine alone, named [`LOCAL`].
pub fn specs(flags: &[String], file: Option<&Path>) -> Result<Vec<HostSpec>, HostsError> {
    let specs = match (flags, file) {
        ([_, ..], Some(_)) => return Err(HostsError::Both),
        ([], None) => vec![HostSpec {
            name: LOCAL.into(),
            url: None,
            capacity: None,
            tls: None,
        }],
        ([], Some(path)) => from_file(path)?,
        (urls, None) => urls
            .iter()
            .map(|url| HostSpec {
                name: url.clone(),
                url: Some(url.clone()),
                capacity: None,
                tls: None,
            })
            .collect(),
    };
    let mut seen = std::collections::BTreeSet::new();
    for spec in &specs {
        if !seen.insert(spec.name.as_str()) {
            return Err(HostsError::Duplicate(spec.name.clone()));
        }
        let Some(url) = &spec.url else { continue };
        let tcp = url.starts_with("tcp://") || url.starts_with("https://");
        if !(tcp || url.starts_with("unix://") || url.starts_with("http://")) {
            return Err(HostsError::Scheme {
                name: spec.name.clone(),
                url: url.clone(),
            });
        }
        if spec.tls.is_some() && !tcp {
            return Err(HostsError::TlsWithoutTcp(spec.name.clone()));
        }
    }
    Ok(specs)
}

fn from_file(path: &Path) -> Result<Vec<HostSpec>, HostsError> {
    let text = std::fs::read_to_string(path).map_err(|e| HostsError::Read {
        path: path.into(),
        error: e.to_string(),
    })?;
    let file: HostsFile = toml::from_str(&text).map_err(|e| HostsError::Invalid {
        path: path.into(),
        error: e.to_string(),
    })?;
    if file.hosts.is_empty() {
        return Err(HostsError::Empty(path.into()));
    }
    Ok(file
        .hosts
        .into_iter()
        .map(|h| HostSpec {
            name: h.name.unwrap_or_else(|| h.url.clone()),
            url: Some(h.url),
            capacity: h.capacity,
            tls: h.tls,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn without_hosts_the_local_engine_is_the_one_host() {
        let specs = specs(&[], None).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!((specs[0].name.as_str(), &specs[0].url), (LOCAL, &None));
    }

    #[test]
    fn each_flag_is_a_host_named_by_its_url() {
        let urls = ["unix:///run/a.sock".to_owned(), "tcp://b:2375".to_owned()];
        let names: Vec<_> = specs(&urls, None)
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.capacity))
            .collect();
        assert_eq!(
            names,
            [
                ("unix:///run/a.sock".into(), None),
                ("tcp://b:2375".into(), None)
            ]
        );
    }

    #[test]
    fn a_hosts_file_gives_names_capacities_and_tls() {
        let (_dir, path) = file(
            r#"
            [[host]]
            url = "unix:///run/docker.sock"
            capacity = 1

            [[host]]
            name = "build-2"
            url = "tcp://10.0.0.2:2376"
            capacity = 2
            [host.tls]
            ca = "/etc/ci/ca.pem"
            cert = "/etc/ci/cert.pem"
            key = "/etc/ci/key.pem"
            "#,
        );
        let specs = specs(&[], Some(&path)).unwrap();
        assert_eq!(specs[0].name, "unix:///run/docker.sock");
        assert_eq!(specs[0].capacity, NonZeroUsize::new(1));
        assert_eq!(specs[1].name, "build-2");
        assert_eq!(specs[1].capacity, NonZeroUsize::new(2));
        assert_eq!(
            specs[1].tls.as_ref().map(|t| t.key.clone()),
            Some(PathBuf::from("/etc/ci/key.pem"))
        );
    }

    #[test]
    fn a_wrong_hosts_list_is_refused_with_what_to_change() {
        let cases = [
            ("[[host]]\nurl = \"unix:///a\"\ncapacity = 0\n", "not valid"),
            ("[[host]]\nurl = \"unix:///a\"\nport = 1\n", "not valid"),
            ("", "lists no host"),
            (
                "[[host]]\nurl = \"unix:///a\"\n[[host]]\nurl = \"unix:///a\"\n",
                "two Docker hosts are named",
            ),
            ("[[host]]\nurl = \"ssh://a\"\n", "use unix:///path"),
            (
                "[[host]]\nurl = \"unix:///a\"\n[host.tls]\nca = \"c\"\ncert = \"c\"\nkey = \"k\"\n",
                "TLS needs a TCP engine",
            ),
        ];
        for (text, expected) in cases {
            let (_dir, path) = file(text);
            let error = specs(&[], Some(&path)).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let (_dir, path) = file("[[host]]\nurl = \"unix:///a\"\n");
        assert_eq!(
            specs(&["unix:///b".into()], Some(&path)),
            Err(HostsError::Both)
        );
        let missing = specs(&[], Some(Path::new("/nonexistent/hosts.toml"))).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }
}
