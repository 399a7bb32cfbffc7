//! Hostile uploads: each is refused with its own 4xx and a message naming the problem, and
//! nothing is left behind — no job, no stored upload, no temporary file.

mod common_server;

use std::io::Write;

use ci_common::testing::{raw_zip, zip_files};
use ci_tests::{Server, TestDb};
use common_server::{counts, noise, project_zip, start_server, upload, TEST_TIMEOUT};

fn many_entries(count: usize) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..count {
        writer.start_file(format!("f/{i}.py"), options).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn zeros_bomb() -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    writer.start_file("tests/data.bin", options).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..50 {
        writer.write_all(&chunk).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

fn two_entries_one_header() -> Vec<u8> {
    raw_zip(
        &[
            (b"tests/test_a.py", b"def test_a(): pass\n", 0o100644),
            (b"tests/test_b.py", b"def test_a(): pass\n", 0o100644),
        ],
        Some(&[0, 0]),
    )
}

#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing_behind() {
    tokio::time::timeout(common_server::TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let tmp = tempfile::tempdir().unwrap();
        let server = start_server(&db, &[], &[("TMPDIR", tmp.path())]);
        let ada = db.user("Ada").await;

        let ok = b"def test_ok(): pass\n";
        let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
            (
                "zip slip",
                raw_zip(&[(b"../evil.py", ok, 0o100644)], None),
                422,
                "unsafe_path",
                "../evil.py",
            ),
            (
                "absolute path",
                raw_zip(&[(b"/etc/x", ok, 0o100644)], None),
                422,
                "unsafe_path",
                "/etc/x",
            ),
            (
                "symlink",
                raw_zip(&[(b"tests/link.py", b"/etc/passwd", 0o120777)], None),
                422,
                "symlink",
                "tests/link.py",
            ),
            (
                "device",
                raw_zip(&[(b"tests/dev", b"", 0o020644)], None),
                422,
                "special_file",
                "tests/dev",
            ),
            (
                "100k entries",
                many_entries(100_000),
                413,
                "too_many_entries",
                "20000",
            ),
            (
                "zip bomb",
                zeros_bomb(),
                422,
                "compression_ratio",
                "tests/data.bin",
            ),
            (
                "overlapping entries",
                two_entries_one_header(),
                422,
                "overlapping_entries",
                "tests/test_b.py",
            ),
            (
                "duplicate names",
                raw_zip(
                    &[
                        (b"tests/test_a.py", ok, 0o100644),
                        (b"tests/test_a.py", ok, 0o100644),
                    ],
                    None,
                ),
                422,
                "duplicate_entry",
                "tests/test_a.py",
            ),
            (
                "not a zip",
                b"just some text, not an archive".to_vec(),
                422,
                "not_a_zip",
                "zip",
            ),
            ("empty body", Vec::new(), 400, "empty_upload", "empty"),
            ("only folders", zip_files(&[]), 422, "no_files", "no files"),
        ];
        for (what, bytes, status, code, needle) in cases {
            let (got, body) = upload(&server, "/api/v1/jobs", &ada.key, bytes).await;
            assert_eq!(got.as_u16(), status, "{what}: {body}");
            assert_eq!(body["code"], code, "{what}: {body}");
            let message = body["error"].as_str().unwrap();
            assert!(
                message.contains(needle),
                "{what}: {message:?} should name {needle:?}"
            );
            assert_eq!(
                counts(&db.pool).await,
                (0, 0),
                "{what} left a job or an upload behind"
            );
        }
        // The original API's upload refuses the same way.
        let (got, body) =
            upload(&server, "/submit-async", &ada.key, two_entries_one_header()).await;
        assert_eq!(got, 422, "{body}");
        assert_eq!(counts(&db.pool).await, (0, 0));
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left behind: {leftovers:?}"
        );

        // A sound project still goes through.
        let (got, body) = upload(&server, "/api/v1/jobs", &ada.key, project_zip()).await;
        assert_eq!(got, 201, "{body}");
        assert_eq!(counts(&db.pool).await, (1, 1));
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn uploads_over_the_size_cap_get_413_with_the_limit() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start_with(&db, &["--max-upload-bytes", "65536"]);
        let ada = db.user("Ada").await;
        let big = zip_files(&[("tests/data.bin", &noise(90_000))]);
        assert!(big.len() > 65536);
        let (status, body) = upload(&server, "/api/v1/jobs", &ada.key, big).await;
        assert_eq!(status, 413, "{body}");
        assert!(body["error"].as_str().unwrap().contains("65536"), "{body}");
        assert_eq!(counts(&db.pool).await, (0, 0));

        let (status, body) = upload(&server, "/api/v1/jobs", &ada.key, project_zip()).await;
        assert_eq!(status, 201, "{body}");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn the_task_is_test_and_other_names_are_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        for (task, status) in [("test", 201), ("lint", 422), ("rm -rf /", 422)] {
            let form = reqwest::multipart::Form::new().text("task", task).part(
                "file",
                reqwest::multipart::Part::bytes(project_zip()).file_name("p.zip"),
            );
            let response = ci_tests::client()
                .post(server.at("/api/v1/jobs"))
                .bearer_auth(&ada.key)
                .multipart(form)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), status, "task {task:?}");
            let body: serde_json::Value = response.json().await.unwrap();
            if status == 201 {
                assert_eq!(body["task"], task);
            } else {
                assert!(body["error"].as_str().unwrap().contains("task"), "{body}");
            }
        }
    })
    .await
    .expect("test timed out");
}
