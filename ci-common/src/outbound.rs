//! Where the service may connect out to: the git remotes jobs fetch from and the receivers of
//! webhooks. The operator allows URLs by rule (`ci-controller --git-allow`, `--webhook-allow`);
//! the rules travel in the operator's policy ([`crate::policy::Policy`]), so the server refuses
//! at submission what the controller would refuse later.
//!
//! A rule is `SCHEME://HOST` where HOST is a name (`github.com`), a wildcard (`*.example.com`, or
//! `*` for any host), an IP address or a CIDR block (`172.20.0.0/16`, `fd00::/8`). A URL is
//! allowed when a rule has its scheme and matches its host. Requests to the service's own
//! neighbourhood (server-side request forgery) are refused on top of that: every address the host
//! resolves to that is on a loopback, private, link-local, shared or otherwise non-public range
//! ([`is_internal`]) must be named by a rule explicitly — an address or block that holds it, or
//! the host's exact name. Wildcards never allow such addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The rules when the operator gives none: any public host over HTTPS.
pub const DEFAULT_RULES: &[&str] = &["https://*"];

/// One allow rule, as the operator writes it (`https://*.example.com`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    scheme: String,
    host: HostPattern,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`: the domain's sub-domains (not the domain itself).
    Suffix(String),
    Name(String),
    Net(ipnet::IpNet),
}

/// A rule that cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the allow rule {rule:?} cannot be read ({why}): write SCHEME://HOST, where HOST is a name \
     (github.com), a wildcard (*.example.com or *), an IP address or a CIDR block (172.20.0.0/16)"
)]
pub struct RuleError {
    pub rule: String,
    pub why: &'static str,
}

impl FromStr for AllowRule {
    type Err = RuleError;

    fn from_str(rule: &str) -> Result<Self, RuleError> {
        let err = |why| RuleError {
            rule: rule.to_owned(),
            why,
        };
        let (scheme, host) = rule.trim().split_once("://").ok_or_else(|| err("no ://"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return Err(err("the scheme is not a word such as https"));
        }
        let host = host.trim_end_matches('/').to_ascii_lowercase();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host);
        let pattern = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if !valid_name(domain) {
                return Err(err("the domain after *. is not a host name"));
            }
            HostPattern::Suffix(domain.to_owned())
        } else if let Ok(net) = host.parse::<ipnet::IpNet>() {
            HostPattern::Net(net.trunc())
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Net(ipnet::IpNet::from(ip))
        } else if valid_name(host) {
            HostPattern::Name(host.to_owned())
        } else {
            return Err(err(
                "the host is neither a name, a wildcard, an address nor a block",
            ));
        };
        Ok(Self {
            scheme,
            host: pattern,
        })
    }
}

impl std::fmt::Display for AllowRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            HostPattern::Any => write!(f, "{}://*", self.scheme),
            HostPattern::Suffix(domain) => write!(f, "{}://*.{domain}", self.scheme),
            HostPattern::Name(name) => write!(f, "{}://{name}", self.scheme),
            HostPattern::Net(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}://{}", self.scheme, net.addr())
            }
            HostPattern::Net(net) => write!(f, "{}://{net}", self.scheme),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Why a URL is refused. The messages say what to change.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{url:?} is not a URL: {why}")]
    NotAUrl { url: String, why: String },
    #[error("{url:?} carries a user name or password; give credentials another way")]
    Credentials { url: String },
    #[error(
        "{url:?} is not allowed on this service (allowed: {allowed}); ask the operator to allow \
         it ({flag})"
    )]
    NotAllowed {
        url: String,
        allowed: String,
        flag: &'static str,
    },
    #[error(
        "{url:?} leads to {addr}, an address on a loopback, private or link-local range, which \
         this service does not connect to unless the operator allows that address or host by \
         name ({flag})"
    )]
    Internal {
        url: String,
        addr: IpAddr,
        flag: &'static str,
    },
    #[error("the host of {url:?} cannot be resolved: {why}")]
    Unresolved { url: String, why: String },
}

/// A URL the rules allow, with the addresses its host resolved to (to connect to those and
/// only those, so that a second lookup cannot lead elsewhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub url: url::Url,
    /// The host as written (a name or an address).
    pub host: String,
    /// The port, the scheme's default when the URL gives none.
    pub port: u16,
    pub addrs: Vec<IpAddr>,
}

/// The operator's rules for one kind of outbound connection, with the flag that sets them (for
/// messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    rules: Vec<AllowRule>,
    flag: &'static str,
}

impl Allowlist {
    /// Reads `rules` (see the module's documentation), set by the operator with `flag`.
    ///
    /// # Errors
    ///
    /// The first rule that cannot be read.
    pub fn parse(rules: &[String], flag: &'static str) -> Result<Self, RuleError> {
        Ok(Self {
            rules: rules.iter().map(|r| r.parse()).collect::<Result<_, _>>()?,
            flag,
        })
    }

    /// The rules, as the operator writes them.
    pub fn rules(&self) -> Vec<String> {
        self.rules.iter().map(ToString::to_string).collect()
    }

    /// Checks `raw` and the addresses its host resolves to.
    ///
    /// # Errors
    ///
    /// [`Refused`]: not a URL, credentials in it, no rule for it, an internal address not
    /// named by a rule, or a host that does not resolve.
    #[cfg(feature = "db")]
    pub async fn check(&self, raw: &str) -> Result<Target, Refused> {
        let (url, host, port) = self.check_url(raw)?;
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| Refused::Unresolved {
                    url: raw.to_owned(),
                    why: e.to_string(),
                })?
                .map(|a| a.ip())
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Refused::Unresolved {
                url: raw.to_owned(),
                why: "no address".into(),
            });
        }
        self.check_addrs(raw, &url, &addrs)?;
        Ok(Target {
            url,
            host,
            port,
            addrs,
        })
    }

    /// The checks that need no lookup: the URL's form, its scheme and host against the rules.
    /// Returns the parsed URL, its host and port.
    ///
    /// # Errors
    ///
    /// [`Refused`] but for the address checks.
    pub fn check_url(&self, raw: &str) -> Result<(url::Url, String, u16), Refused> {
        let url = url::Url::parse(raw).map_err(|e| Refused::NotAUrl {
            url: raw.to_owned(),
            why: e.to_string(),
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials { url: redact(&url) });
        }
        if !self.rules.iter().any(|rule| rule.scheme == url.scheme()) {
            return Err(self.not_allowed(raw));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => {
                return Err(Refused::NotAUrl {
                    url: raw.to_owned(),
                    why: "it names no host".into(),
                })
            }
        };
        let port = url
            .port_or_known_default()
            .or_else(|| default_port(url.scheme()))
            .ok_or_else(|| Refused::NotAUrl {
                url: raw.to_owned(),
                why: "it names no port and its scheme has no default".into(),
            })?;
        let ip = host.parse::<IpAddr>().ok();
        let allowed = self.rules.iter().any(|rule| {
            rule.scheme == url.scheme()
                && match (&rule.host, ip) {
                    (HostPattern::Any, _) => true,
                    (HostPattern::Suffix(domain), None) => host.ends_with(&format!(".{domain}")),
                    (HostPattern::Name(name), None) => *name == host,
                    (HostPattern::Net(net), Some(ip)) => net.contains(&ip),
                    _ => false,
                }
        });
        if !allowed {
            return Err(self.not_allowed(raw));
        }
        Ok((url, host, port))
    }

    /// Checks the addresses `url`'s host resolved to: an internal one must be named by a rule.
    ///
    /// # Errors
    ///
    /// [`Refused::Internal`] for the first internal address no rule names.
    pub fn check_addrs(&self, raw: &str, url: &url::Url, addrs: &[IpAddr]) -> Result<(), Refused> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        for &addr in addrs {
            if !is_internal(addr) {
                continue;
            }
            let named = self.rules.iter().any(|rule| {
                rule.scheme == url.scheme()
                    && match &rule.host {
                        HostPattern::Net(net) => net.contains(&addr),
                        HostPattern::Name(name) => *name == host,
                        _ => false,
                    }
            });
            if !named {
                return Err(Refused::Internal {
                    url: raw.to_owned(),
                    addr,
                    flag: self.flag,
                });
            }
        }
        Ok(())
    }

    fn not_allowed(&self, raw: &str) -> Refused {
        Refused::NotAllowed {
            url: raw.to_owned(),
            allowed: if self.rules.is_empty() {
                "nothing".to_owned()
            } else {
                self.rules().join(", ")
            },
            flag: self.flag,
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "git" => Some(9418),
        "ssh" => Some(22),
        _ => None,
    }
}

fn redact(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// Whether `ip` is on a range a request from the service must not reach unless allowed by name:
/// unspecified, loopback, private (RFC 1918), shared (100.64.0.0/10), link-local, broadcast,
/// documentation, benchmarking, reserved and multicast addresses; IPv6 unique-local and
/// link-local ones; and IPv4 addresses written as IPv6 (mapped or compatible).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped().or_else(|| v6.to_ipv4()) {
            Some(v4) if !v6.is_loopback() && !v6.is_unspecified() => internal_v4(v4),
            _ => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[&str]) -> Allowlist {
        let rules: Vec<String> = rules.iter().map(|r| (*r).to_owned()).collect();
        Allowlist::parse(&rules, "--git-allow").unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rules_read_and_print_back() {
        for rule in [
            "https://*",
            "https://*.example.com",
            "git://github.com",
            "git://172.20.0.0/16",
            "http://10.1.2.3",
            "https://fd00::/8",
        ] {
            assert_eq!(rule.parse::<AllowRule>().unwrap().to_string(), rule);
        }
        for bad in [
            "github.com",
            "https://",
            "https://exa mple.com",
            "://x",
            "https://*.*",
        ] {
            let err = bad.parse::<AllowRule>().unwrap_err();
            assert!(err.to_string().contains("SCHEME://HOST"), "{err}");
        }
    }

    #[test]
    fn scheme_and_host_must_match_a_rule() {
        let rules = list(&[
            "https://*.example.com",
            "git://git.corp",
            "https://github.com",
        ]);
        assert!(rules.check_url("https://a.example.com/x.git").is_ok());
        assert!(rules.check_url("https://github.com/a/b").is_ok());
        assert!(rules.check_url("git://git.corp/repo").is_ok());
        for refused in [
            "https://example.com/x",
            "http://github.com/a/b",
            "git://github.com/a/b",
            "file:///etc/passwd",
            "https://evilgithub.com/a",
        ] {
            let err = rules.check_url(refused).unwrap_err();
            assert!(
                matches!(err, Refused::NotAllowed { .. }),
                "{refused}: {err}"
            );
            assert!(err.to_string().contains("--git-allow"), "{err}");
        }
        let err = rules
            .check_url("https://user:secret@github.com/a")
            .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(matches!(err, Refused::Credentials { .. }));
        assert!(matches!(
            rules.check_url("not a url").unwrap_err(),
            Refused::NotAUrl { .. }
        ));
    }

    #[test]
    fn internal_addresses_need_a_rule_that_names_them() {
        let any = list(DEFAULT_RULES);
        let url = url::Url::parse("https://h.example/x").unwrap();
        assert!(any.check_addrs("u", &url, &[ip("140.82.112.3")]).is_ok());
        for addr in [
            "127.0.0.1",
            "10.0.0.1",
            "172.17.0.2",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.1.1",
        ] {
            let err = any.check_addrs("u", &url, &[ip(addr)]).unwrap_err();
            assert!(matches!(err, Refused::Internal { .. }), "{addr}: {err}");
        }
        // A literal internal address is refused by `*` too.
        assert!(any.check_url("https://10.0.0.1/x").is_ok());
        let named = list(&["https://*", "https://10.9.0.0/16", "https://git.lan"]);
        assert!(named.check_addrs("u", &url, &[ip("10.9.3.4")]).is_ok());
        assert!(named.check_addrs("u", &url, &[ip("10.8.3.4")]).is_err());
        let lan = url::Url::parse("https://git.lan/r").unwrap();
        assert!(named.check_addrs("u", &lan, &[ip("192.168.0.5")]).is_ok());
        // Another scheme's rule does not name it.
        let git = url::Url::parse("git://git.lan/r").unwrap();
        assert!(named.check_addrs("u", &git, &[ip("192.168.0.5")]).is_err());
    }

    #[test]
    fn ports_default_by_scheme() {
        let rules = list(&["git://*", "https://*", "ssh://*"]);
        assert_eq!(rules.check_url("git://h.example/r").unwrap().2, 9418);
        assert_eq!(rules.check_url("https://h.example/r").unwrap().2, 443);
        assert_eq!(rules.check_url("https://h.example:8443/r").unwrap().2, 8443);
    }

    #[tokio::test]
    async fn literal_addresses_are_checked_without_a_lookup() {
        let rules = list(&["git://127.0.0.1"]);
        let target = rules.check("git://127.0.0.1:9000/repo").await.unwrap();
        assert_eq!(target.addrs, [ip("127.0.0.1")]);
        assert_eq!(target.port, 9000);
        let err = list(&["git://*"])
            .check("git://127.0.0.1/repo")
            .await
            .unwrap_err();
        assert!(matches!(err, Refused::Internal { .. }), "{err}");
    }
}
