//! TLS: rustls server configs (SNI certificate choice) and upstream client configs.
