//! Circuit breaking (placeholder).
