//! What `ci-server` answers for the web UI's paths, without a browser: `/` and signed-out pages
//! redirect, a job that is not the caller's is a 404 page, the prototype's JSON routes are
//! untouched, and assets are compressed and revalidated by ETag. (`ui_browser.rs` drives the
//! pages themselves in Chromium.)

use ci_tests::{fixture, submit, zip_dir, Server, TestDb};

/// What the server answers for the UI's paths, without a browser.
#[tokio::test(flavor = "multi_thread")]
async fn ui_paths_redirect_hide_other_users_jobs_and_are_cached_and_compressed() {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let bob = db.user("bob").await;
    let server = Server::start(&db);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str, key: Option<&str>| {
        let mut request = http.get(server.at(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request
    };

    let root = get("/", None).send().await.unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/ui/");

    let list = get("/ui/?status=failed", None).send().await.unwrap();
    assert_eq!(list.status(), 303);
    assert_eq!(
        list.headers()["location"],
        "/ui/signin?next=/ui/%3Fstatus%3Dfailed"
    );
    let signin = get("/ui/signin", None).send().await.unwrap();
    assert_eq!(signin.status(), 200);
    assert!(signin.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    assert!(signin.text().await.unwrap().contains("signin.js"));

    let bobs = submit(&server, &bob.key, zip_dir(&fixture("passing"))).await;
    let bobs = bobs["job_id"].as_str().unwrap();
    let page = get(&format!("/ui/jobs/{bobs}"), Some(&bob.key))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("job.js"));
    for (path, key) in [
        (format!("/ui/jobs/{bobs}"), &ada.key),
        (format!("/ui/jobs/{}", uuid::Uuid::new_v4()), &ada.key),
        ("/ui/jobs/not-a-job".to_owned(), &ada.key),
        ("/ui/nothing/here".to_owned(), &ada.key),
    ] {
        let page = get(&path, Some(key)).send().await.unwrap();
        assert_eq!(page.status(), 404, "{path}");
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(page.text().await.unwrap().contains("Not found"), "{path}");
    }

    // The prototype's JSON routes are untouched.
    let prototype = get("/jobs", Some(&bob.key)).send().await.unwrap();
    assert_eq!(prototype.status(), 200);
    assert!(prototype.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));

    // Assets: compressed on request, revalidated by ETag.
    let script = get("/ui/assets/logview.js", None)
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["content-encoding"], "br");
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let etag = script.headers()["etag"].clone();
    let gzip = get("/ui/assets/logview.js", None)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzip.headers()["content-encoding"], "gzip");
    let again = get("/ui/assets/logview.js", None)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let missing = get("/ui/assets/nothing.js", None).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
