//! The `nao` binary end to end: error reporting on bad files, and (when the test models are
//! present) `tokenize`, `info` and `run --json` against llama.cpp's fixtures.

use nao_gguf::writer::{GgufWriter, RawTensor};
use nao_kernels::DType;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nao(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nao"))
        .args(args)
        .output()
        .expect("nao runs")
}

/// Runs nao, requires success, and parses its stdout as JSON.
fn nao_json(args: &[&str]) -> Value {
    let out = nao(args);
    assert!(
        out.status.success(),
        "nao {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nao-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write temp file");
    p
}

/// Exit code 1 and exactly one stderr line starting with "error:" that contains `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "exit code");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line of stderr, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{err:?}");
    assert!(
        lines[0].contains(needle),
        "{err:?} should mention {needle:?}"
    );
    assert!(!err.contains("panicked") && !err.contains("backtrace"));
}

#[test]
fn missing_file_is_one_line() {
    let out = nao(&["run", "-m", "/definitely/not/here.gguf", "-p", "hi"]);
    assert_one_line_error(&out, "not found");
    let out = nao(&["info", "/definitely/not/here.gguf"]);
    assert_one_line_error(&out, "not found");
}

#[test]
fn not_a_gguf_is_one_line() {
    let p = tmp_file("junk.gguf", b"this is not a model file at all, just text\n");
    let out = nao(&["info", p.to_str().expect("utf-8 path")]);
    assert_one_line_error(&out, "not a GGUF");
    let out = nao(&["run", "-m", p.to_str().expect("utf-8 path"), "-p", "hi"]);
    assert_one_line_error(&out, "not a GGUF");
}

#[test]
fn unsupported_architecture_is_one_line() {
    let bytes = GgufWriter::new(3)
        .kv("general.architecture", "mamba")
        .tensor_f32("token_embd.weight", &[4, 2], &[0.0; 8])
        .to_bytes();
    let p = tmp_file("mamba.gguf", &bytes);
    let out = nao(&["run", "-m", p.to_str().expect("utf-8 path"), "-p", "hi"]);
    assert_one_line_error(&out, "unsupported architecture 'mamba'");
}

#[test]
fn unsupported_tensor_type_is_one_line() {
    // ggml type 16 is IQ2_XXS, which nao does not read.
    let mut t = RawTensor::new("token_embd.weight", DType::F32, &[256, 1], vec![0u8; 1024]);
    t.type_id = 16;
    let bytes = GgufWriter::new(3)
        .kv("general.architecture", "llama")
        .raw_tensor(t)
        .to_bytes();
    let p = tmp_file("iq2.gguf", &bytes);
    let out = nao(&["info", p.to_str().expect("utf-8 path")]);
    assert_one_line_error(&out, "unknown tensor type id 16");
}

fn model(file: &str) -> Option<PathBuf> {
    let p = root().join("models").join(file);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("NAO_REQUIRE_MODELS").is_none(),
        "{} missing and NAO_REQUIRE_MODELS is set",
        p.display()
    );
    eprintln!("skipping: {} not found", p.display());
    None
}

