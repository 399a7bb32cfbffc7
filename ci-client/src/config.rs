//! Where the server URL and the API key come from, in this order: the command-line flag, the
//! environment (`CI_SERVER_URL`, `CI_API_KEY`), the config file (`~/.ci/config`, or the file
//! named by `CI_CONFIG`), then the default (`http://localhost:8000`; no key).
//!
//! The config file holds `name=value` lines; blank lines and lines starting with `#` are skipped:
//!
//! ```text
//! server_url=https://ci.example.com
//! api_key=ci_...
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ci_common::keys::SecretKey;
use reqwest::Url;

pub const SERVER_ENV: &str = "CI_SERVER_URL";
pub const API_KEY_ENV: &str = "CI_API_KEY";
pub const CONFIG_ENV: &str = "CI_CONFIG";
pub const DEFAULT_SERVER: &str = "http://localhost:8000";

/// How to give a key, for every message about a missing or refused one.
pub const KEY_HELP: &str = "give a valid key with --api-key <KEY>, the CI_API_KEY environment \
                            variable, or a line `api_key=<KEY>` in ~/.ci/config";

/// Where a setting came from, so messages can point at the right place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("the command line"),
            Source::Env(name) => write!(f, "the {name} environment variable"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Default => f.write_str("the default"),
        }
    }
}

/// The values found in a config file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub path: PathBuf,
    pub server_url: Option<String>,
    pub api_key: Option<String>,
    /// What in the file was not understood, one message per line (`ci` prints them on
    /// stderr): a line without `=`, an unknown setting.
    pub warnings: Vec<String>,
}

/// The settings a config file may hold.
const SETTINGS: [&str; 2] = ["server_url", "api_key"];

impl FileConfig {
    pub fn parse(path: &Path, text: &str) -> Self {
        let mut config = FileConfig {
            path: path.to_owned(),
            ..FileConfig::default()
        };
        let place = |number: usize| format!("{} line {number}", path.display());
        for (index, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                config.warnings.push(format!(
                    "{}: ignored, not a `name=value` line (e.g. server_url=http://ci:8000)",
                    place(index + 1)
                ));
                continue;
            };
            let value = unquote(value.trim());
            match name.trim() {
                _ if value.is_empty() => {}
                "server_url" => config.server_url = Some(value.to_owned()),
                "api_key" => config.api_key = Some(value.to_owned()),
                other => config.warnings.push(format!(
                    "{}: unknown setting `{other}`, ignored (the settings are {})",
                    place(index + 1),
                    SETTINGS.join(", ")
                )),
            }
        }
        config
    }

    /// Reads the file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(path, &text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig {
                path: path.to_owned(),
                ..FileConfig::default()
            }),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot read the config file {}: fix its permissions or set CI_CONFIG",
                    path.display()
                )
            }),
        }
    }
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// `$CI_CONFIG`, else `$HOME/.ci/config`.
pub fn config_path(ci_config: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    ci_config.filter(|p| !p.as_os_str().is_empty()).or_else(|| {
        home.filter(|h| !h.as_os_str().is_empty())
            .map(|h| h.join(".ci").join("config"))
    })
}

/// What the environment says, captured once so resolution is a pure function.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub server_url: Option<String>,
    pub api_key: Option<String>,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Env {
            server_url: var(SERVER_ENV),
            api_key: var(API_KEY_ENV),
        }
    }
}

/// The settings every command that talks to the server needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub servers: Vec<Url>,
    pub servers_source: Source,
    pub api_key: Option<(String, Source)>,
}

