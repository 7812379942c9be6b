//! The embedding worker: one thread owns the [`Embedder`] and its compute pool and runs
//! requests one at a time from a bounded queue ([`EmbedWorker`], the real [`EmbedHandle`]).
//!
//! Also [`EmbedOnlyEngine`], the chat-side [`EngineHandle`] for a server that serves only
//! an embedding model: it describes that model (so `/v1/models` lists it) and refuses
//! generation with a 400 that points at `/v1/embeddings`.

use crate::api::{
    EngineHandle, EngineStats, ModelDetails, ModelInfo, PromptError, Request, RequestHandle,
    SubmitError,
};
use crate::embed::{EmbedError, EmbedHandle, EmbedModelInfo, EmbedOutput, EmbedRequest, Embedder};
use nao_models::Compute;
use serde_json::Value as Json;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<EmbedOutput, EmbedError>>;

/// Handle to the embedding thread. The thread ends when the handle is dropped.
pub struct EmbedWorker {
    tx: Mutex<SyncSender<(EmbedRequest, Reply)>>,
    info: EmbedModelInfo,
    max_queue: usize,
    /// The model's architecture name (`bert`, `qwen3`, …) and KV head count, read before
    /// the model moves to its thread (for [`EmbedOnlyEngine`]'s model listing).
    architecture: String,
    n_head_kv: usize,
}

impl EmbedWorker {
    /// Starts the worker thread with `embedder` computing on `n_threads` threads; at most
    /// `max_queue` requests wait behind the running one.
    pub fn start(
        embedder: Embedder,
        info: EmbedModelInfo,
        n_threads: usize,
        max_queue: usize,
    ) -> std::io::Result<(EmbedWorker, JoinHandle<()>)> {
        let (tx, rx) = sync_channel::<(EmbedRequest, Reply)>(max_queue.max(1));
        let architecture = embedder.encoder.architecture().to_string();
        let n_head_kv = embedder.encoder.n_head_kv();
        let thread = std::thread::Builder::new()
            .name("nao-embed".into())
            .spawn(move || {
                let mut c = Compute::new(n_threads.max(1));
                while let Ok((req, reply)) = rx.recv() {
                    // A closed reply channel (client gone) is not an error worth reporting.
                    let _ = reply.send(embedder.embed(&req, &mut c));
                }
            })?;
        Ok((
            EmbedWorker {
                tx: Mutex::new(tx),
                info,
                max_queue: max_queue.max(1),
                architecture,
                n_head_kv,
            },
            thread,
        ))
    }

    /// Architecture name of the model (`bert`, `qwen3`, …).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Key/value heads per layer (equal to the query heads for BERT).
    pub fn n_head_kv(&self) -> usize {
        self.n_head_kv
    }
}

impl EmbedHandle for EmbedWorker {
    fn info(&self) -> EmbedModelInfo {
        self.info.clone()
    }

    fn embed(&self, req: EmbedRequest) -> oneshot::Receiver<Result<EmbedOutput, EmbedError>> {
        let (reply, rx) = oneshot::channel();
        let sent = match self.tx.lock() {
            Ok(tx) => tx.try_send((req, reply)),
            Err(_) => {
                // Only a panic while holding the lock poisons it; the sender is still sound.
                let (dead, rx) = oneshot::channel();
                let _ = dead.send(Err(EmbedError::ShutDown));
                return rx;
            }
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full((_, reply))) => {
                let _ = reply.send(Err(EmbedError::QueueFull {
                    limit: self.max_queue,
                }));
            }
            Err(TrySendError::Disconnected((_, reply))) => {
                let _ = reply.send(Err(EmbedError::ShutDown));
            }
        }
        rx
    }
}

/// The [`EngineHandle`] of a server without a chat model: lists the embedding model and
/// refuses generation (HTTP 400 naming `/v1/embeddings`).
pub struct EmbedOnlyEngine {
    info: EmbedModelInfo,
    architecture: String,
    n_head_kv: usize,
}

impl EmbedOnlyEngine {
    /// Describes the embedding model `info` of architecture `architecture` (`bert`, or a
    /// decoder embedder's `qwen3`, …) with `n_head_kv` key/value heads, as the model reports
    /// them ([`EmbedWorker::architecture`], [`EmbedWorker::n_head_kv`]).
    pub fn new(info: EmbedModelInfo, architecture: &str, n_head_kv: usize) -> EmbedOnlyEngine {
        EmbedOnlyEngine {
            info,
            architecture: architecture.to_string(),
            n_head_kv,
        }
    }

    fn refusal(&self) -> String {
        format!(
            "model `{}` is an embedding model: use /v1/embeddings (or /api/embed)",
            self.info.id
        )
    }
}

impl EngineHandle for EmbedOnlyEngine {
    fn model_info(&self) -> ModelInfo {
        let i = &self.info;
        ModelInfo {
            id: i.id.clone(),
            n_ctx: i.max_tokens,
            n_vocab: i.n_vocab,
            created: i.created,
            details: ModelDetails {
                architecture: self.architecture.clone(),
                n_ctx_train: i.max_tokens,
                n_embd: i.n_embd,
                n_layer: i.n_layer,
                n_head: i.n_head,
                n_head_kv: self.n_head_kv,
                ..ModelDetails::default()
            },
        }
    }

    fn render_chat(&self, _: &Json, _: Option<&Json>) -> Result<String, PromptError> {
        Err(PromptError::BadMessages(self.refusal()))
    }

    /// Never reached for generation (`submit` refuses); one placeholder token keeps the
    /// server's empty-prompt check from masking the real refusal.
    fn tokenize(&self, _: &str, _: bool) -> Vec<u32> {
        vec![0]
    }

    fn submit(&self, _: Request) -> Result<RequestHandle, SubmitError> {
        Err(SubmitError::BadParams(self.refusal()))
    }

    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> EmbedModelInfo {
        EmbedModelInfo {
            id: "qwen3-embed".into(),
            n_embd: 1024,
            max_tokens: 8192,
            n_vocab: 151_669,
            n_layer: 28,
            n_head: 16,
            created: 0,
            pooling: "last",
            normalize: true,
            matryoshka: false,
        }
    }

    #[test]
    fn lists_the_real_architecture_and_kv_heads() {
        let e = EmbedOnlyEngine::new(info(), "qwen3", 8);
        let m = e.model_info();
        assert_eq!(m.details.architecture, "qwen3");
        assert_eq!((m.details.n_head, m.details.n_head_kv), (16, 8));
        let b = EmbedOnlyEngine::new(info(), "bert", 16).model_info();
        assert_eq!(
            (b.details.architecture.as_str(), b.details.n_head_kv),
            ("bert", 16)
        );
    }
}
