//! `nao chat`: an interactive conversation in the terminal. rustyline gives line editing
//! and history (`$NAO_HOME/chat_history`); `"""` starts and ends multi-line input; slash
//! commands change the conversation (`/system`, `/clear`, `/save`, `/load`, `/set`).
//!
//! Ctrl-C while an answer streams stops that answer and returns to the prompt: a SIGINT
//! handler (tokio's, on a small thread) sets a flag the generation callback polls, and
//! having a handler at all keeps SIGINT from killing the process. At the prompt rustyline
//! reads Ctrl-C as a key (the terminal is raw), which discards the line; Ctrl-D leaves.
//! Each turn renders the whole conversation through the model's chat template and runs
//! it from scratch (no KV reuse across turns yet), so long chats slow down; `/clear` helps.

use anyhow::{bail, Context, Result};
use nao_engine::{generate, GenerateParams, SamplerConfig};
use nao_models::{Compute, Model};
use nao_tokenizer::chat::ChatTemplate;
use nao_tokenizer::Tokenizer;
use rustyline::error::ReadlineError;
use serde_json::{json, Value};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ChatArgs {
    /// A model name in the store, a GGUF file, or a Hugging Face model directory.
    model: PathBuf,
    /// Context size in tokens (default: the model's training context, at most 4096).
    #[arg(short, long)]
    ctx: Option<usize>,
    /// Most tokens per answer.
    #[arg(short = 'n', long = "n-predict", default_value_t = 1024)]
    n_predict: usize,
    #[arg(long, default_value_t = 0.7)]
    temp: f32,
    #[arg(long)]
    seed: Option<u64>,
    /// Threads to compute with (default: available cores).
    #[arg(short, long)]
    threads: Option<usize>,
    /// A system message to start with.
    #[arg(long)]
    system: Option<String>,
}

/// What `/save` writes and `/load` reads.
struct Session {
    system: Option<String>,
    messages: Vec<Value>,
    sampler: SamplerConfig,
    max_tokens: usize,
}

const HELP: &str = "commands: /system TEXT, /clear, /save FILE, /load FILE, \
/set temperature|top_p|top_k|min_p|repeat_penalty|max_tokens|seed VALUE, /help, /bye; \
\"\"\" starts and ends multi-line input; Ctrl-C stops an answer; Ctrl-D leaves";

