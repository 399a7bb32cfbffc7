//! Turns an uploaded zip into the tar that goes into a job's workspace volume.

use std::io::{Cursor, Read};
use std::path::{Component, Path};

/// The project as a tar for `/workspace`, and what the controller needs to know about it.
#[derive(Debug)]
pub struct Workspace {
    pub tar: Vec<u8>,
    /// Whether `requirements.txt` is at the project root.
    pub has_requirements: bool,
    pub unpacked_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the uploaded archive is not a readable zip file: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("the uploaded archive has an unsafe entry name {0:?}")]
    UnsafeName(String),
    #[error(
        "the project is {size} bytes unpacked, more than the workspace limit of {limit} bytes"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("cannot read the uploaded archive: {0}")]
    Io(#[from] std::io::Error),
}

/// Converts `zip` into a tar with every file under `src/` and an empty `deps/`, all owned by
/// `uid:gid`; directories are 0755, files 0644 (0755 if executable in the zip).
pub fn zip_to_tar(zip: &[u8], uid: u64, gid: u64, limit: u64) -> Result<Workspace, ArchiveError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip))?;
    let mut builder = tar::Builder::new(Vec::new());
    let mtime = chrono::Utc::now().timestamp().max(0) as u64;
    let dir = |builder: &mut tar::Builder<Vec<u8>>, path: &str| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(mtime);
        header.set_size(0);
        builder.append_data(&mut header, path, std::io::empty())
    };
    dir(&mut builder, "src/")?;
    dir(&mut builder, "deps/")?;
    let mut has_requirements = false;
    let mut unpacked: u64 = 0;
    let mut data = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_owned();
        let safe = Path::new(&name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !safe || name.contains('\0') || name.contains('\\') {
            return Err(ArchiveError::UnsafeName(name));
        }
        let trimmed = name.trim_end_matches('/');
        if trimmed.is_empty() {
            continue;
        }
        let path = format!("src/{trimmed}");
        if entry.is_dir() {
            dir(&mut builder, &format!("{path}/"))?;
            continue;
        }
        if entry.is_symlink() {
            // The server refuses symlinks; never follow one here either.
            return Err(ArchiveError::UnsafeName(name));
        }
        data.clear();
        entry.read_to_end(&mut data)?;
        unpacked += data.len() as u64;
        if unpacked > limit {
            return Err(ArchiveError::TooLarge {
                size: unpacked,
                limit,
            });
        }
        let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(if executable { 0o755 } else { 0o644 });
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(mtime);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, &path, data.as_slice())?;
        if trimmed == "requirements.txt" {
            has_requirements = true;
        }
    }
    Ok(Workspace {
        tar: builder.into_inner()?,
        has_requirements,
        unpacked_bytes: unpacked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body) in files {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(body).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn files_go_under_src_owned_by_the_sandbox_user() {
        let zip = zip_of(&[
            ("test_a.py", b"def test_a(): pass\n"),
            ("pkg/mod.py", b"x = 1\n"),
            ("requirements.txt", b""),
        ]);
        let ws = zip_to_tar(&zip, 1000, 1000, 1 << 20).unwrap();
        assert!(ws.has_requirements);
        let mut tar = tar::Archive::new(ws.tar.as_slice());
        let mut seen = Vec::new();
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(header.uid().unwrap(), 1000);
            assert_eq!(header.gid().unwrap(), 1000);
            let mode = header.mode().unwrap();
            if header.entry_type().is_dir() {
                assert_eq!(mode, 0o755);
            } else {
                assert_eq!(mode, 0o644);
            }
            seen.push(entry.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            seen,
            [
                "src/",
                "deps/",
                "src/test_a.py",
                "src/pkg/mod.py",
                "src/requirements.txt"
            ]
        );
    }

    #[test]
    fn nested_requirements_do_not_count_and_limits_hold() {
        let zip = zip_of(&[("sub/requirements.txt", b"x")]);
        assert!(!zip_to_tar(&zip, 1, 1, 100).unwrap().has_requirements);
        let big = zip_of(&[("a.py", &[b'x'; 200])]);
        assert!(matches!(
            zip_to_tar(&big, 1, 1, 100),
            Err(ArchiveError::TooLarge { .. })
        ));
        assert!(zip_to_tar(b"not a zip", 1, 1, 100).is_err());
    }
}
