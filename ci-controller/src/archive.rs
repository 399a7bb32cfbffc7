//! Turns an uploaded zip into the tar that goes into a job's workspace volume.
//!
//! Entry names follow the one rule in [`ci_common::archive::entry_path`] (the server validated
//! the upload with it), file modes keep their executable bit, and every folder — the project's
//! empty ones and the parents of every file — is an entry of its own owned by the job's user, so
//! Docker never creates a folder owned by root that the job cannot write into.

use std::collections::BTreeSet;
use std::io::{Cursor, Read};

use ci_common::archive::{entry_path, workspace_file_mode, WORKSPACE_DIR_MODE};
use ci_common::project::{is_root_file, RootFiles};

/// Folders of the workspace volume: the project, the packages the install step adds, and the
/// job user's home.
pub const SRC_DIR: &str = "src";
pub const DEPS_DIR: &str = "deps";
pub const HOME_DIR: &str = "home";
/// ci's own files (test reports), outside the project.
pub const CI_DIR: &str = ".ci";
/// The folder of the user's pip cache (a volume mounted over it by an install step).
pub const PIP_CACHE_DIR: &str = "pip-cache";

/// Which of the workspace's mount points the tar holds, so that extracting it gives them to the
/// job's user: `deps/` unless the first container mounts a read-only dependency cache there,
/// `pip-cache/` when it mounts the user's pip cache there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountDirs {
    pub deps: bool,
    pub pip_cache: bool,
}

impl Default for MountDirs {
    fn default() -> Self {
        Self {
            deps: true,
            pip_cache: false,
        }
    }
}

/// The project as a tar for `/workspace`, and what the controller needs to know about it.
#[derive(Debug)]
pub struct Workspace {
    pub tar: Vec<u8>,
    /// The project's root configuration files (see [`ci_common::project`]).
    pub root: RootFiles,
    pub unpacked_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the uploaded archive is not a readable zip file: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("the uploaded archive has an unsafe entry name {name:?} ({problem})")]
    UnsafeName { name: String, problem: &'static str },
    #[error("the uploaded archive has a symbolic link {0:?}; links are not accepted")]
    Symlink(String),
    #[error(
        "the project is {size} bytes unpacked, more than the workspace limit of {limit} bytes"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("cannot read the uploaded archive: {0}")]
    Io(#[from] std::io::Error),
}

/// Converts `zip` into a tar with the project under `src/`, empty `home/` and `.ci/`, and the
/// mount points `dirs` asks for, all owned by `uid:gid`: folders 0755, files 0755 when
/// executable in the zip and 0644 otherwise. `limit` is the largest unpacked size in bytes.
pub fn zip_to_tar(
    zip: &[u8],
    uid: u64,
    gid: u64,
    limit: u64,
    dirs: MountDirs,
) -> Result<Workspace, ArchiveError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip))?;
    let mut builder = tar::Builder::new(Vec::new());
    let mtime = chrono::Utc::now().timestamp().max(0) as u64;
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(mtime);
        header.set_size(size);
        header
    };
    // Every folder once, parents before children.
    let mut folders: BTreeSet<String> = BTreeSet::new();
    let mut folder = |builder: &mut tar::Builder<Vec<u8>>, path: &str| -> std::io::Result<()> {
        let mut at = 0;
        while at <= path.len() {
            let end = path[at..].find('/').map_or(path.len(), |i| at + i);
            let prefix = &path[..end];
            if folders.insert(prefix.to_owned()) {
                let mut h = header(tar::EntryType::Directory, WORKSPACE_DIR_MODE, 0);
                builder.append_data(&mut h, format!("{prefix}/"), std::io::empty())?;
            }
            at = end + 1;
        }
        Ok(())
    };
    folder(&mut builder, SRC_DIR)?;
    if dirs.deps {
        folder(&mut builder, DEPS_DIR)?;
    }
    if dirs.pip_cache {
        folder(&mut builder, PIP_CACHE_DIR)?;
    }
    folder(&mut builder, HOME_DIR)?;
    folder(&mut builder, CI_DIR)?;
    let mut root = RootFiles::default();
    let mut unpacked: u64 = 0;
    let mut data = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name().to_owned();
        let relative = entry_path(&name).map_err(|problem| ArchiveError::UnsafeName {
            name: name.clone(),
            problem,
        })?;
        if relative.is_empty() {
            continue;
        }
        let path = format!("{SRC_DIR}/{relative}");
        if entry.is_dir() {
            folder(&mut builder, &path)?;
            continue;
        }
        if entry.is_symlink() {
            // The server refuses symlinks; never follow one here either.
            return Err(ArchiveError::Symlink(name));
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            folder(&mut builder, parent)?;
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
        let mode = workspace_file_mode(entry.unix_mode());
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        builder.append_data(&mut h, &path, data.as_slice())?;
        if is_root_file(&relative, data.len() as u64) {
            root.insert(&relative, String::from_utf8_lossy(&data).into_owned());
        }
    }
    Ok(Workspace {
        tar: builder.into_inner()?,
        root,
        unpacked_bytes: unpacked,
    })
}

