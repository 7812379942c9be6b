//! The store without the network: name/digest validation, pulls from local files (copy
//! and link), listing, damage detection and removal.

mod common;

use common::{pattern, sha256sum, tmpdir};
use nao_store::{
    pull, Digest, Health, ModelName, NoProgress, PullOptions, PullSpec, Source, Store, StoreError,
};
use std::fs;

#[test]
fn traversal_in_names_and_digests_is_rejected() {
    for bad in [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "..",
        "x:../../y",
        "a\\b",
        "A:b",
    ] {
        let e = ModelName::parse(bad).unwrap_err();
        assert!(matches!(e, StoreError::InvalidName { .. }), "{bad}: {e}");
        assert!(e.to_string().starts_with("invalid model name"), "{e}");
    }
    for bad in [
        "sha256:../..",
        "sha256:/etc/passwd",
        // Uppercase hex of sha256("") (lowercase is the only spelling accepted).
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "sha256:e3b0c44298fc1c14",
    ] {
        let e = Digest::parse(bad).unwrap_err();
        assert!(
            e.to_string()
                .contains("expected sha256:<64 lowercase hex digits>"),
            "{e}"
        );
    }
    // A pull spec that is not a file, URL or valid name fails on the name.
    assert!(matches!(
        PullSpec::parse("a/../../b"),
        Err(StoreError::InvalidName { .. })
    ));
    assert!(matches!(
        PullSpec::parse("/no/such/model.gguf"),
        Err(StoreError::NoSuchFile(_))
    ));
}

#[test]
fn copy_and_link_round_trip() {
    let dir = tmpdir("roundtrip");
    let src = dir.join("Tiny-Model.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(pattern(300_000, 7));
    fs::write(&src, &bytes).unwrap();
    let want = sha256sum(&src);
    let store = Store::open(dir.join("home")).unwrap();

    let copied = pull(
        &store,
        &PullSpec::Path(src.clone()),
        &PullOptions::default(),
        &mut NoProgress,
    )
    .unwrap();
    assert_eq!(copied.name.to_string(), "tiny-model:latest");
    assert_eq!(copied.manifest.digest.hex(), want);
    assert_eq!(copied.manifest.size, bytes.len() as u64);
    assert_eq!(copied.manifest.format, "gguf");
    let blob = dir.join("home/blobs").join(format!("sha256-{want}"));
    assert_eq!(fs::read(&blob).unwrap(), bytes);

    let link_name = ModelName::parse("tiny:linked").unwrap();
    let linked = pull(
        &store,
        &PullSpec::Path(src.clone()),
        &PullOptions {
            name: Some(link_name.clone()),
            link: true,
            ..PullOptions::default()
        },
        &mut NoProgress,
    )
    .unwrap();
    assert!(
        matches!(&linked.manifest.source, Source::Link { path } if path == &src.canonicalize().unwrap())
    );

    let listed = store.list(true, &mut NoProgress).unwrap();
    let names: Vec<String> = listed.iter().map(|l| l.name.to_string()).collect();
    assert_eq!(names, ["tiny-model:latest", "tiny:linked"]);
    assert!(listed.iter().all(|l| l.health == Health::Ok));
    let (path, _) = store.resolve(&link_name, &mut NoProgress).unwrap();
    assert_eq!(path, src.canonicalize().unwrap());

    // Removing the copy deletes its blob; removing the link keeps the user's file.
    assert!(store.remove(&copied.name).unwrap());
    assert!(!blob.exists());
    assert!(!store.remove(&link_name).unwrap());
    assert!(src.exists());
    assert!(store.list(false, &mut NoProgress).unwrap().is_empty());
    assert!(matches!(
        store.remove(&link_name),
        Err(StoreError::NotFound(_))
    ));
    // Nothing but empty directories (and no temporary files) is left.
    assert_eq!(fs::read_dir(dir.join("home/manifests")).unwrap().count(), 0);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_expected_digest_stores_nothing() {
    let dir = tmpdir("wrongdigest");
    let src = dir.join("m.gguf");
    fs::write(&src, pattern(1000, 3)).unwrap();
    let store = Store::open(dir.join("home")).unwrap();
    // sha256 of the empty input, which this file is not.
    let other =
        Digest::parse("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap();
    let e = pull(
        &store,
        &PullSpec::Path(src),
        &PullOptions {
            digest: Some(other),
            ..PullOptions::default()
        },
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, StoreError::DigestMismatch { .. }), "{e}");
    assert!(store.list(false, &mut NoProgress).unwrap().is_empty());
    assert_eq!(fs::read_dir(dir.join("home/blobs")).unwrap().count(), 0);
    let partials: Vec<_> = fs::read_dir(dir.join("home/partial"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(partials.is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_blob_is_flagged_and_refused() {
    let dir = tmpdir("damaged");
    let src = dir.join("m.gguf");
    fs::write(&src, pattern(200_000, 11)).unwrap();
    let store = Store::open(dir.join("home")).unwrap();
    let p = pull(
        &store,
        &PullSpec::Path(src),
        &PullOptions::default(),
        &mut NoProgress,
    )
    .unwrap();
    assert_eq!(
        store.list(false, &mut NoProgress).unwrap()[0].health,
        Health::Ok
    );
    let blob = store.blob_path(&p.manifest.digest);
    // File timestamps have jiffy granularity: let the clock move past the pull's mtime.
    std::thread::sleep(std::time::Duration::from_millis(30));
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100_000] ^= 0xff; // same size, different content
    let mut perm = fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&blob, perm).unwrap();
    fs::write(&blob, &bytes).unwrap();
    let l = store.list(false, &mut NoProgress).unwrap();
    assert!(
        matches!(&l[0].health, Health::Damaged(why) if why.contains("sha256 is")),
        "{:?}",
        l[0].health
    );
    let e = store.resolve(&p.name, &mut NoProgress).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    // A truncated blob is caught by its size alone.
    fs::write(&blob, &bytes[..10]).unwrap();
    assert!(
        matches!(&store.list(false, &mut NoProgress).unwrap()[0].health, Health::Damaged(why) if why.contains("size"))
    );
    fs::remove_file(&blob).unwrap();
    assert_eq!(
        store.list(false, &mut NoProgress).unwrap()[0].health,
        Health::Missing
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_tampered_manifest_is_not_trusted() {
    let dir = tmpdir("tampered");
    let store = Store::open(dir.join("home")).unwrap();
    let mdir = dir.join("home/manifests/evil");
    fs::create_dir_all(&mdir).unwrap();
    fs::write(
        mdir.join("latest"),
        r#"{"schema":1,"name":"evil:latest","digest":"sha256:../../etc/passwd","size":1,"format":"gguf","source":{"kind":"url","url":"x"},"created_at":0}"#,
    )
    .unwrap();
    // A stray file with a name that is not a valid tag is not listed at all.
    fs::write(mdir.join(".hidden"), "{}").unwrap();
    let l = store.list(false, &mut NoProgress).unwrap();
    assert_eq!(l.len(), 1);
    assert!(l[0].manifest.is_none());
    assert!(
        matches!(&l[0].health, Health::Damaged(why) if why.contains("invalid digest")),
        "{:?}",
        l[0].health
    );
    let e = store
        .resolve(&ModelName::parse("evil").unwrap(), &mut NoProgress)
        .unwrap_err();
    assert!(matches!(e, StoreError::BadManifest { .. }), "{e}");
    let _ = fs::remove_dir_all(&dir);
}
