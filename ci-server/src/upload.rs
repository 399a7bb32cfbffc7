//! Validation of an uploaded project archive, before any job exists. The archive's central
//! directory is walked by hand (the `zip` crate folds duplicate names together, which would hide
//! them), every entry is checked, and then every file is decompressed with the `zip` crate to
//! prove that its declared size and checksum are true, so that what the controller unpacks later
//! is exactly what was checked here.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read};

/// What an archive may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: u64,
    pub max_unpacked_bytes: u64,
    pub max_ratio: u64,
}

/// Entries smaller than this are not held to the compression-ratio limit (small text files of
/// repeated content compress very well and are harmless).
pub const RATIO_MIN_SIZE: u64 = 1024 * 1024;

/// What a valid archive holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub unpacked_bytes: u64,
}

/// Why an archive is refused. Each message names the problem and, where there is one, the entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("the uploaded file is empty: send the project as a zip archive")]
    Empty,
    #[error("the upload is not a zip archive ({0}): send the project as a .zip file")]
    NotZip(String),
    #[error(
        "the archive has {count} entries, more than the limit of {limit}: leave out generated \
         files (virtualenvs, caches, build output)"
    )]
    TooManyEntries { count: u64, limit: u64 },
    #[error("the archive is damaged: {0}; create it again")]
    Corrupt(String),
    #[error(
        "entry {name:?} has an unsafe path ({problem}); use relative paths inside the project"
    )]
    UnsafePath { name: String, problem: &'static str },
    #[error("entry {name:?} is a symbolic link; links are not accepted, put the real file in the archive")]
    Symlink { name: String },
    #[error("entry {name:?} is a special file (device, pipe or socket); only files and folders are accepted")]
    SpecialFile { name: String },
    #[error("entry {name:?} appears more than once in the archive")]
    Duplicate { name: String },
    #[error("entry {name:?} is inside {file:?}, which is a file, not a folder")]
    FileIsFolder { name: String, file: String },
    #[error("entries {first:?} and {second:?} share the same bytes in the archive (overlapping entries)")]
    Overlap { first: String, second: String },
    #[error("entry {name:?} is encrypted; upload an archive without a password")]
    Encrypted { name: String },
    #[error(
        "entry {name:?} uses compression method {method}; only stored and deflate are accepted"
    )]
    Method { name: String, method: u16 },
    #[error(
        "the archive unpacks to {total} bytes, more than the limit of {limit} bytes: leave out \
         large data files"
    )]
    TooLargeUnpacked { total: u64, limit: u64 },
    #[error(
        "entry {name:?} expands {ratio} times (limit {limit}); archives that expand this much \
         (zip bombs) are refused: leave the file out (.ciignore), or ask the operator to raise \
         ci-server --max-ratio"
    )]
    Ratio {
        name: String,
        ratio: u64,
        limit: u64,
    },
    #[error("the archive holds no files: zip the project folder with its files")]
    NoFiles,
}

impl UploadError {
    /// Too big (413) or refused for its content (422); an empty body is a bad request (400).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            UploadError::TooManyEntries { .. } | UploadError::TooLargeUnpacked { .. }
        )
    }

    /// A stable machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::Empty => "empty_upload",
            UploadError::NotZip(_) => "not_a_zip",
            UploadError::TooManyEntries { .. } => "too_many_entries",
            UploadError::Corrupt(_) => "corrupt_archive",
            UploadError::UnsafePath { .. } => "unsafe_path",
            UploadError::Symlink { .. } => "symlink",
            UploadError::SpecialFile { .. } => "special_file",
            UploadError::Duplicate { .. } => "duplicate_entry",
            UploadError::FileIsFolder { .. } => "file_is_folder",
            UploadError::Overlap { .. } => "overlapping_entries",
            UploadError::Encrypted { .. } => "encrypted_entry",
            UploadError::Method { .. } => "unsupported_compression",
            UploadError::TooLargeUnpacked { .. } => "unpacked_too_large",
            UploadError::Ratio { .. } => "compression_ratio",
            UploadError::NoFiles => "no_files",
        }
    }
}

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_LOCATOR_SIG: u32 = 0x0706_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
const ZIP64_EXTRA: u16 = 0x0001;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
/// "Version made by" host system of Unix archivers (their external attributes carry the mode).
const SYSTEM_UNIX: u8 = 3;

