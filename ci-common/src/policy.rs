//! The operator's policy: what the controller allows (images, archive limits). The controller
//! builds it from its flags and publishes it in the database when it starts
//! ([`crate::db::policy`]); the server checks every upload against the published row, so nothing
//! is accepted that the controller would then refuse, and each limit is set in one place.

use serde::{Deserialize, Serialize};

/// The image jobs run in when neither the operator nor the project names another.
pub const DEFAULT_IMAGE: &str = "python:3.12-slim";
/// Largest unpacked project, in bytes (the controller's `--workspace-size`).
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 256 << 20;
/// Most entries (files and folders) in a project archive (the controller's `--max-entries`).
pub const DEFAULT_MAX_ENTRIES: u64 = 20_000;
/// Most re-runs of failed tests a job may ask for (the controller's `--max-retries`).
pub const DEFAULT_MAX_RETRIES: u32 = 3;

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

/// What the operator allows. Serialized as JSON in the `operator_policy` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The image of a job that does not ask for one.
    pub default_image: String,
    /// Images a job may ask for (`ci submit --image`, `image` in `[tool.ci]`); the default image
    /// is always allowed.
    pub allowed_images: Vec<String>,
    /// Largest unpacked project, in bytes.
    pub max_unpacked_bytes: u64,
    /// Most entries in a project archive.
    pub max_entries: u64,
    /// Most re-runs of failed tests a job may ask for (`ci submit --retries`, `retries` under
    /// `[tool.ci]`).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Where jobs may fetch their project from with git: allow rules (see
    /// [`crate::outbound`], `ci-controller --git-allow`).
    #[serde(default = "default_outbound_rules")]
    pub git_allow: Vec<String>,
    /// Where outgoing webhooks may be sent: allow rules (see [`crate::outbound`],
    /// `ci-controller --webhook-allow`).
    #[serde(default = "default_outbound_rules")]
    pub webhook_allow: Vec<String>,
    /// Most queued jobs one user may have (`ci-controller --max-queued-per-user`); 0: no limit.
    #[serde(default)]
    pub max_queued_per_user: u64,
}

fn default_outbound_rules() -> Vec<String> {
    crate::outbound::DEFAULT_RULES
        .iter()
        .map(|r| (*r).to_owned())
        .collect()
}

impl Default for Policy {
    /// The policy of a controller started without flags (used until a controller publishes one).
    fn default() -> Self {
        Self {
            default_image: DEFAULT_IMAGE.to_owned(),
            allowed_images: vec![DEFAULT_IMAGE.to_owned()],
            max_unpacked_bytes: DEFAULT_MAX_UNPACKED_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_retries: DEFAULT_MAX_RETRIES,
            git_allow: default_outbound_rules(),
            webhook_allow: default_outbound_rules(),
            max_queued_per_user: 0,
        }
    }
}

/// A job asked for an image the operator does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the image {image:?} is not allowed on this service; allowed: {}. Choose one of those with \
     --image or `image` under [tool.ci] in pyproject.toml, or ask the operator to add it \
     (ci-controller --allowed-images)",
    allowed.join(", ")
)]
pub struct ImageNotAllowed {
    pub image: String,
    pub allowed: Vec<String>,
}

impl Policy {
    /// A policy whose allowed images are `allowed` plus the default image, without repeats.
    pub fn new(
        default_image: &str,
        allowed: &[String],
        max_unpacked_bytes: u64,
        max_entries: u64,
    ) -> Self {
        let mut allowed_images = vec![default_image.to_owned()];
        for image in allowed {
            let image = image.trim();
            if !image.is_empty() && !allowed_images.iter().any(|i| i == image) {
                allowed_images.push(image.to_owned());
            }
        }
        Self {
            default_image: default_image.to_owned(),
            allowed_images,
            max_unpacked_bytes,
            max_entries,
            max_retries: DEFAULT_MAX_RETRIES,
            git_allow: default_outbound_rules(),
            webhook_allow: default_outbound_rules(),
            max_queued_per_user: 0,
        }
    }

    /// The same policy with another maximum of retries.
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// The same policy with another maximum of queued jobs per user (0: no limit).
    pub fn with_max_queued_per_user(mut self, max: u64) -> Self {
        self.max_queued_per_user = max;
        self
    }

    /// The same policy with other allow rules for git remotes and webhook receivers.
    pub fn with_outbound(mut self, git_allow: Vec<String>, webhook_allow: Vec<String>) -> Self {
        self.git_allow = git_allow;
        self.webhook_allow = webhook_allow;
        self
    }

    /// The rules for git remotes, read.
    ///
    /// # Errors
    ///
    /// A rule that cannot be read (the controller checks them before it publishes them).
    pub fn git_allowlist(&self) -> Result<crate::outbound::Allowlist, crate::outbound::RuleError> {
        crate::outbound::Allowlist::parse(&self.git_allow, "ci-controller --git-allow")
    }

    /// The rules for webhook receivers, read.
    ///
    /// # Errors
    ///
    /// A rule that cannot be read (the controller checks them before it publishes them).
    pub fn webhook_allowlist(
        &self,
    ) -> Result<crate::outbound::Allowlist, crate::outbound::RuleError> {
        crate::outbound::Allowlist::parse(&self.webhook_allow, "ci-controller --webhook-allow")
    }

    /// Checks an image a job asks for.
    ///
    /// # Errors
    ///
    /// [`ImageNotAllowed`], listing the allowed images.
    pub fn check_image(&self, image: &str) -> Result<(), ImageNotAllowed> {
        if self.allowed_images.iter().any(|i| i == image) {
            Ok(())
        } else {
            Err(ImageNotAllowed {
                image: image.to_owned(),
                allowed: self.allowed_images.clone(),
            })
        }
    }

    /// The image a job runs in: the one it asked for (checked) or the default.
    ///
    /// # Errors
    ///
    /// [`ImageNotAllowed`] when the image asked for is not allowed.
    pub fn image_for(&self, requested: Option<&str>) -> Result<String, ImageNotAllowed> {
        match requested {
            Some(image) => self.check_image(image).map(|()| image.to_owned()),
            None => Ok(self.default_image.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_image_is_always_allowed_once() {
        let policy = Policy::new("a", &["b".into(), "a".into(), " ".into(), "c".into()], 1, 2);
        assert_eq!(policy.allowed_images, ["a", "b", "c"]);
        assert_eq!(policy.image_for(None).unwrap(), "a");
        assert_eq!(policy.image_for(Some("c")).unwrap(), "c");
        let err = policy.image_for(Some("evil:latest")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("\"evil:latest\"") && message.contains("a, b, c"),
            "{message}"
        );
        assert!(message.contains("--allowed-images"), "{message}");
        assert_eq!(Policy::default().allowed_images, [DEFAULT_IMAGE]);
    }
}
