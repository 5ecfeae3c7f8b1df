//! Watching the config file for changes (in-place edits, atomic renames, symlink swaps).