impl Settings {
    pub fn resolve(
        flag_server: Option<&str>,
        flag_key: Option<&str>,
        env: &Env,
        file: &FileConfig,
    ) -> Result<Self> {
        let (server, servers_source) = first_of(
            flag_server,
            env.server_url.as_deref(),
            SERVER_ENV,
            file.server_url.as_deref(),
            &file.path,
        )
        .unwrap_or((DEFAULT_SERVER, Source::Default));
        let servers = parse_servers(server)
            .with_context(|| format!("the server URL from {servers_source} is not usable"))?;
        let api_key = first_of(
            flag_key,
            env.api_key.as_deref(),
            API_KEY_ENV,
            file.api_key.as_deref(),
            &file.path,
        )
        .map(|(key, source)| (key.trim().to_owned(), source));
        Ok(Settings {
            servers,
            servers_source,
            api_key,
        })
    }

    /// The API key, checked for shape (prefix, length, checksum) before it is sent anywhere.
    pub fn key(&self) -> Result<SecretKey> {
        let Some((key, source)) = &self.api_key else {
            bail!("no API key given: {KEY_HELP} (an administrator creates keys with ci-admin)");
        };
        SecretKey::parse(key)
            .with_context(|| format!("the API key from {source} is not a valid key: {KEY_HELP}"))
    }
}

fn first_of<'a>(
    flag: Option<&'a str>,
    env: Option<&'a str>,
    env_name: &'static str,
    file: Option<&'a str>,
    file_path: &Path,
) -> Option<(&'a str, Source)> {
    let nonempty = |v: Option<&'a str>| v.filter(|v| !v.trim().is_empty());
    nonempty(flag)
        .map(|v| (v, Source::Flag))
        .or_else(|| nonempty(env).map(|v| (v, Source::Env(env_name))))
        .or_else(|| nonempty(file).map(|v| (v, Source::File(file_path.to_owned()))))
}

