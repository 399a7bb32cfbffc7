//! Jobs whose project comes from a git repository (`ci submit --git URL --ref REF`, or
//! `POST /api/v1/jobs` with a JSON body): the request's shape, the rules for refs, and the
//! command of the step that fetches the project ([`fetch_command`]).
//!
//! The fetch runs in a container of its own (the job's first step, on the operator's
//! `--git-network`), never on a replica or on the controller's machine: a shallow fetch of the one
//! ref, checked out detached in the project folder. The controller then stores the fetched tree
//! (without `.git`) as the job's source, as if it had been uploaded, and plans the job's other
//! steps from it; `.git` stays in the workspace for tools that read it (setuptools-scm).

use serde::{Deserialize, Serialize};

/// The ref fetched when a job names none: the remote's default branch.
pub const DEFAULT_REF: &str = "HEAD";
/// Longest URL accepted, in bytes.
pub const URL_MAX_LEN: usize = 2048;
/// Longest ref accepted, in bytes.
pub const REF_MAX_LEN: usize = 255;
/// The name of the fetch step (and of its container).
pub const FETCH_STEP: &str = "fetch";

/// Where a job's project comes from in git: a remote and a ref (a branch, a tag, or a full
/// commit SHA when the remote allows fetching one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GitSource {
    /// The remote, e.g. `https://github.com/owner/repo.git` (the operator's `--git-allow`
    /// rules say which are allowed).
    pub url: String,
    /// Branch, tag or commit; absent: the remote's default branch (`HEAD`).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub git_ref: Option<String>,
}

impl GitSource {
    /// The ref to fetch.
    pub fn reference(&self) -> &str {
        self.git_ref.as_deref().unwrap_or(DEFAULT_REF)
    }
}

/// The body of `POST /api/v1/jobs` sent as JSON: a job from git.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GitJobRequest {
    pub git: GitSource,
    /// The task to run (default `test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub task: Option<String>,
    /// Extra arguments of the task's last command (pytest's for `test`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The team to submit the job to (the caller must be a member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub team: Option<String>,
}

/// A job's git source as the API shows it: what was asked for and, once fetched, the commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GitView {
    pub url: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The full SHA of the commit checked out; absent until the fetch step has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub commit: Option<String>,
}

/// Checks a ref as git would take it on a command line, and more strictly: 1 to
/// [`REF_MAX_LEN`] bytes of letters, digits and `/ . _ - + @`, not starting with `-` (an option)
/// or `/`, without `..`, `//`, `@{` or a trailing `.lock`, `/` or `.`.
///
/// # Errors
///
/// A message that says what a ref may hold.
pub fn check_ref(r: &str) -> Result<(), String> {
    let ok = !r.is_empty()
        && r.len() <= REF_MAX_LEN
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@'))
        && !r.starts_with(['-', '/', '.'])
        && !r.ends_with(['/', '.'])
        && !r.ends_with(".lock")
        && !r.contains("..")
        && !r.contains("//")
        && !r.contains("@{");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid git ref {r:?}: give a branch, tag or commit of 1 to {REF_MAX_LEN} letters, \
             digits and / . _ - + @, not starting with - or /, e.g. main or v1.2.0"
        ))
    }
}

/// Checks a URL's length and characters (the operator's rules are checked apart, with
/// [`crate::outbound`]).
///
/// # Errors
///
/// A message that says what is wrong.
pub fn check_url_text(url: &str) -> Result<(), String> {
    if url.is_empty() || url.len() > URL_MAX_LEN {
        return Err(format!(
            "invalid git URL: give the remote's URL, up to {URL_MAX_LEN} bytes"
        ));
    }
    if url.starts_with('-') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid git URL {url:?}: no spaces, control characters or leading -"
        ));
    }
    Ok(())
}

