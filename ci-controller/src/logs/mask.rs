//! Masking of a job's secret variables in its log: every occurrence of a value in a line is
//! replaced by [`MASK`] before the line is stored, so neither the stored log nor any stream
//! (which read the store) shows it. Values are single lines of at least
//! [`ci_common::secrets::VALUE_MIN_LEN`] bytes ([`ci_common::secrets::check_variable_value`]),
//! so a value lies within one line.

/// What a masked value is replaced by.
pub const MASK: &str = "[masked]";

/// The values to mask in one job's log; empty (the usual case) costs nothing per line.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Longest first, so that a value containing another is masked whole.
    values: Vec<String>,
}

impl Masker {
    /// A masker of `values` (empty values are ignored).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self { values }
    }

    /// `text` with every value replaced by [`MASK`].
    pub fn mask(&self, text: String) -> String {
        if self.values.is_empty() || !self.values.iter().any(|v| text.contains(v.as_str())) {
            return text;
        }
        let mut text = text;
        for value in &self.values {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), MASK);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_of_every_value_is_masked() {
        let masker = Masker::new(["s3cret-token".to_owned(), "s3cret-token-long".to_owned()]);
        assert_eq!(
            masker.mask("a s3cret-token-long and s3cret-token, s3cret-token".into()),
            "a [masked] and [masked], [masked]"
        );
        assert_eq!(masker.mask("nothing here".into()), "nothing here");
        assert_eq!(
            Masker::default().mask("s3cret-token".into()),
            "s3cret-token"
        );
    }
}
