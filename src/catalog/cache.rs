//! The compile cache carried from one build to the next: compiled outputs keyed by file, content and options.
//!
//! Keying on the content hash (not the modification time) makes a reload after an editor's no-op save free, and
//! keying on the options lets variants with equal options share one compile.

use super::diagnostic::Diagnostic;
use super::platforms::CompileOptions;
use super::transpile;
use std::collections::HashMap;
use std::sync::Arc;

/// One compile job: which file, compiled as which connector, with which options, at which content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct CacheKey {
    /// The snippet's path relative to the snippets directory.
    pub(super) rel: String,
    /// The connector it is compiled as (an override file can serve several connectors, and the iife wrapper
    /// names the connector, so the name is part of the output).
    pub(super) connector: String,
    /// What the file is compiled to.
    pub(super) options: CompileOptions,
    /// SHA-256 of the file's text: an edit makes a new key, so a stale output is never served.
    pub(super) source_sha: [u8; 32],
}

/// What one job produced: shared, because every variant with the same options ships the same output.
pub(super) type CompileResult = Arc<Result<transpile::Output, Vec<Diagnostic>>>;

/// Compiled outputs of earlier builds, keyed by file, content hash and options.
#[derive(Debug, Default)]
pub struct CompileCache {
    pub(super) entries: HashMap<CacheKey, CompileResult>,
}
