//! Micro-cache and request coalescing (placeholder).
