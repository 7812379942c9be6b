//! In-process HTTP helpers shared by the server test files: build the router over a fake
//! engine and send one request through it, collecting the whole response.
#![allow(dead_code)]

use super::Fake;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use nao_server::{router, ServerConfig};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

/// A whole response.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// The router with default limits over `fake`.
pub fn app(fake: &Arc<Fake>) -> Router {
    router(fake.clone(), ServerConfig::default())
}

/// Sends `req` through `app` and reads the whole body.
pub async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}