/// One central-directory entry, as much of it as the checks need.
#[derive(Debug)]
struct Entry {
    name: String,
    flags: u16,
    method: u16,
    compressed: u64,
    size: u64,
    header_offset: u64,
    system: u8,
    external: u32,
}

impl Entry {
    fn unix_mode(&self) -> Option<u32> {
        (self.system == SYSTEM_UNIX).then_some(self.external >> 16)
    }

    fn is_dir(&self) -> bool {
        self.name.ends_with('/') || self.unix_mode().is_some_and(|m| m & S_IFMT == S_IFDIR)
    }
}

/// Checks an archive against the limits; nothing is written anywhere.
pub fn validate(bytes: &[u8], limits: &Limits) -> Result<Summary, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    let directory = find_directory(bytes)?;
    if directory.entries > limits.max_entries {
        return Err(UploadError::TooManyEntries {
            count: directory.entries,
            limit: limits.max_entries,
        });
    }
    let entries = read_entries(bytes, &directory)?;

    let mut names: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    let mut files: HashSet<String> = HashSet::new();
    let mut total: u64 = 0;
    let mut normalized = Vec::with_capacity(entries.len());
    for entry in &entries {
        let name = normalize(&entry.name)?;
        match entry.unix_mode().map(|mode| mode & S_IFMT) {
            None | Some(0) | Some(S_IFREG) | Some(S_IFDIR) => {}
            Some(S_IFLNK) => {
                return Err(UploadError::Symlink {
                    name: entry.name.clone(),
                })
            }
            Some(_) => {
                return Err(UploadError::SpecialFile {
                    name: entry.name.clone(),
                })
            }
        }
        if entry.flags & 1 != 0 {
            return Err(UploadError::Encrypted {
                name: entry.name.clone(),
            });
        }
        if entry.method != 0 && entry.method != 8 {
            return Err(UploadError::Method {
                name: entry.name.clone(),
                method: entry.method,
            });
        }
        if name.is_empty() {
            // "./": the archive's root folder itself.
            normalized.push(name);
            continue;
        }
        if names.insert(name.clone(), normalized.len()).is_some() {
            return Err(UploadError::Duplicate {
                name: entry.name.clone(),
            });
        }
        if !entry.is_dir() {
            files.insert(name.clone());
            total = total.saturating_add(entry.size);
            if total > limits.max_unpacked_bytes {
                return Err(UploadError::TooLargeUnpacked {
                    total,
                    limit: limits.max_unpacked_bytes,
                });
            }
            if entry.size >= RATIO_MIN_SIZE {
                let ratio = entry.size / entry.compressed.max(1);
                if ratio > limits.max_ratio {
                    return Err(UploadError::Ratio {
                        name: entry.name.clone(),
                        ratio,
                        limit: limits.max_ratio,
                    });
                }
            }
        }
        normalized.push(name);
    }
    for (entry, name) in entries.iter().zip(&normalized) {
        let mut prefix = name.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if files.contains(parent) {
                return Err(UploadError::FileIsFolder {
                    name: entry.name.clone(),
                    file: parent.to_owned(),
                });
            }
            prefix = parent;
        }
    }
    if files.is_empty() {
        return Err(UploadError::NoFiles);
    }
    check_overlaps(bytes, &entries, directory.offset)?;
    verify_contents(bytes, &entries)?;
    Ok(Summary {
        files: files.len() as u64,
        unpacked_bytes: total,
    })
}

/// The normalized path of an entry, by the one rule the controller also unpacks with.
fn normalize(name: &str) -> Result<String, UploadError> {
    ci_common::archive::entry_path(name).map_err(|problem| UploadError::UnsafePath {
        name: name.to_owned(),
        problem,
    })
}