pub fn chat(a: ChatArgs) -> Result<()> {
    let src = crate::source::Source::open(&a.model)?;
    src.check_memory(a.ctx, "--ctx")?;
    let (model, tok, source) = src.load()?;
    let text_of = |id: Option<u32>| {
        id.and_then(|i| tok.token_text(i))
            .unwrap_or_default()
            .to_string()
    };
    let tmpl = ChatTemplate::new(&source, &text_of(tok.bos()), &text_of(tok.eos()))?;
    let n_ctx_train = model.config().n_ctx_train;
    let n_ctx = a.ctx.unwrap_or_else(|| n_ctx_train.min(4096));
    if n_ctx < 2 || n_ctx > n_ctx_train {
        bail!("context size {n_ctx} is outside 2..={n_ctx_train} (the model's training context)");
    }
    let stop = interrupt_flag();
    let mut s = Session {
        system: a.system.clone(),
        messages: Vec::new(),
        sampler: SamplerConfig {
            temperature: a.temp,
            seed: a.seed.unwrap_or_else(clock_seed),
            ..SamplerConfig::default()
        },
        max_tokens: a.n_predict,
    };
    let mut compute = Compute::new(a.threads.unwrap_or_else(crate::cli::default_threads));
    let mut rl = rustyline::DefaultEditor::new().context("cannot start the line editor")?;
    let history = nao_store::Store::default_root()
        .ok()
        .map(|r| r.join("chat_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    eprintln!(
        "nao chat: {} (context {n_ctx}); /help for commands",
        a.model.display()
    );
    loop {
        let line = match rl.readline(">>> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let input = if let Some(first) = line.trim_start().strip_prefix("\"\"\"") {
            match read_multiline(&mut rl, first)? {
                Some(t) => t,
                None => continue,
            }
        } else {
            line.clone()
        };
        if input.trim().is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(input.as_str());
        if let Some(cmd) = input.trim().strip_prefix('/') {
            match command(cmd, &mut s) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    continue;
                }
            }
        }
        s.messages.push(json!({"role": "user", "content": input}));
        match answer(&model, &tok, &tmpl, &mut compute, &s, n_ctx, &stop) {
            Ok(text) => s
                .messages
                .push(json!({"role": "assistant", "content": text})),
            Err(e) => {
                s.messages.pop();
                eprintln!("error: {e:#}");
            }
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    Ok(())
}

/// Reads lines until one ends with `"""`; `None` when the user pressed Ctrl-C.
fn read_multiline(rl: &mut rustyline::DefaultEditor, first: &str) -> Result<Option<String>> {
    if let Some(done) = first.strip_suffix("\"\"\"") {
        return Ok(Some(done.to_string()));
    }
    let mut text = first.to_string();
    loop {
        match rl.readline("... ") {
            Ok(l) => {
                if !text.is_empty() {
                    text.push('\n');
                }
                if let Some(last) = l.trim_end().strip_suffix("\"\"\"") {
                    text.push_str(last);
                    return Ok(Some(text.trim_end_matches('\n').to_string()));
                }
                text.push_str(&l);
            }
            Err(ReadlineError::Interrupted) => return Ok(None),
            Err(ReadlineError::Eof) => return Ok(Some(text)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs a slash command; `Ok(false)` means leave.
fn command(cmd: &str, s: &mut Session) -> Result<bool> {
    let (name, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
    let arg = arg.trim();
    match name {
        "bye" | "exit" | "quit" => return Ok(false),
        "help" | "?" => eprintln!("{HELP}"),
        "system" => {
            s.system = (!arg.is_empty()).then(|| arg.to_string());
            eprintln!(
                "system message {}",
                if arg.is_empty() { "cleared" } else { "set" }
            );
        }
        "clear" => {
            s.messages.clear();
            eprintln!("conversation cleared");
        }
        "save" => {
            if arg.is_empty() {
                bail!("usage: /save FILE");
            }
            let doc = json!({
                "system": s.system,
                "messages": s.messages,
                "temperature": s.sampler.temperature,
            });
            std::fs::write(arg, serde_json::to_vec_pretty(&doc)?)
                .with_context(|| format!("cannot write {arg}"))?;
            eprintln!("saved {} messages to {arg}", s.messages.len());
        }
        "load" => {
            let bytes = std::fs::read(arg).with_context(|| format!("cannot read {arg:?}"))?;
            let doc: Value = serde_json::from_slice(&bytes).context("not a saved chat")?;
            let msgs = doc["messages"]
                .as_array()
                .context("not a saved chat: no messages")?;
            s.messages = msgs.clone();
            s.system = doc["system"].as_str().map(str::to_string);
            if let Some(t) = doc["temperature"].as_f64() {
                s.sampler.temperature = t as f32;
            }
            eprintln!("loaded {} messages from {arg}", s.messages.len());
        }
        "set" => {
            let (key, v) = arg.split_once(' ').context("usage: /set NAME VALUE")?;
            let v = v.trim();
            let f = || {
                v.parse::<f32>()
                    .with_context(|| format!("{v:?} is not a number"))
            };
            let u = || {
                v.parse::<usize>()
                    .with_context(|| format!("{v:?} is not a count"))
            };
            match key {
                "temperature" | "temp" => s.sampler.temperature = f()?,
                "top_p" => s.sampler.top_p = f()?,
                "min_p" => s.sampler.min_p = f()?,
                "repeat_penalty" => s.sampler.repeat_penalty = f()?,
                "top_k" => s.sampler.top_k = u()?,
                "max_tokens" => s.max_tokens = u()?,
                "seed" => s.sampler.seed = u()? as u64,
                _ => bail!("unknown setting {key:?}; /help lists them"),
            }
            eprintln!("{key} = {v}");
        }
        _ => bail!("unknown command /{name}; /help lists them"),
    }
    Ok(true)
}

/// Streams one answer to stdout and returns its text (what was produced before Ctrl-C,
/// when interrupted).
fn answer(
    model: &Model,
    tok: &Tokenizer,
    tmpl: &ChatTemplate,
    compute: &mut Compute,
    s: &Session,
    n_ctx: usize,
    stop: &AtomicBool,
) -> Result<String> {
    let mut msgs = Vec::new();
    if let Some(sys) = &s.system {
        msgs.push(json!({"role": "system", "content": sys}));
    }
    msgs.extend(s.messages.iter().cloned());
    let rendered = tmpl.render(&Value::Array(msgs), None, true)?;
    let has_bos = tok
        .bos()
        .and_then(|b| tok.token_text(b))
        .is_some_and(|b| rendered.starts_with(b));
    let prompt = tok.encode(&rendered, !has_bos, true);
    if prompt.len() + 1 >= n_ctx {
        bail!(
            "the conversation ({} tokens) fills the context ({n_ctx}); /clear starts over",
            prompt.len()
        );
    }
    let params = GenerateParams {
        max_tokens: s.max_tokens,
        n_ctx,
        sampler: s.sampler.clone(),
        top_logprobs: 0,
        stop_at_eog: true,
    };
    stop.store(false, Ordering::SeqCst);
    let stdout = std::io::stdout();
    let g = generate(model, tok, compute, &prompt, &params, |piece| {
        let mut out = stdout.lock();
        let _ = out.write_all(piece.as_bytes()).and_then(|_| out.flush());
        if stop.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    let interrupted = stop.swap(false, Ordering::SeqCst);
    let n = g.tokens.len();
    println!();
    eprintln!(
        "[{}{n} tokens, {:.1} tok/s; prompt {} tokens, {:.1} tok/s]",
        if interrupted { "stopped: " } else { "" },
        n as f64 / g.decode_time.as_secs_f64().max(1e-9),
        prompt.len(),
        prompt.len() as f64 / g.prefill_time.as_secs_f64().max(1e-9),
    );
    Ok(g.text)
}

/// A flag set on every SIGINT. Installing the handler also keeps SIGINT from ending the
/// process, which is what lets Ctrl-C stop an answer instead of the program.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            let _ = ready_tx.send(());
            return;
        };
        rt.block_on(async move {
            let mut sig =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ready_tx.send(());
                        return;
                    }
                };
            let _ = ready_tx.send(());
            while sig.recv().await.is_some() {
                f.store(true, Ordering::SeqCst);
            }
        });
    });
    // Wait until the handler is in place, so an early Ctrl-C cannot kill us.
    let _ = ready_rx.recv();
    flag
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
