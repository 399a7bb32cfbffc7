//! The operator's policy is the controller's: it publishes its limits and allowed images when it
//! starts, the server refuses uploads by them before a job exists, and an archive the server
//! accepts is one the controller runs (the same entry-name rule on both sides).

mod common_server;

use ci_common::testing::{raw_zip, zip_files};
use ci_tests::{test_image, Controller, Server, TestDb};
use common_server::{counts, noise, upload, upload_with, TEST_TIMEOUT};

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_checked_against_the_controllers_policy_and_what_is_accepted_runs() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let ada = db.user("Ada").await;
        let image = test_image();
        let _controller = Controller::start_with(
            &db,
            &[
                "--workspace-size",
                "1m",
                "--max-entries",
                "40",
                "--image",
                &image,
                "--allowed-images",
                "other:tag",
                "--max-retries",
                "2",
            ],
        );
        let server = Server::start(&db);
        let test = b"def test_ok():\n    assert True\n";

        // Larger unpacked than the controller's workspace: refused at upload, not at run time.
        let big = zip_files(&[("tests/test_a.py", test), ("data.bin", &noise(2 << 20))]);
        let (status, body) = upload(&server, "/api/v1/jobs", &ada.key, big).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["code"], "unpacked_too_large", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("1048576"),
            "{body}"
        );

        let many: Vec<(String, &[u8])> = (0..41)
            .map(|i| (format!("tests/test_{i}.py"), &test[..]))
            .collect();
        let many: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let (status, body) = upload(&server, "/api/v1/jobs", &ada.key, zip_files(&many)).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["code"], "too_many_entries", "{body}");

        // Images: the operator's list, whether asked for on the command line or in [tool.ci].
        let (status, body) = upload_with(
            &server,
            "/api/v1/jobs",
            &ada.key,
            zip_files(&[("tests/test_a.py", test)]),
            &[("image", "evil:latest")],
        )
        .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], "image_not_allowed");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("evil:latest")
                && message.contains(&image)
                && message.contains("other:tag"),
            "{message}"
        );
        let configured = zip_files(&[
            ("tests/test_a.py", test),
            ("pyproject.toml", b"[tool.ci]\nimage = \"python:2.7\"\n"),
        ]);
        let (status, body) = upload(&server, "/api/v1/jobs", &ada.key, configured).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("python:2.7"),
            "{body}"
        );
        let broken = zip_files(&[
            ("tests/test_a.py", test),
            ("pyproject.toml", b"[tool.ci]\ntimeout = 3\nimage = 4\n"),
        ]);
        let (status, body) = upload(&server, "/api/v1/jobs", &ada.key, broken).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["code"], "invalid_project_config", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("[tool.ci]"),
            "{body}"
        );
        // Retries: at most the operator's maximum, asked for either way; bad fields say how.
        let (status, body) = upload_with(
            &server,
            "/api/v1/jobs",
            &ada.key,
            zip_files(&[("tests/test_a.py", test)]),
            &[("retries", "3")],
        )
        .await;
        assert_eq!(status, 422, "{body}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("(2)") && message.contains("--max-retries"),
            "{message}"
        );
        let configured = zip_files(&[
            ("tests/test_a.py", test),
            (
                "pyproject.toml",
                b"[tool.ci]
retries = 5
",
            ),
        ]);
        let (status, body) = upload(&server, "/api/v1/jobs", &ada.key, configured).await;
        assert_eq!(status, 422, "{body}");
        for (field, value, names) in [
            ("retries", "many", "retries"),
            ("flaky", "sometimes", "flaky"),
            ("project", "a\u{1}b", "project"),
        ] {
            let (status, body) = upload_with(
                &server,
                "/api/v1/jobs",
                &ada.key,
                zip_files(&[("tests/test_a.py", test)]),
                &[(field, value)],
            )
            .await;
            assert_eq!(status, 422, "{field}: {body}");
            assert!(body["error"].as_str().unwrap().contains(names), "{body}");
        }
        assert_eq!(counts(&db.pool).await, (0, 0), "nothing refused is stored");

        // Entry names as some zip tools write them (`./tests/...`): accepted and run the same.
        let dotted = raw_zip(&[(b"./tests/test_dotted.py", test, 0o100644)], None);
        let (status, body) = upload_with(
            &server,
            "/api/v1/jobs",
            &ada.key,
            dotted,
            &[
                ("arg", "-k"),
                ("arg", "dotted"),
                ("retries", "2"),
                ("folder", "checkout"),
            ],
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let id = body["job_id"].as_str().unwrap().to_owned();
        let events = ci_tests::follow(&server, &ada.key, &id).await;
        let complete = events.last().unwrap();
        let data = &complete.data;
        let lines = ci_tests::log_lines(&events);
        assert_eq!(data["status"], "passed", "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("tests/test_dotted.py::test_ok PASSED")),
            "{lines:?}"
        );
        let (_, job) =
            common_server::get_json(&server, &format!("/api/v1/jobs/{id}"), &ada.key).await;
        assert_eq!(job["image"], image.as_str(), "{job}");
        assert_eq!(
            job["project"], "checkout",
            "the folder names a project without a name"
        );
    })
    .await
    .expect("test timed out");
}