fn fixture(name: &str) -> Value {
    let p = root().join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn tokenize_info_and_json_run_on_gemma() {
    let Some(m) = model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    // tokenize: the fixture's special-token cases, exactly.
    let tok = fixture("gemma-3-270m-q4_k_m.tokenize.json");
    for case in tok["cases"].as_array().expect("cases").iter().take(40) {
        let text = case["text"].as_str().expect("text");
        if text.starts_with('-') {
            continue; // would parse as a flag
        }
        let mut args = vec!["tokenize", "-m", path_str(&m)];
        if case["parse_special"].as_bool() == Some(true) {
            args.push("--special");
        }
        if case["add_special"].as_bool() == Some(true) {
            args.push("--add-special");
        }
        args.push("--");
        args.push(text);
        let ids = nao_json(&args);
        assert_eq!(ids, case["ids"], "tokenize {text:?}");
    }

    let out = nao(&["info", path_str(&m)]);
    assert!(out.status.success());
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(info.contains("architecture:   gemma3"), "{info}");
    assert!(info.contains("context length: 32768"), "{info}");
    assert!(info.contains("q8_0"), "{info}");

    // run --json: greedy tokens equal llama.cpp's for the first steps of the first prompt
    // (whose top-two gaps are all wide: no near ties there).
    let greedy = fixture("gemma-3-270m-q4_k_m.greedy.json");
    let case = &greedy["cases"][0];
    let got = nao_json(&[
        "run",
        "-m",
        path_str(&m),
        "-p",
        case["prompt"].as_str().expect("prompt"),
        "-n",
        "4",
        "--temp",
        "0",
        "--json",
    ]);
    assert_eq!(
        got["prompt_tokens"].as_array().map(|a| a.len() as u64),
        case["prompt_n_tokens"].as_u64()
    );
    let want: Vec<u64> = case["steps"].as_array().expect("steps")[..4]
        .iter()
        .map(|s| s["id"].as_u64().expect("id"))
        .collect();
    let tokens: Vec<u64> = got["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_u64().expect("id"))
        .collect();
    assert_eq!(tokens, want);
    let top = got["top_logprobs"].as_array().expect("top_logprobs");
    assert_eq!(top.len(), 4);
    assert!(top
        .iter()
        .all(|step| step.as_array().map(|s| s.len()) == Some(5)));
    assert!(got["text"]
        .as_str()
        .is_some_and(|t| t.starts_with(" the capital")));
}

#[test]
fn bench_json_has_llama_bench_fields() {
    let Some(m) = model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let rows = nao_json(&[
        "bench",
        "-m",
        path_str(&m),
        "-p",
        "8",
        "-n",
        "4",
        "-t",
        "1",
        "-r",
        "2",
        "--json",
        "--roofline",
    ]);
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 2);
    for (row, (np, ng, test)) in rows.iter().zip([(8, 0, "pp8"), (0, 4, "tg4")]) {
        assert_eq!(row["n_prompt"], np);
        assert_eq!(row["n_gen"], ng);
        assert_eq!(row["test"], test);
        assert_eq!(row["n_threads"], 1);
        let samples = row["samples_ts"].as_array().expect("samples");
        assert_eq!(samples.len(), 2);
        let mean = samples.iter().filter_map(Value::as_f64).sum::<f64>() / 2.0;
        let avg = row["avg_ts"].as_f64().expect("avg_ts");
        assert!(avg > 0.0 && (avg - mean).abs() < 1e-9 * avg.max(1.0));
        assert!(row["stddev_ts"].as_f64().is_some_and(|s| s >= 0.0));
        // Peak RSS covers at least the weights that were read, and not the probe's buffer.
        assert!(row["peak_rss_bytes"]
            .as_u64()
            .is_some_and(|r| r > 200 << 20 && r < 500 << 20));
        // Roofline figures only for generation: fraction = tokens/s / bound.
        if ng > 0 {
            assert!(row["bandwidth_bytes_per_s"]
                .as_f64()
                .is_some_and(|b| b > 1e8));
            let bound = row["roofline_ts"].as_f64().expect("roofline_ts");
            let frac = row["roofline_fraction"].as_f64().expect("fraction");
            assert!((frac - avg / bound).abs() < 1e-9);
        } else {
            assert!(row["roofline_ts"].is_null());
        }
    }
    let out = nao(&["bench", "-m", path_str(&m), "-r", "0"]);
    assert_one_line_error(&out, "repetitions");
}

#[test]
fn context_outside_the_model_is_refused_before_allocating() {
    let Some(m) = model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let out = nao(&[
        "run",
        "-m",
        path_str(&m),
        "-p",
        "hi",
        "-c",
        "1000000000",
        "-n",
        "1000000000",
    ]);
    assert_one_line_error(&out, "context size 1000000000 is outside 1..=32768");
    let out = nao(&[
        "run",
        "-m",
        path_str(&m),
        "-p",
        "hello world again",
        "-c",
        "2",
    ]);
    assert_one_line_error(&out, "prompt has 4 tokens, the context size is 2");
}

#[test]
fn chat_flag_renders_the_models_template() {
    let Some(m) = model("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf") else {
        return;
    };
    // llama.cpp's rendering of one user message through this model's template.
    let chat = fixture("qwen2.5-coder-1.5b-instruct-q4_k_m.chat.json");
    let case = &chat["cases"][0];
    assert_eq!(case["messages"].as_array().map(|a| a.len()), Some(1));
    let user = case["messages"][0]["content"].as_str().expect("content");
    let rendered = case["prompt"].as_str().expect("prompt");
    let want = nao_json(&["tokenize", "-m", path_str(&m), "--special", "--", rendered]);
    let got = nao_json(&[
        "run",
        "-m",
        path_str(&m),
        "--chat",
        "-p",
        user,
        "-n",
        "1",
        "--temp",
        "0",
        "--json",
    ]);
    assert_eq!(got["prompt_tokens"], want);
}
