//! Defaults shared by every binary.

use std::path::PathBuf;
use std::time::Duration;

/// Environment variable naming the SQLite database (every server-side binary honours it: their
/// `--db-path` flags take it with `#[arg(env = DB_PATH_ENV)]`).
pub const DB_PATH_ENV: &str = "CI_DB_PATH";

/// The default database file: the same for `ci-server`, `ci-controller` and `ci-admin`, whatever
/// the working directory — `$XDG_DATA_HOME/ci/ci.db`, else `~/.local/share/ci/ci.db`.
pub fn default_db_path() -> PathBuf {
    data_dir_from(
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
    .join("ci.db")
}

fn data_dir_from(xdg_data_home: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    match (xdg_data_home, home) {
        (Some(xdg), _) if xdg.is_absolute() => xdg.join("ci"),
        (_, Some(home)) if home.is_absolute() => home.join(".local/share/ci"),
        _ => PathBuf::from("/var/lib/ci"),
    }
}

/// The longest duration [`parse_duration`] accepts (100 years): longer ones cannot be added to
/// or subtracted from a date.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A duration as the command-line flags take it: `500ms`, `90s`, `30m`, `12h`, `7d`, or plain
/// seconds (fractions allowed), at most [`MAX_DURATION`].
///
/// # Errors
///
/// The message for the user: an unknown unit, not a number, negative or too long.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let factor = match unit.to_ascii_lowercase().as_str() {
        "ms" => 0.001,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use ms, s, m, h or d, e.g. 90s)"
            ));
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 30m, 1h, 7d)"))?;
    let secs = value * factor;
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?} is not a duration (e.g. 90s, 30m, 1h, 7d)"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("{s:?} is too long (at most 36500d)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A number of bytes for people: `10 B`, `2.0 KiB`, `3.0 MiB`, `1.5 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / KIB),
        b if b < 1024 * 1024 * 1024 => format!("{:.1} MiB", b as f64 / (KIB * KIB)),
        b => format!("{:.1} GiB", b as f64 / (KIB * KIB * KIB)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_is_absolute_and_ignores_relative_env() {
        assert!(default_db_path().is_absolute());
        assert_eq!(
            data_dir_from(Some("rel".into()), Some("/home/a".into())),
            PathBuf::from("/home/a/.local/share/ci")
        );
        assert_eq!(
            data_dir_from(Some("/x".into()), None),
            PathBuf::from("/x/ci")
        );
        assert_eq!(data_dir_from(None, None), PathBuf::from("/var/lib/ci"));
    }

    #[test]
    fn durations_accept_units_and_plain_seconds_within_bounds() {
        use std::time::Duration;
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("1000000000d")
            .unwrap_err()
            .contains("too long"));
        assert!(parse_duration("36500d").is_ok());
    }

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
