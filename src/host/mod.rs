//! The Lua runtime that hosts phases, rollback strategies, checks and policies.
