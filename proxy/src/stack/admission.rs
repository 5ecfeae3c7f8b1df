//! Adaptive admission (placeholder).
