//! Floodgate load-test kit.
