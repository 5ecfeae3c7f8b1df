//! Rate limiting (placeholder).
