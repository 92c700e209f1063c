//! The Concord server (being assembled; see ARCHITECTURE.md).
