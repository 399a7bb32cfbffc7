//! How much of a log is kept: its head as it comes and its tail at the end.

/// How much of a log is kept: the first half of the cap as it comes, the last half at the end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogCap {
    /// 0 = unlimited.
    pub lines: u64,
    /// 0 = unlimited.
    pub bytes: u64,
}

impl LogCap {
    pub(super) fn head(&self) -> (u64, u64) {
        let half = |cap: u64| if cap == 0 { u64::MAX } else { cap / 2 };
        (half(self.lines), half(self.bytes))
    }

    pub(super) fn tail(&self) -> (u64, u64) {
        let rest = |cap: u64| {
            if cap == 0 {
                u64::MAX
            } else {
                cap - cap / 2
            }
        };
        (rest(self.lines), rest(self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_halves() {
        let cap = LogCap {
            lines: 11,
            bytes: 0,
        };
        assert_eq!(cap.head(), (5, u64::MAX));
        assert_eq!(cap.tail(), (6, u64::MAX));
    }
}