/// `url1,url2,...` → the replicas, in the order to try them.
pub fn parse_servers(text: &str) -> Result<Vec<Url>> {
    let mut servers = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let with_scheme = if part.contains("://") {
            part.to_owned()
        } else {
            format!("http://{part}")
        };
        let mut url = Url::parse(&with_scheme)
            .with_context(|| format!("{part:?} is not a URL (expected e.g. {DEFAULT_SERVER})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            bail!("{part:?} is not an http(s) URL (expected e.g. {DEFAULT_SERVER})");
        }
        // Paths are joined onto the base, so it must end with exactly one '/'.
        let path = format!("{}/", url.path().trim_end_matches('/'));
        url.set_path(&path);
        servers.push(url);
    }
    if servers.is_empty() {
        bail!("no server URL given (expected e.g. {DEFAULT_SERVER})");
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "flag-key";

    fn file(server: Option<&str>, key: Option<&str>) -> FileConfig {
        FileConfig {
            path: PathBuf::from("/home/u/.ci/config"),
            server_url: server.map(str::to_owned),
            api_key: key.map(str::to_owned),
            warnings: Vec::new(),
        }
    }

    fn env(server: Option<&str>, key: Option<&str>) -> Env {
        Env {
            server_url: server.map(str::to_owned),
            api_key: key.map(str::to_owned),
        }
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let f = file(Some("http://file:1"), Some("file-key"));
        let e = env(Some("http://env:1"), Some("env-key"));

        let s = Settings::resolve(Some("http://flag:1"), Some(KEY_A), &e, &f).unwrap();
        assert_eq!(s.servers[0].as_str(), "http://flag:1/");
        assert_eq!(s.servers_source, Source::Flag);
        assert_eq!(s.api_key, Some((KEY_A.to_owned(), Source::Flag)));

        let s = Settings::resolve(None, None, &e, &f).unwrap();
        assert_eq!(s.servers[0].as_str(), "http://env:1/");
        assert_eq!(
            s.api_key,
            Some(("env-key".to_owned(), Source::Env(API_KEY_ENV)))
        );

        let s = Settings::resolve(None, None, &Env::default(), &f).unwrap();
        assert_eq!(s.servers[0].as_str(), "http://file:1/");
        assert_eq!(s.api_key.unwrap().1, Source::File(f.path.clone()));

        let s = Settings::resolve(None, None, &Env::default(), &file(None, None)).unwrap();
        assert_eq!(s.servers[0].as_str(), "http://localhost:8000/");
        assert_eq!(s.servers_source, Source::Default);
        assert_eq!(s.api_key, None);
    }

    #[test]
    fn server_and_key_resolve_independently() {
        let s = Settings::resolve(
            Some("http://flag:1"),
            None,
            &env(None, None),
            &file(Some("http://file:1"), Some("file-key")),
        )
        .unwrap();
        assert_eq!(s.servers[0].as_str(), "http://flag:1/");
        assert_eq!(s.api_key.unwrap().0, "file-key");
    }

    #[test]
    fn empty_values_do_not_hide_the_next_source() {
        let s = Settings::resolve(
            Some(""),
            Some("  "),
            &env(None, None),
            &file(None, Some("file-key")),
        )
        .unwrap();
        assert_eq!(s.api_key.unwrap().0, "file-key");
    }

    #[test]
    fn replica_lists_keep_their_order() {
        let servers = parse_servers("http://a:1, https://b:2/ci/ ,c:3").unwrap();
        let servers: Vec<_> = servers.iter().map(Url::as_str).collect();
        assert_eq!(servers, ["http://a:1/", "https://b:2/ci/", "http://c:3/"]);
        assert!(parse_servers("ftp://x").is_err());
        assert!(parse_servers(" , ").is_err());
    }

    #[test]
    fn config_file_format() {
        let text =
            "# my ci\n\nserver_url = http://ci:8000\napi_key=\"ci_abc\"\nunknown=1\nnot a line\n";
        let config = FileConfig::parse(Path::new("/c"), text);
        assert_eq!(config.server_url.as_deref(), Some("http://ci:8000"));
        assert_eq!(config.api_key.as_deref(), Some("ci_abc"));
    }

    #[test]
    fn unknown_settings_and_other_lines_are_warned_about_with_their_line() {
        let text = "server_url=http://ci:8000\napi-key = ci_abc\n\n# note\njust words\n";
        let config = FileConfig::parse(Path::new("/home/u/.ci/config"), text);
        assert_eq!(config.server_url.as_deref(), Some("http://ci:8000"));
        assert_eq!(config.api_key, None);
        assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
        assert!(
            config.warnings[0].starts_with("/home/u/.ci/config line 2: unknown setting `api-key`")
                && config.warnings[0].contains("server_url, api_key"),
            "{}",
            config.warnings[0]
        );
        assert!(config.warnings[1].starts_with("/home/u/.ci/config line 5: ignored"));
    }

    #[test]
    fn missing_config_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileConfig::load(&dir.path().join("nope")).unwrap();
        assert_eq!(config.api_key, None);
    }

    #[test]
    fn config_path_prefers_ci_config() {
        assert_eq!(
            config_path(Some("/x/cfg".into()), Some("/home/u".into())),
            Some(PathBuf::from("/x/cfg"))
        );
        assert_eq!(
            config_path(None, Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.ci/config"))
        );
        assert_eq!(config_path(None, None), None);
    }

    #[test]
    fn key_errors_name_the_three_ways() {
        let s = Settings::resolve(None, None, &Env::default(), &file(None, None)).unwrap();
        let message = format!("{:#}", s.key().unwrap_err());
        assert!(
            message.contains("--api-key")
                && message.contains("CI_API_KEY")
                && message.contains("~/.ci/config")
        );

        let s =
            Settings::resolve(None, Some("ci_short"), &Env::default(), &file(None, None)).unwrap();
        let message = format!("{:#}", s.key().unwrap_err());
        assert!(
            message.contains("from the command line is not a valid key"),
            "{message}"
        );

        let key = SecretKey::generate();
        let s = Settings::resolve(None, Some(key.expose()), &Env::default(), &file(None, None))
            .unwrap();
        assert_eq!(s.key().unwrap(), key);
    }
}
