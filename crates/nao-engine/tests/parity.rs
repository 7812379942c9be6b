//! Model parity against llama.cpp: greedy continuations with top-5 logprobs
//! (`tests/fixtures/*.greedy.json`, made by llama-server on the same GGUF files).
//!
//! Rule: tokens must equal llama.cpp's at every step up to the first near tie (llama.cpp's
//! top two logprobs within `tol`), at every compared step the chosen token's logprob must be
//! within `tol` of llama.cpp's, and the mean absolute logprob difference over all compared
//! steps must stay under `MEAN_TOL` (a systematic error shifts the mean; rounding noise does
//! not).
//!
//! The bounds are per model, calibrated against llama.cpp itself: the same llama.cpp source
//! (llama-cpp-python 0.3.36) built for another CPU (AVX-512) and checked against these
//! fixtures with this rule by `scripts/reference-self-check.py`:
//!
//! | model | flash attn | worst dlogprob | mean | token flips |
//! |---|---|---|---|---|
//! | Qwen2.5-1.5B | on (default) | 0.169 | 0.023 | 0 |
//! | Qwen2.5-1.5B | off | 0.158 | 0.023 | 0 |
//! | Gemma-3-270M | on (default) | 0.317 | 0.052 | 3 (gaps 0.10-0.21) |
//! | Gemma-3-270M | off | 0.597 | 0.042 | at a gap of 0.35 |
//!
//! A per-step tolerance of 0.1 is below the reference's own reproducibility, so the test
//! asserts three things instead: every step within `tol` (also the near-tie gap: 0.25 for
//! Qwen, 0.4 for Gemma, whose huge activations make it chaotic); the mean within about 1.6x
//! llama.cpp's own; and no larger share of steps over 0.1 than llama.cpp's own build has.
//!
//! The model files are fetched by `scripts/fetch_models.py` into `models/`; when a file is
//! absent the test says so and passes only if `NAO_REQUIRE_MODELS` is unset (CI sets it).

mod common;

use common::{model_path, root};
use nao_engine::{generate, GenerateParams, SamplerConfig};
use nao_gguf::GgufFile;
use nao_models::{load_model, Compute};
use nao_tokenizer::Tokenizer;
use serde_json::Value;
use std::sync::Arc;

/// Bounds for one model.
struct Bounds {
    /// Per-step |dlogprob| bound, also the near-tie gap.
    tol: f64,
    /// Bound on the mean |dlogprob|.
    mean_tol: f64,
    /// Largest share of compared steps allowed over the 0.1: llama.cpp's own share
    /// in the cross-build check above.
    share_over_0_1: f64,
}

fn check_greedy(model_file: &str, b: Bounds) {
    let Bounds {
        tol,
        mean_tol,
        share_over_0_1,
    } = b;
    let Some(path) = model_path(model_file) else {
        return;
    };
    let fixture_path = root()
        .join("tests/fixtures")
        .join(model_file.replace(".gguf", ".greedy.json"));
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture_path).expect("fixture readable"))
            .expect("fixture is JSON");
    let file = Arc::new(GgufFile::open(&path).expect("model opens"));
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer builds");
    let model = load_model(Arc::clone(&file)).expect("model loads");
    let mut compute = Compute::new(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    );
    let cases = fixture["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    let mut compared_total = 0;
    let mut over_0_1 = 0usize;
    let mut sum_abs = 0.0f64;
    for case in cases {
        let prompt_text = case["prompt"].as_str().expect("prompt");
        let steps = case["steps"].as_array().expect("steps");
        let prompt = tok.encode(prompt_text, true, true);
        assert_eq!(
            prompt.len() as u64,
            case["prompt_n_tokens"].as_u64().expect("n tokens"),
            "prompt token count for {prompt_text:?}"
        );
        let params = GenerateParams {
            max_tokens: steps.len(),
            n_ctx: prompt.len() + steps.len() + 1,
            sampler: SamplerConfig::greedy(),
            top_logprobs: 5,
            stop_at_eog: true,
        };
        let g = generate(&model, &tok, &mut compute, &prompt, &params, |_| {
            std::ops::ControlFlow::Continue(())
        })
        .expect("generation runs");
        let mut compared = 0;
        for (i, step) in steps.iter().enumerate() {
            let top = step["top"].as_array().expect("top");
            let lp = |j: usize| top[j][1].as_f64().expect("logprob");
            let want = step["id"].as_u64().expect("id") as u32;
            let want_lp = step["logprob"].as_f64().expect("logprob");
            let Some(&got) = g.tokens.get(i) else {
                failures.push(format!("{prompt_text:?}: stopped after {i} steps"));
                break;
            };
            // nao's logprob of llama.cpp's chosen token at this step.
            let ours = g.top_logprobs[i]
                .iter()
                .find(|(id, _)| *id == want)
                .map(|&(_, l)| l as f64);
            let d = ours.map_or(1.0, |l| (l - want_lp).abs());
            sum_abs += d;
            over_0_1 += usize::from(d > 0.1);
            match ours {
                Some(l) if (l - want_lp).abs() <= tol => {}
                other => failures.push(format!(
                    "{prompt_text:?} step {i}: logprob of {want} is {other:?}, llama.cpp {want_lp:.4}"
                )),
            }
            compared += 1;
            let near_tie = top.len() > 1 && (lp(0) - lp(1)).abs() < tol;
            if near_tie {
                break;
            }
            if got != want {
                failures.push(format!(
                    "{prompt_text:?} step {i}: token {got}, llama.cpp {want} (top {:?}, ours {:?})",
                    &top[..2],
                    &g.top_logprobs[i][..2]
                ));
                break;
            }
        }
        compared_total += compared;
        eprintln!("{prompt_text:?}: {compared} steps compared");
    }
    let mean = sum_abs / compared_total.max(1) as f64;
    eprintln!(
        "{model_file}: {compared_total} steps compared over {} prompts, mean |dlogprob| {mean:.4}",
        cases.len()
    );
    assert!(compared_total >= cases.len(), "too few steps compared");
    assert!(mean <= mean_tol, "mean |dlogprob| {mean:.4} > {mean_tol}");
    let share = over_0_1 as f64 / compared_total.max(1) as f64;
    eprintln!(
        "{model_file}: {over_0_1} steps over 0.1 ({:.1}%)",
        share * 100.0
    );
    assert!(
        share <= share_over_0_1,
        "{over_0_1} of {compared_total} steps differ by more than 0.1, llama.cpp's own build: {:.1}%",
        share_over_0_1 * 100.0
    );
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn gemma3_greedy_matches_llama_cpp() {
    // llama.cpp's own build: 27 of 115 steps over 0.1.
    check_greedy(
        "gemma-3-270m-q4_k_m.gguf",
        Bounds {
            tol: 0.4,
            mean_tol: 0.08,
            share_over_0_1: 27.0 / 115.0,
        },
    );
}

#[test]
fn qwen2_greedy_matches_llama_cpp() {
    // llama.cpp's own build: 11 of 179 steps over 0.1.
    check_greedy(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        Bounds {
            tol: 0.25,
            mean_tol: 0.04,
            share_over_0_1: 11.0 / 179.0,
        },
    );
}