struct Directory {
    entries: u64,
    offset: u64,
    size: u64,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Finds the end-of-central-directory record (and its ZIP64 form) and reads where the central
/// directory is and how many entries it declares.
fn find_directory(bytes: &[u8]) -> Result<Directory, UploadError> {
    let not_zip = || UploadError::NotZip("no end of central directory record found".into());
    if bytes.len() < EOCD_LEN {
        return Err(not_zip());
    }
    let earliest = bytes.len().saturating_sub(EOCD_LEN + usize::from(u16::MAX));
    let eocd = (earliest..=bytes.len() - EOCD_LEN)
        .rev()
        .find(|&at| {
            u32_at(bytes, at) == Some(EOCD_SIG)
                && u16_at(bytes, at + 20).map(usize::from) == Some(bytes.len() - at - EOCD_LEN)
        })
        .or_else(|| {
            // Tolerate trailing bytes after the comment.
            (earliest..=bytes.len() - EOCD_LEN)
                .rev()
                .find(|&at| u32_at(bytes, at) == Some(EOCD_SIG))
        })
        .ok_or_else(not_zip)?;
    let corrupt = |what: &str| UploadError::Corrupt(what.to_owned());
    let mut directory = Directory {
        entries: u64::from(u16_at(bytes, eocd + 10).ok_or_else(|| corrupt("short EOCD"))?),
        size: u64::from(u32_at(bytes, eocd + 12).ok_or_else(|| corrupt("short EOCD"))?),
        offset: u64::from(u32_at(bytes, eocd + 16).ok_or_else(|| corrupt("short EOCD"))?),
    };
    if u16_at(bytes, eocd + 4) != Some(0) || u16_at(bytes, eocd + 6) != Some(0) {
        return Err(UploadError::NotZip(
            "multi-part (spanned) archives are not supported".into(),
        ));
    }
    let needs_zip64 = directory.entries == u64::from(u16::MAX)
        || directory.size == u64::from(u32::MAX)
        || directory.offset == u64::from(u32::MAX);
    if eocd >= 20 && u32_at(bytes, eocd - 20) == Some(EOCD64_LOCATOR_SIG) {
        let at = u64_at(bytes, eocd - 12).ok_or_else(|| corrupt("short ZIP64 locator"))?;
        let at = usize::try_from(at).map_err(|_| corrupt("bad ZIP64 record offset"))?;
        if u32_at(bytes, at) != Some(EOCD64_SIG) {
            return Err(corrupt("the ZIP64 end record is missing"));
        }
        let read = |offset| u64_at(bytes, at + offset).ok_or_else(|| corrupt("short ZIP64 record"));
        directory.entries = read(32)?;
        directory.size = read(40)?;
        directory.offset = read(48)?;
    } else if needs_zip64 {
        return Err(corrupt("the ZIP64 end record is missing"));
    }
    let end = directory
        .offset
        .checked_add(directory.size)
        .ok_or_else(|| corrupt("the central directory is out of range"))?;
    if end > eocd as u64 {
        return Err(corrupt(
            "the central directory is out of range (was the archive cut short or prefixed?)",
        ));
    }
    // Every central entry takes at least 46 bytes: a count that cannot fit is a lie.
    if directory.entries > directory.size / CENTRAL_LEN as u64 {
        return Err(corrupt(
            "the entry count does not fit the central directory",
        ));
    }
    Ok(directory)
}

fn read_entries(bytes: &[u8], directory: &Directory) -> Result<Vec<Entry>, UploadError> {
    let corrupt = |what: String| UploadError::Corrupt(what);
    let end = (directory.offset + directory.size) as usize;
    let mut at = directory.offset as usize;
    let mut entries = Vec::with_capacity(directory.entries as usize);
    for index in 0..directory.entries {
        let short = || corrupt(format!("central directory entry {index} is cut short"));
        if at + CENTRAL_LEN > end || u32_at(bytes, at) != Some(CENTRAL_SIG) {
            return Err(corrupt(format!(
                "central directory entry {index} is not where the directory says"
            )));
        }
        let name_len = usize::from(u16_at(bytes, at + 28).ok_or_else(short)?);
        let extra_len = usize::from(u16_at(bytes, at + 30).ok_or_else(short)?);
        let comment_len = usize::from(u16_at(bytes, at + 32).ok_or_else(short)?);
        let next = at + CENTRAL_LEN + name_len + extra_len + comment_len;
        if next > end {
            return Err(short());
        }
        let raw_name = &bytes[at + CENTRAL_LEN..at + CENTRAL_LEN + name_len];
        let name = String::from_utf8(raw_name.to_vec()).map_err(|_| UploadError::UnsafePath {
            name: String::from_utf8_lossy(raw_name).into_owned(),
            problem: "the name is not UTF-8 (create the zip with a current tool)",
        })?;
        let mut entry = Entry {
            name,
            flags: u16_at(bytes, at + 8).ok_or_else(short)?,
            method: u16_at(bytes, at + 10).ok_or_else(short)?,
            compressed: u64::from(u32_at(bytes, at + 20).ok_or_else(short)?),
            size: u64::from(u32_at(bytes, at + 24).ok_or_else(short)?),
            header_offset: u64::from(u32_at(bytes, at + 42).ok_or_else(short)?),
            system: bytes[at + 5],
            external: u32_at(bytes, at + 38).ok_or_else(short)?,
        };
        let extra = &bytes[at + CENTRAL_LEN + name_len..at + CENTRAL_LEN + name_len + extra_len];
        apply_zip64(&mut entry, extra)?;
        entries.push(entry);
        at = next;
    }
    Ok(entries)
}

/// Replaces 0xFFFFFFFF sizes and offsets with their values from the ZIP64 extra field.
fn apply_zip64(entry: &mut Entry, mut extra: &[u8]) -> Result<(), UploadError> {
    const MAX32: u64 = u32::MAX as u64;
    if entry.size != MAX32 && entry.compressed != MAX32 && entry.header_offset != MAX32 {
        return Ok(());
    }
    while extra.len() >= 4 {
        let id = u16_at(extra, 0).unwrap_or_default();
        let len = usize::from(u16_at(extra, 2).unwrap_or_default());
        let Some(field) = extra.get(4..4 + len) else {
            break;
        };
        if id == ZIP64_EXTRA {
            let mut at = 0;
            for value in [
                &mut entry.size,
                &mut entry.compressed,
                &mut entry.header_offset,
            ] {
                if *value == MAX32 {
                    *value = u64_at(field, at).ok_or_else(|| {
                        UploadError::Corrupt(format!(
                            "entry {:?} has a short ZIP64 field",
                            entry.name
                        ))
                    })?;
                    at += 8;
                }
            }
            return Ok(());
        }
        extra = &extra[4 + len..];
    }
    Err(UploadError::Corrupt(format!(
        "entry {:?} lacks its ZIP64 sizes",
        entry.name
    )))
}

/// Each entry's bytes (local header + data) must be its own: no two entries may share bytes,
/// and none may reach into the central directory.
fn check_overlaps(
    bytes: &[u8],
    entries: &[Entry],
    directory_start: u64,
) -> Result<(), UploadError> {
    let mut ranges = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let corrupt = |what: &str| UploadError::Corrupt(format!("entry {:?}: {what}", entry.name));
        let at = usize::try_from(entry.header_offset).map_err(|_| corrupt("bad offset"))?;
        if u32_at(bytes, at) != Some(LOCAL_SIG) {
            return Err(corrupt("its local header is missing"));
        }
        let name_len = u64::from(u16_at(bytes, at + 26).ok_or_else(|| corrupt("short header"))?);
        let extra_len = u64::from(u16_at(bytes, at + 28).ok_or_else(|| corrupt("short header"))?);
        let end = entry
            .header_offset
            .checked_add(LOCAL_LEN as u64 + name_len + extra_len)
            .and_then(|data| data.checked_add(entry.compressed))
            .ok_or_else(|| corrupt("its data is out of range"))?;
        if end > directory_start {
            return Err(corrupt("its data runs into the central directory"));
        }
        ranges.push((entry.header_offset, end, index));
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let ((_, first_end, first), (second_start, _, second)) = (pair[0], pair[1]);
        if second_start < first_end {
            return Err(UploadError::Overlap {
                first: entries[first].name.clone(),
                second: entries[second].name.clone(),
            });
        }
    }
    Ok(())
}

