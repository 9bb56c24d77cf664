//! `GET /openapi.json` against the real router: an OpenAPI 3.1 document that names every route
//! the router serves under `/v1` (SPEC §6 and §10), and no route the router does not serve.

#![allow(clippy::unwrap_used)]

use serde_json::Value;

use crate::support::serve_paused;
use herald_api::ApiOptions;
use herald_core::Secret;

/// Every `/v1` operation of SPEC §6, §8 and §10, as (method, path).
const SPEC_ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/events"),
    ("post", "/v1/events/batch"),
    ("get", "/v1/events"),
    ("get", "/v1/events/{id}"),
    ("get", "/v1/subscribers"),
    ("get", "/v1/subscribers/{id}"),
    ("post", "/v1/subscribers/{id}/pause"),
    ("post", "/v1/subscribers/{id}/resume"),
    ("post", "/v1/subscribers/{id}/redrive"),
    ("post", "/v1/subscribers/{id}/replay"),
    ("get", "/v1/deliveries"),
    ("get", "/v1/deliveries/{id}"),
    ("post", "/v1/deliveries/{id}/retry"),
    ("post", "/v1/reload"),
    ("get", "/v1/cluster"),
];

async fn serve(dir: &std::path::Path) -> String {
    let options = ApiOptions {
        api_token: Some(Secret::new("tok")),
        ..ApiOptions::default()
    };
    serve_paused(dir, options).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_and_the_router_name_the_same_routes() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(dir.path()).await;
    let http = reqwest::Client::new();

    // Behind the token, like /v1.
    let res = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let res = http
        .get(format!("{base}/openapi.json"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();

    // Every route of the contract is documented, with its error answers.
    for (method, path) in SPEC_ROUTES {
        let op = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from the document"))[*method];
        assert!(op.is_object(), "{method} {path} missing from the document");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path}: no 401"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["schemas"]["EventView"].is_object());

    // Every documented operation is served: none answers the router's "no such endpoint"
    // fallback or 405.
    let mut operations = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/v1/"), "{path}");
        let url = format!("{base}{}", path.replace("{id}", "zz"));
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let res = http
                .request(method.to_uppercase().parse().unwrap(), &url)
                .bearer_auth("tok")
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}: {body}");
            assert!(
                !(status == 404 && body.contains("no such endpoint")),
                "{method} {path} is documented but not routed: {body}"
            );
        }
    }
    assert_eq!(operations, SPEC_ROUTES.len(), "documented operations");

    // And the fallback does answer "no such endpoint" for a route that is not there.
    let body = http
        .get(format!("{base}/v1/nothing"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("no such endpoint"), "{body}");
}
