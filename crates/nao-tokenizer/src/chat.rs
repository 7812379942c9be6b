//! Chat templates (minijinja, sandboxed).