/// Decompresses every file to prove that its declared size and CRC are true (never reading more
/// than the declared size plus one byte, so a lying entry cannot make this expensive).
fn verify_contents(bytes: &[u8], entries: &[Entry]) -> Result<(), UploadError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| UploadError::NotZip(e.to_string()))?;
    if archive.len() != entries.len() {
        return Err(UploadError::Corrupt(format!(
            "the archive declares {} entries but {} can be read",
            entries.len(),
            archive.len()
        )));
    }
    let mut buffer = vec![0u8; 64 * 1024];
    for index in 0..archive.len() {
        let file = archive
            .by_index(index)
            .map_err(|e| UploadError::Corrupt(format!("entry {index}: {e}")))?;
        let name = file.name().to_owned();
        let declared = file.size();
        let corrupt = |what: String| UploadError::Corrupt(format!("entry {name:?}: {what}"));
        let mut limited = file.take(declared.saturating_add(1));
        let mut read: u64 = 0;
        loop {
            match limited.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => read += n as u64,
                Err(e) => return Err(corrupt(e.to_string())),
            }
        }
        if read != declared {
            return Err(corrupt(format!(
                "it unpacks to {} bytes but declares {declared}",
                if read > declared {
                    "more".to_owned()
                } else {
                    read.to_string()
                }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ci_common::testing::{raw_zip, zip_files};

    use super::*;

    const LIMITS: Limits = Limits {
        max_entries: 100,
        max_unpacked_bytes: 64 * 1024 * 1024,
        max_ratio: 200,
    };

    fn check(bytes: &[u8]) -> Result<Summary, UploadError> {
        validate(bytes, &LIMITS)
    }

    #[test]
    fn a_normal_project_passes() {
        let zip = zip_files(&[
            ("tests/", b""),
            ("tests/test_a.py", b"def test_a():\n    assert True\n"),
            ("requirements.txt", b"pytest\n"),
        ]);
        assert_eq!(
            check(&zip).unwrap(),
            Summary {
                files: 2,
                unpacked_bytes: 37
            }
        );
        let handmade = raw_zip(
            &[
                (b"./src/a.py", b"x = 1\n", 0o100644),
                (b"src/", b"", 0o040755),
            ],
            None,
        );
        assert_eq!(check(&handmade).unwrap().files, 1);
    }

    #[test]
    fn empty_and_not_a_zip() {
        assert_eq!(check(b""), Err(UploadError::Empty));
        assert!(matches!(
            check(b"hello, not a zip at all"),
            Err(UploadError::NotZip(_))
        ));
        let mut truncated = zip_files(&[("a.py", b"x")]);
        truncated.truncate(truncated.len() - 30);
        assert!(check(&truncated).is_err());
    }

    #[test]
    fn unsafe_names_are_named() {
        for (name, problem) in [
            (&b"../evil.py"[..], "`..`"),
            (b"a/../../evil.py", "`..`"),
            (b"/etc/passwd", "absolute"),
            (b"C:/x.py", "drive letter"),
            (b"a\\b.py", "backslash"),
            (b"a\0b.py", "NUL"),
            (b"\xff\xfe.py", "UTF-8"),
        ] {
            let err = check(&raw_zip(&[(name, b"x", 0o100644)], None)).unwrap_err();
            assert!(
                matches!(err, UploadError::UnsafePath { .. }),
                "{name:?}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(problem), "{message}");
            assert_eq!(err.code(), "unsafe_path");
        }
    }

    #[test]
    fn links_and_special_files() {
        let err = check(&raw_zip(&[(b"link.py", b"/etc/passwd", 0o120777)], None)).unwrap_err();
        assert_eq!(
            err,
            UploadError::Symlink {
                name: "link.py".into()
            }
        );
        assert!(err.to_string().contains("link.py"));
        let err = check(&raw_zip(&[(b"fifo", b"", 0o010644)], None)).unwrap_err();
        assert_eq!(
            err,
            UploadError::SpecialFile {
                name: "fifo".into()
            }
        );
        let err = check(&raw_zip(&[(b"dev", b"", 0o020644)], None)).unwrap_err();
        assert_eq!(err, UploadError::SpecialFile { name: "dev".into() });
    }

    #[test]
    fn duplicates_and_files_used_as_folders() {
        let err = check(&raw_zip(
            &[(b"a.py", b"1", 0o100644), (b"./a.py", b"2", 0o100644)],
            None,
        ))
        .unwrap_err();
        assert_eq!(
            err,
            UploadError::Duplicate {
                name: "./a.py".into()
            }
        );
        let err = check(&raw_zip(
            &[(b"a", b"1", 0o100644), (b"a/b.py", b"2", 0o100644)],
            None,
        ))
        .unwrap_err();
        assert_eq!(
            err,
            UploadError::FileIsFolder {
                name: "a/b.py".into(),
                file: "a".into()
            }
        );
        let err = check(&raw_zip(
            &[(b"a/", b"", 0o040755), (b"a", b"1", 0o100644)],
            None,
        ))
        .unwrap_err();
        assert!(matches!(err, UploadError::Duplicate { .. }), "{err:?}");
    }

    #[test]
    fn overlapping_entries() {
        // Two central entries pointing at the same local header.
        let zip = raw_zip(
            &[(b"a.py", b"hello", 0o100644), (b"b.py", b"hello", 0o100644)],
            Some(&[0, 0]),
        );
        let err = check(&zip).unwrap_err();
        assert_eq!(
            err,
            UploadError::Overlap {
                first: "a.py".into(),
                second: "b.py".into()
            }
        );
    }

    #[test]
    fn too_many_entries_too_large_and_bombs() {
        let names: Vec<String> = (0..101).map(|i| format!("f{i}.py")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let err = check(&zip_files(&files)).unwrap_err();
        assert_eq!(
            err,
            UploadError::TooManyEntries {
                count: 101,
                limit: 100
            }
        );
        assert!(err.is_too_large());
        assert!(err.to_string().contains("100"));

        let zeros = vec![0u8; 8 * 1024 * 1024];
        let bomb = zip_files(&[("zeros.bin", &zeros)]);
        let err = check(&bomb).unwrap_err();
        assert!(
            matches!(&err, UploadError::Ratio { name, limit: 200, .. } if name == "zeros.bin"),
            "{err:?}"
        );

        let small = Limits {
            max_unpacked_bytes: 1000,
            ..LIMITS
        };
        let err = validate(
            &zip_files(&[("a.txt", &[b'a'; 600]), ("b.txt", &[b'b'; 600])]),
            &small,
        )
        .unwrap_err();
        assert_eq!(
            err,
            UploadError::TooLargeUnpacked {
                total: 1200,
                limit: 1000
            }
        );
        assert!(err.is_too_large());
    }

    #[test]
    fn lying_sizes_and_empty_archives() {
        // Declares 1 byte but holds 5.
        let mut zip = raw_zip(&[(b"a.py", b"hello", 0o100644)], None);
        let cd = u32_at(&zip, zip.len() - 6).unwrap() as usize;
        zip[cd + 24..cd + 28].copy_from_slice(&1u32.to_le_bytes());
        assert!(
            matches!(check(&zip), Err(UploadError::Corrupt(_))),
            "{:?}",
            check(&zip)
        );

        assert_eq!(
            check(&zip_files(&[("tests/", b"")])),
            Err(UploadError::NoFiles)
        );
        assert_eq!(check(&raw_zip(&[], None)), Err(UploadError::NoFiles));
    }

    #[test]
    fn encrypted_and_unknown_methods() {
        let mut zip = raw_zip(&[(b"a.py", b"hello", 0o100644)], None);
        let cd = u32_at(&zip, zip.len() - 6).unwrap() as usize;
        zip[cd + 8] = 1;
        assert_eq!(
            check(&zip),
            Err(UploadError::Encrypted {
                name: "a.py".into()
            })
        );
        zip[cd + 8] = 0;
        zip[cd + 10] = 14; // LZMA
        assert_eq!(
            check(&zip),
            Err(UploadError::Method {
                name: "a.py".into(),
                method: 14
            })
        );
    }
}
