//! The one place where errors become HTTP responses.
//!
//! Every failure a client can see is an [`ApiError`], rendered as OpenAI's error object
//! `{"error": {"message", "type", "param", "code"}}` with `code` a string or null (SDKs
//! parse it as a string; an integer breaks some of them). Mid-stream errors use the same
//! object on an SSE `data:` line, so the status/type/code table lives only here.
//!
//! The Ollama API (`/api/*`) uses the same statuses and headers with Ollama's flat body,
//! `{"error": "message"}` ([`ApiError::into_ollama_response`]), also on NDJSON lines.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nao_engine::api::{AcquireError, PromptError, SubmitError};
use serde_json::{json, Value};

/// A client-visible failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a field is out of range. `param` names the field.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// 401: missing or wrong API key.
    #[error("invalid or missing API key")]
    Unauthorized,
    /// 404: the request names a model this server does not serve.
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    /// 404: no such route.
    #[error("invalid URL ({method} {path})")]
    NotFound { method: String, path: String },
    /// 405: the route exists, the method does not.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// 413: the body is larger than the configured limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// 503 with `Retry-After`: the engine queue is full; retrying soon may succeed.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after_secs: u64,
    },
    /// 503: the engine or the server is going away.
    #[error("{0}")]
    Unavailable(String),
    /// 503: the requested model does not fit in the memory free now; the message says
    /// what it needs, what is free and which context would fit.
    #[error("{0}")]
    InsufficientMemory(String),
    /// 500: a real internal fault (the engine failed a request it had accepted).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming the offending field.
    pub fn bad(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// A 400 about the request as a whole (no single field to blame).
    pub fn bad_body(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ModelNotFound(_) | ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Overloaded { .. }
            | ApiError::Unavailable(_)
            | ApiError::InsufficientMemory(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` field.
    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "authentication_error",
            ApiError::Overloaded { .. }
            | ApiError::Unavailable(_)
            | ApiError::InsufficientMemory(_)
            | ApiError::Internal(_) => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI's `code` field: always a string or null.
    fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::BadRequest { code, .. } => *code,
            ApiError::Unauthorized => Some("invalid_api_key"),
            ApiError::ModelNotFound(_) => Some("model_not_found"),
            ApiError::NotFound { .. } => Some("not_found"),
            ApiError::MethodNotAllowed { .. } => Some("method_not_allowed"),
            ApiError::BodyTooLarge { .. } => Some("request_too_large"),
            ApiError::Overloaded { .. } => Some("server_overloaded"),
            ApiError::Unavailable(_) => Some("service_unavailable"),
            ApiError::InsufficientMemory(_) => Some("insufficient_memory"),
            ApiError::Internal(_) => None,
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { param, .. } => param.as_deref(),
            ApiError::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    /// The `{"error": {...}}` object, for bodies and for mid-stream `data:` lines.
    pub fn to_json(&self) -> Value {
        json!({
            "error": {
                "message": self.to_string(),
                "type": self.kind(),
                "param": self.param(),
                "code": self.code(),
            }
        })
    }
}

/// Whether `path` belongs to the Ollama API, whose errors take Ollama's shape.
pub fn is_ollama_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

impl ApiError {
    /// Ollama's error object, `{"error": "message"}`: Ollama clients read only that string.
    pub fn to_ollama_json(&self) -> Value {
        let message = match self {
            // Ollama's own wording; some clients match it to offer pulling the model.
            ApiError::ModelNotFound(m) => format!("model '{m}' not found"),
            other => other.to_string(),
        };
        json!({ "error": message })
    }

    /// The response for an Ollama route: the same status and headers, Ollama's body.
    pub fn into_ollama_response(self) -> Response {
        let body = self.to_ollama_json().to_string();
        self.respond(body)
    }

    /// The response for whichever API `path` belongs to.
    pub fn into_response_for(self, path: &str) -> Response {
        if is_ollama_path(path) {
            self.into_ollama_response()
        } else {
            self.into_response()
        }
    }

    fn respond(self, body: String) -> Response {
        let mut resp = (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let ApiError::Overloaded {
            retry_after_secs, ..
        } = self
        {
            // The openai SDKs honour Retry-After on 5xx before their own backoff.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.to_json().to_string();
        self.respond(body)
    }
}

impl ApiError {
    /// Maps an engine refusal. `prompt_param` is the field that held the prompt
    /// (`messages` or `prompt`), which is what a too-long or bad prompt blames.
    pub fn from_submit(err: SubmitError, prompt_param: &str, retry_after_secs: u64) -> Self {
        let message = err.to_string();
        match err {
            SubmitError::QueueFull { .. } => ApiError::Overloaded {
                message,
                retry_after_secs,
            },
            SubmitError::PromptTooLong { .. } => ApiError::BadRequest {
                message,
                param: Some(prompt_param.to_string()),
                code: Some("context_length_exceeded"),
            },
            SubmitError::EmptyPrompt | SubmitError::TokenOutOfRange { .. } => {
                ApiError::bad(prompt_param, message)
            }
            SubmitError::BadParams(_) => ApiError::bad_body(message),
            // The engine does not know which field carried the grammar; the message names
            // the unsupported feature.
            SubmitError::BadGrammar(_) => ApiError::BadRequest {
                message,
                param: None,
                code: Some("invalid_grammar"),
            },
            SubmitError::ShutDown => ApiError::Unavailable(message),
        }
    }
}

impl ApiError {
    /// Maps a failure to get a model's engine (unknown name, load refused or failed,
    /// every model busy for too long).
    pub fn from_acquire(err: AcquireError, retry_after_secs: u64) -> Self {
        let message = err.to_string();
        match err {
            AcquireError::NotFound(name) => ApiError::ModelNotFound(name),
            AcquireError::NoDefault => ApiError::bad("model", message),
            AcquireError::OutOfMemory(m) => ApiError::InsufficientMemory(m),
            AcquireError::LoadFailed { .. } => ApiError::Internal(message),
            AcquireError::Busy(_) => ApiError::Overloaded {
                message,
                retry_after_secs,
            },
        }
    }
}

impl From<PromptError> for ApiError {
    fn from(err: PromptError) -> Self {
        let message = err.to_string();
        match err {
            PromptError::BadMessages(_) => ApiError::bad("messages", message),
            PromptError::NoTemplate => ApiError::BadRequest {
                message,
                param: None,
                code: Some("no_chat_template"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_string_or_null_for_every_variant() {
        let all = [
            ApiError::bad("n", "x"),
            ApiError::Unauthorized,
            ApiError::ModelNotFound("m".into()),
            ApiError::NotFound {
                method: "GET".into(),
                path: "/x".into(),
            },
            ApiError::MethodNotAllowed {
                method: "GET".into(),
                path: "/x".into(),
            },
            ApiError::BodyTooLarge { limit: 1 },
            ApiError::Overloaded {
                message: "busy".into(),
                retry_after_secs: 1,
            },
            ApiError::Unavailable("x".into()),
            ApiError::InsufficientMemory("x".into()),
            ApiError::Internal("x".into()),
        ];
        for e in all {
            let v = e.to_json();
            let code = &v["error"]["code"];
            assert!(code.is_string() || code.is_null(), "{e:?}: {code}");
            assert!(v["error"]["message"].is_string());
            assert!(v["error"]["type"].is_string());
            assert!(e.status().is_client_error() || e.status().is_server_error());
        }
    }

    #[test]
    fn ollama_shape_keeps_status_and_retry_after() {
        let r = ApiError::Overloaded {
            message: "busy".into(),
            retry_after_secs: 3,
        }
        .into_ollama_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(
            ApiError::ModelNotFound("x:1b".into()).to_ollama_json(),
            json!({"error": "model 'x:1b' not found"})
        );
        assert!(is_ollama_path("/api/chat") && is_ollama_path("/api"));
        assert!(!is_ollama_path("/apix") && !is_ollama_path("/v1/models"));
    }

    #[test]
    fn submit_errors_map_to_statuses() {
        let s = |e| ApiError::from_submit(e, "prompt", 1).status().as_u16();
        assert_eq!(
            s(SubmitError::QueueFull {
                waiting: 1,
                limit: 1
            }),
            503
        );
        assert_eq!(
            s(SubmitError::PromptTooLong {
                n_prompt_tokens: 9,
                n_ctx: 4
            }),
            400
        );
        assert_eq!(s(SubmitError::EmptyPrompt), 400);
        assert_eq!(s(SubmitError::TokenOutOfRange { id: -1, n_vocab: 3 }), 400);
        assert_eq!(s(SubmitError::BadParams("x".into())), 400);
        assert_eq!(s(SubmitError::BadGrammar("x".into())), 400);
        assert_eq!(s(SubmitError::ShutDown), 503);
        assert_eq!(ApiError::from(PromptError::NoTemplate).status(), 400);
        assert_eq!(
            ApiError::from(PromptError::BadMessages("x".into())).status(),
            400
        );
    }

    #[test]
    fn acquire_errors_map_to_statuses() {
        let a = |e| ApiError::from_acquire(e, 2);
        let nf = a(AcquireError::NotFound("m".into()));
        assert_eq!(nf.status(), 404);
        assert_eq!(nf.to_json()["error"]["code"], "model_not_found");
        assert_eq!(
            a(AcquireError::NoDefault).to_json()["error"]["param"],
            "model"
        );
        assert_eq!(a(AcquireError::NoDefault).status(), 400);
        let oom = a(AcquireError::OutOfMemory("needs 9 GiB".into()));
        assert_eq!(oom.status(), 503);
        assert_eq!(oom.to_json()["error"]["code"], "insufficient_memory");
        assert_eq!(oom.to_ollama_json(), json!({"error": "needs 9 GiB"}));
        let failed = a(AcquireError::LoadFailed {
            name: "m".into(),
            reason: "bad magic".into(),
        });
        assert_eq!(failed.status(), 500);
        let busy = a(AcquireError::Busy("waited".into())).into_response();
        assert_eq!(busy.status(), 503);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "2");
    }
}
