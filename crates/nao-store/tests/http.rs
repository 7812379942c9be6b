//! HTTP pulls against a local server: interrupted downloads resume with Range requests,
//! servers without Range support restart cleanly, redirects are followed, and a digest
//! that does not match (ours or the server's `X-Linked-Etag`) stores nothing.

mod common;

use common::{pattern, sha256_of, tmpdir, Route, Server};
use nao_store::{pull, Digest, NoProgress, PullOptions, PullSpec, Store, StoreError};
use std::fs;

fn partial_files(home: &std::path::Path) -> Vec<(String, u64)> {
    fs::read_dir(home.join("partial"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

#[test]
fn an_interrupted_download_resumes_with_range() {
    let dir = tmpdir("resume");
    let body = pattern(1_000_000, 42);
    let want = sha256_of(&body, &dir);
    let server = Server::start();
    server.route(
        "/m/model.gguf",
        Route {
            body: body.clone(),
            range: true,
            cut_after: Some(300_000),
            ..Route::default()
        },
    );
    let store = Store::open(dir.join("home")).unwrap();
    let spec = PullSpec::Url(server.url("/m/model.gguf"));
    let opts = PullOptions {
        digest: Some(Digest::parse(&format!("sha256:{want}")).unwrap()),
        ..PullOptions::default()
    };
    let e = pull(&store, &spec, &opts, &mut NoProgress).unwrap_err();
    assert!(matches!(e, StoreError::Http { .. }), "{e}");
    assert!(store.list(false, &mut NoProgress).unwrap().is_empty());
    let parts = partial_files(&dir.join("home"));
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].1, 300_000);

    let p = pull(&store, &spec, &opts, &mut NoProgress).unwrap();
    assert_eq!(p.name.to_string(), "model:latest");
    assert_eq!(p.manifest.digest.hex(), want);
    let reqs = server.requests_to("/m/model.gguf");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].range, None);
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(reqs[1].status, 206);
    assert_eq!(fs::read(store.blob_path(&p.manifest.digest)).unwrap(), body);
    assert!(partial_files(&dir.join("home")).is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_server_without_range_support_restarts_from_zero() {
    let dir = tmpdir("norange");
    let body = pattern(500_000, 5);
    let want = sha256_of(&body, &dir);
    let server = Server::start();
    server.route(
        "/x.gguf",
        Route {
            body: body.clone(),
            range: false,
            cut_after: Some(100_000),
            ..Route::default()
        },
    );
    let store = Store::open(dir.join("home")).unwrap();
    let spec = PullSpec::Url(server.url("/x.gguf"));
    assert!(pull(&store, &spec, &PullOptions::default(), &mut NoProgress).is_err());
    let p = pull(&store, &spec, &PullOptions::default(), &mut NoProgress).unwrap();
    let reqs = server.requests_to("/x.gguf");
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(reqs[1].status, 200);
    assert_eq!(p.manifest.digest.hex(), want);
    assert_eq!(p.manifest.size, 500_000);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn redirects_are_followed_and_the_linked_etag_is_checked() {
    let dir = tmpdir("redirect");
    let body = pattern(50_000, 9);
    let want = sha256_of(&body, &dir);
    let server = Server::start();
    // Hugging Face answers /resolve/ with a redirect carrying the LFS sha256.
    server.route(
        "/repo/resolve/main/good.gguf",
        Route {
            redirect: Some(server.url("/cdn/good")),
            headers: vec![("X-Linked-Etag".into(), format!("\"{want}\""))],
            ..Route::default()
        },
    );
    server.route(
        "/cdn/good",
        Route {
            body: body.clone(),
            range: true,
            ..Route::default()
        },
    );
    let store = Store::open(dir.join("home")).unwrap();
    let p = pull(
        &store,
        &PullSpec::Url(server.url("/repo/resolve/main/good.gguf")),
        &PullOptions::default(),
        &mut NoProgress,
    )
    .unwrap();
    assert_eq!(p.name.to_string(), "good:latest");
    assert_eq!(p.manifest.digest.hex(), want);

    // The same redirect vouching for other content (sha256 of "") is refused.
    server.route(
        "/repo/resolve/main/bad.gguf",
        Route {
            redirect: Some(server.url("/cdn/good")),
            headers: vec![(
                "X-Linked-Etag".into(),
                "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"".into(),
            )],
            ..Route::default()
        },
    );
    let e = pull(
        &store,
        &PullSpec::Url(server.url("/repo/resolve/main/bad.gguf")),
        &PullOptions::default(),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, StoreError::DigestMismatch { .. }), "{e}");
    let names: Vec<String> = store
        .list(false, &mut NoProgress)
        .unwrap()
        .iter()
        .map(|l| l.name.to_string())
        .collect();
    assert_eq!(names, ["good:latest"]);
    assert!(partial_files(&dir.join("home")).is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn http_errors_are_reported_and_leave_no_model() {
    let dir = tmpdir("404");
    let server = Server::start();
    let store = Store::open(dir.join("home")).unwrap();
    let e = pull(
        &store,
        &PullSpec::Url(server.url("/missing.gguf")),
        &PullOptions::default(),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    assert!(store.list(false, &mut NoProgress).unwrap().is_empty());
    let _ = fs::remove_dir_all(&dir);
}