/// A zip of `files` (`(path, bytes)`, paths relative to the project folder), stored with mode
/// 0755 for the paths in `executable` and 0644 for the others, as an upload of the same tree
/// would be: the source of a job from git, made from what its fetch step checked out.
pub fn files_to_zip(
    files: &[(String, Vec<u8>)],
    executable: &[String],
) -> Result<Vec<u8>, ArchiveError> {
    use std::io::Write;
    let executable: BTreeSet<&str> = executable.iter().map(String::as_str).collect();
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (path, data) in files {
        let mode = if executable.contains(path.as_str()) {
            0o755
        } else {
            0o644
        };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .large_file(data.len() as u64 >= u64::from(u32::MAX))
            .unix_permissions(mode);
        writer.start_file(path.as_str(), options)?;
        writer.write_all(data)?;
    }
    Ok(writer.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body, mode) in files {
            let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            if name.ends_with('/') {
                writer.add_directory(*name, options).unwrap();
            } else {
                writer.start_file(*name, options).unwrap();
                writer.write_all(body).unwrap();
            }
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn files_zip_with_their_modes_and_unpack_as_an_upload_would() {
        let files = vec![
            ("run.sh".to_owned(), b"#!/bin/sh\n".to_vec()),
            (
                "pkg/m\u{fc}.py".to_owned(),
                "x = '\u{e9}'\n".as_bytes().to_vec(),
            ),
        ];
        let zip = files_to_zip(&files, &["run.sh".to_owned()]).unwrap();
        let ws = zip_to_tar(&zip, 1000, 1000, 1 << 20, MountDirs::default()).unwrap();
        let got = entries(&ws.tar);
        assert!(
            got.contains(&("src/run.sh".into(), false, 0o755)),
            "{got:?}"
        );
        assert!(
            got.contains(&("src/pkg/m\u{fc}.py".into(), false, 0o644)),
            "{got:?}"
        );
        let empty = files_to_zip(&[], &[]).unwrap();
        let ws = zip_to_tar(&empty, 1000, 1000, 1, MountDirs::default()).unwrap();
        assert!(entries(&ws.tar).contains(&("src/".into(), true, 0o755)));
    }

    /// (path, is_dir, mode) of every tar entry, in order.
    fn entries(tar: &[u8]) -> Vec<(String, bool, u32)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                assert_eq!(header.uid().unwrap(), 1000);
                assert_eq!(header.gid().unwrap(), 1000);
                (
                    entry.path().unwrap().to_string_lossy().into_owned(),
                    header.entry_type().is_dir(),
                    header.mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn every_folder_is_an_entry_owned_by_the_job_user_before_its_files() {
        let zip = zip_of(&[
            ("./tests/unit/test_a.py", b"def test_a(): pass\n", 0o644),
            ("tools/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
            ("reports/", b"", 0o755),
            ("var/empty/", b"", 0o755),
            ("tests/fixtures/inbox/.gitkeep", b"", 0o644),
            ("requirements.txt", b"-e .\n", 0o644),
            ("sub/requirements.txt", b"x", 0o644),
        ]);
        let without = zip_to_tar(
            &zip,
            1000,
            1000,
            1 << 20,
            MountDirs {
                deps: false,
                pip_cache: true,
            },
        )
        .unwrap();
        let names: Vec<String> = entries(&without.tar)
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        assert!(
            !names.contains(&"deps/".to_owned()),
            "a read-only cache is mounted at deps/"
        );
        assert!(names.contains(&"pip-cache/".to_owned()), "{names:?}");
        let ws = zip_to_tar(&zip, 1000, 1000, 1 << 20, MountDirs::default()).unwrap();
        assert!(ws.root.has("requirements.txt"));
        assert!(!ws.root.has("sub/requirements.txt"));
        let seen = entries(&ws.tar);
        let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "src/",
                "deps/",
                "home/",
                ".ci/",
                "src/tests/",
                "src/tests/unit/",
                "src/tests/unit/test_a.py",
                "src/tools/",
                "src/tools/bin/",
                "src/tools/bin/run.sh",
                "src/reports/",
                "src/var/",
                "src/var/empty/",
                "src/tests/fixtures/",
                "src/tests/fixtures/inbox/",
                "src/tests/fixtures/inbox/.gitkeep",
                "src/requirements.txt",
                "src/sub/",
                "src/sub/requirements.txt",
            ]
        );
        for (name, is_dir, mode) in &seen {
            let expected = if *is_dir || name.ends_with("run.sh") {
                0o755
            } else {
                0o644
            };
            assert_eq!(*mode, expected, "{name}");
        }
    }

    #[test]
    fn limits_and_unsafe_names_hold() {
        let big = zip_of(&[("a.py", &[b'x'; 200], 0o644)]);
        assert!(matches!(
            zip_to_tar(&big, 1, 1, 100, MountDirs::default()),
            Err(ArchiveError::TooLarge { .. })
        ));
        assert!(zip_to_tar(b"not a zip", 1, 1, 100, MountDirs::default()).is_err());
        let evil = zip_of(&[("../evil.py", b"x", 0o644)]);
        let err = zip_to_tar(&evil, 1, 1, 100, MountDirs::default()).unwrap_err();
        assert!(err.to_string().contains("`..`"), "{err}");
    }
}
