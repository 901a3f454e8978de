//! Where in the author's file: swc spans turned into diagnostics, and the error for syntax a target cannot run.

use crate::catalog::diagnostic::Diagnostic;
use crate::catalog::guard::Hit;
use crate::catalog::platforms::{CompileOptions, Target};
use std::path::Path;
use swc_core::common::sync::Lrc;
use swc_core::common::{SourceMap, Span};

/// The error for syntax the target cannot parse: what, where, the target, and what to do.
pub(super) fn target_diagnostic(locate: &Locate<'_>, hit: &Hit, options: CompileOptions) -> Diagnostic {
    let (target, module) = (options.target.name(), options.module.name());
    let help = if hit.feature.contains("script") {
        "use a variant with target es2022 or later and module = \"esm\", or move it into a function".to_string()
    } else if hit.since == Target::EsNext {
        "no engine target supports it yet: remove it".to_string()
    } else {
        format!("raise the variant's target to {} or remove it", hit.since.name())
    };
    let since = if hit.since == Target::EsNext { "proposal or module" } else { hit.since.name() };
    let msg =
        format!("{} is {since} syntax, which a variant with target {target} (module {module}) cannot run", hit.feature);
    locate.diagnostic("target", msg, Some(hit.span), true).with_help(help)
}

/// Turns swc spans into diagnostics on the job's file.
pub(super) struct Locate<'a> {
    pub(super) cm: &'a Lrc<SourceMap>,
    pub(super) path: &'a Path,
    pub(super) source: &'a str,
}

impl Locate<'_> {
    /// An error or warning, pointed at `span` unless the span is a placeholder.
    pub(super) fn diagnostic(&self, code: &'static str, msg: String, span: Option<Span>, error: bool) -> Diagnostic {
        let mut d = if error {
            Diagnostic::error(code, self.path.to_path_buf(), msg)
        } else {
            Diagnostic::warning(code, self.path.to_path_buf(), msg)
        };
        if let Some((line, col)) = span.and_then(|s| self.line_col(s)) {
            d = d.at(self.source, line, col);
        }
        d
    }

    /// 1-based line and column of a span in the job's file; `None` for code a pass wrote.
    fn line_col(&self, span: Span) -> Option<(u32, u32)> {
        if span.is_dummy() {
            return None;
        }
        let loc = self.cm.lookup_char_pos(span.lo);
        Some((loc.line as u32, loc.col.0 as u32 + 1))
    }
}