/// The argument vector of the fetch step, run by `sh` in the project folder (empty, owned by
/// the job's user): `git init`, a shallow fetch of `git_ref` from `url` without tags,
/// submodules or other protocols, a detached checkout, and one line saying which commit.
/// `resolve` pins the host to the addresses the controller checked (curl's `HOST:PORT:ADDR`,
/// for http and https; for git:// the URL is given with the address instead).
///
/// The URL and ref are arguments of the script (`$1`, `$2`), never part of its text.
pub fn fetch_command(url: &str, git_ref: &str, resolve: Option<&str>) -> Vec<String> {
    const SCRIPT: &str = r#"set -eu
git init -q .
git -c protocol.allow=never -c protocol.https.allow=always -c protocol.http.allow=always \
    -c protocol.git.allow=always ${3:+-c http.curloptResolve="$3"} \
    -c credential.helper= -c credential.helper='!f() { test "$1" = get && test -n "${CI_GIT_PASSWORD:-}" || exit 0; echo "username=$CI_GIT_USERNAME"; echo "password=$CI_GIT_PASSWORD"; }; f' \
    fetch --quiet --depth 1 --no-tags --no-recurse-submodules "$1" "$2"
git -c advice.detachedHead=false checkout -q --detach FETCH_HEAD
git log -1 --format='checked out %H (%s)'
"#;
    let mut argv = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        SCRIPT.to_owned(),
        "fetch".to_owned(),
        url.to_owned(),
        git_ref.to_owned(),
    ];
    if let Some(resolve) = resolve {
        argv.push(resolve.to_owned());
    }
    argv
}

/// The environment of the fetch step: no prompt for credentials (a private remote without a
/// stored credential fails at once), no system or user git configuration. The owner's
/// credential for the host, if any, comes as `CI_GIT_USERNAME` and `CI_GIT_PASSWORD` (given
/// when the container is made, never stored with the plan) and is read by a credential helper
/// of the fetch command, so it is in no URL, argument or log line.
pub const FETCH_ENV: &[&str] = &[
    "GIT_TERMINAL_PROMPT=0",
    "GIT_CONFIG_NOSYSTEM=1",
    "GIT_CONFIG_GLOBAL=/dev/null",
    "GIT_ASKPASS=/bin/false",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_checked() {
        for good in [
            "main",
            "v1.2.0",
            "feature/x_y",
            "HEAD",
            "a1b2c3",
            "release-2026+1",
        ] {
            assert_eq!(check_ref(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-c",
            "--upload-pack=evil",
            "/abs",
            "a..b",
            "a//b",
            "a b",
            "x.lock",
            "end/",
            "@{-1}",
            "ü",
            &"a".repeat(256),
        ] {
            let err = check_ref(bad).unwrap_err();
            assert!(err.contains("e.g. main"), "{bad}: {err}");
        }
    }

    #[test]
    fn urls_with_spaces_or_a_leading_dash_are_refused() {
        assert!(check_url_text("https://example.com/r.git").is_ok());
        assert!(check_url_text("-uhttps://x").is_err());
        assert!(check_url_text("https://x/a b").is_err());
        assert!(check_url_text("").is_err());
    }

    #[test]
    fn the_request_reads_with_and_without_a_ref() {
        let r: GitJobRequest =
            serde_json::from_str(r#"{"git": {"url": "https://h/r.git"}, "args": ["-k", "x"]}"#)
                .unwrap();
        assert_eq!(r.git.reference(), "HEAD");
        assert_eq!(r.args, ["-k", "x"]);
        let r: GitJobRequest =
            serde_json::from_str(r#"{"git": {"url": "u", "ref": "v1"}, "task": "lint"}"#).unwrap();
        assert_eq!(r.git.reference(), "v1");
        assert!(serde_json::from_str::<GitJobRequest>(r#"{"git": {"url": "u"}, "x": 1}"#).is_err());
    }

    #[test]
    fn url_and_ref_are_arguments_not_script() {
        let argv = fetch_command("https://h/r.git", "main", Some("h:443:1.2.3.4"));
        assert_eq!(argv[4..], ["https://h/r.git", "main", "h:443:1.2.3.4"]);
        assert!(!argv[2].contains("https://h"));
    }
}
