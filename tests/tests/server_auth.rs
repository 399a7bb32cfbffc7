//! Authentication of `ci-server` and its error bodies: every way a key can be wrong gets a 401
//! that says what to fix, and every error — unknown route, wrong method, malformed body — is the
//! one JSON shape.

mod common_server;

use std::collections::HashSet;

use chrono::{Duration, Utc};
use ci_common::db::{api_keys, users};
use ci_common::keys::SecretKey;
use ci_tests::{client, wait_for, Server, TestDb, WAIT};
use common_server::TEST_TIMEOUT;

async fn status_and_body(
    request: reqwest::RequestBuilder,
) -> (u16, Option<String>, serde_json::Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let auth = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.expect("JSON body");
    (status, auth, body)
}

#[tokio::test]
async fn every_bad_key_gets_its_own_401_and_a_good_key_works() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let url = server.at("/api/v1/jobs");
        let good = db.user("Ada").await;

        let revoked_user = db.user("Rev").await;
        let revoked_key = api_keys::list(&db.pool, Some(revoked_user.id))
            .await
            .unwrap()[0]
            .id;
        api_keys::revoke(&db.pool, revoked_key, Utc::now())
            .await
            .unwrap();

        let inactive = db.user("Ina").await;
        users::set_active(&db.pool, inactive.id, false)
            .await
            .unwrap();

        let expired_user = users::create(&db.pool, "Exp", "exp@example.com")
            .await
            .unwrap();
        let expired = SecretKey::generate();
        api_keys::create(
            &db.pool,
            expired_user.id,
            "old",
            &expired,
            Some(Utc::now() - Duration::hours(1)),
        )
        .await
        .unwrap();

        let typo = {
            let key = good.key.clone();
            let i = 8;
            let c = key.as_bytes()[i];
            let replacement = if c == b'a' { 'b' } else { 'a' };
            format!("{}{}{}", &key[..i], replacement, &key[i + 1..])
        };
        let unknown = SecretKey::generate().expose().to_owned();

        let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
            (
                "no header",
                None,
                "missing_api_key",
                "Authorization: Bearer",
            ),
            (
                "basic auth",
                Some("Basic YTpi".into()),
                "malformed_authorization",
                "Bearer <API key>",
            ),
            (
                "bad prefix",
                Some("Bearer sk_live_0123456789012345678901234".into()),
                "mistyped_api_key",
                "ci_",
            ),
            (
                "bad checksum (a key of the earlier, shorter shape)",
                Some(format!("Bearer ci_{}", "A".repeat(28))),
                "mistyped_api_key",
                "checksum",
            ),
            (
                // 40 characters that fail the checksum may be a prototype key: looked up, and
                // the answer still says what is most likely wrong.
                "typo in a current key",
                Some(format!("Bearer {typo}")),
                "unknown_api_key",
                "checksum",
            ),
            (
                "unknown key",
                Some(format!("Bearer {unknown}")),
                "unknown_api_key",
                "not known",
            ),
            (
                "revoked key",
                Some(format!("Bearer {}", revoked_user.key)),
                "revoked_api_key",
                "revoked",
            ),
            (
                "expired key",
                Some(format!("Bearer {}", expired.expose())),
                "expired_api_key",
                "expired",
            ),
            (
                "inactive user",
                Some(format!("Bearer {}", inactive.key)),
                "inactive_user",
                "deactivated",
            ),
        ];
        let mut messages = HashSet::new();
        for (what, header, code, hint) in cases {
            let mut request = client().get(&url);
            if let Some(header) = header {
                request = request.header("authorization", header);
            }
            let (status, auth, body) = status_and_body(request).await;
            assert_eq!(status, 401, "{what}: {body}");
            assert_eq!(auth.as_deref(), Some("Bearer realm=\"ci\""), "{what}");
            assert_eq!(body["code"], code, "{what}: {body}");
            let message = body["error"].as_str().unwrap().to_owned();
            assert!(
                message.contains(hint),
                "{what}: {message:?} should mention {hint:?}"
            );
            assert_eq!(body["detail"], body["error"], "{what}");
            assert!(
                !message.contains("exp@example.com") && !message.contains("ina@"),
                "{message}"
            );
            messages.insert(message);
        }
        assert_eq!(
            messages.len(),
            9,
            "each problem has its own message: {messages:?}"
        );

        let (status, _, body) = status_and_body(client().get(&url).bearer_auth(&good.key)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["jobs"], serde_json::json!([]));

        // The key's last use is recorded.
        let key_id = api_keys::list(&db.pool, Some(good.id)).await.unwrap()[0].id;
        wait_for("last_used_at", WAIT, || async {
            api_keys::get(&db.pool, key_id)
                .await
                .unwrap()
                .unwrap()
                .last_used_at
        })
        .await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn health_ready_and_errors_are_json() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;

        for path in ["/health", "/ready"] {
            let (status, _, body) = status_and_body(client().get(server.at(path))).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(body, serde_json::json!({"status": "ok"}));
        }

        let (status, _, body) = status_and_body(
            client()
                .get(server.at("/api/v2/nothing"))
                .bearer_auth(&ada.key),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(body["code"], "not_found");
        assert!(
            body["error"].as_str().unwrap().contains("/api/v1"),
            "{body}"
        );

        let (status, _, body) = status_and_body(client().delete(server.at("/api/v1/jobs"))).await;
        assert_eq!(status, 405);
        assert_eq!(body["code"], "method_not_allowed");

        // Not multipart.
        let (status, _, body) = status_and_body(
            client()
                .post(server.at("/api/v1/jobs"))
                .bearer_auth(&ada.key)
                .header("content-type", "application/json")
                .body("{\"file\": 1}"),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("multipart/form-data"),
            "{body}"
        );

        // Multipart without the file.
        let form = reqwest::multipart::Form::new().text("task", "test");
        let (status, _, body) = status_and_body(
            client()
                .post(server.at("/api/v1/jobs"))
                .bearer_auth(&ada.key)
                .multipart(form),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains("`file`"), "{body}");

        // Broken multipart framing.
        let (status, _, body) = status_and_body(
            client()
                .post(server.at("/api/v1/jobs"))
                .bearer_auth(&ada.key)
                .header("content-type", "multipart/form-data; boundary=XYZ")
                .body("--XYZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc"),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "bad_request");

        let (status, _, body) = status_and_body(
            client()
                .get(server.at("/api/v1/jobs?limit=lots"))
                .bearer_auth(&ada.key),
        )
        .await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    })
    .await
    .expect("test timed out");
}
