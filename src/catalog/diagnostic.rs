//! Diagnostics: what authors see when a snippet or a platform file is wrong.
//!
//! Rendered like rustc/tsc (`error[parse]: message` + `--> file:line:col` + a code frame) for people, and as
//! JSON for tools. A diagnostic is a value: nothing in the catalog panics or aborts on bad input.

use serde::Serialize;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Suspicious but served (overlapping ranges, a connector excluded everywhere).
    Warning,
    /// The file or variant cannot be served as written.
    Error,
}

/// A position in a file, 1-based like editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

/// One problem found while loading or compiling the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable machine-readable kind, e.g. `parse`, `invalid-utf8`, `too-large`, `empty-range`.
    pub code: &'static str,
    /// The file concerned, as given to the loader (relative paths stay relative).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Where in the file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// What is wrong, in one sentence.
    pub message: String,
    /// The offending source line(s) with a caret under the position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<String>,
    /// A hint on how to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error about a whole file (no position).
    pub fn error(code: &'static str, file: impl Into<Option<PathBuf>>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            file: file.into(),
            position: None,
            message: message.into(),
            frame: None,
            help: None,
        }
    }

    /// A warning about a whole file (no position).
    pub fn warning(code: &'static str, file: impl Into<Option<PathBuf>>, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, file, message) }
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Points the diagnostic at `line:column` of `source` and attaches a code frame.
    pub fn at(mut self, source: &str, line: u32, column: u32) -> Self {
        self.position = Some(Position { line, column });
        self.frame = Some(code_frame(source, line, column));
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col` (or as much of it as is known).
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_deref().map(Path::display)?;
        Some(match self.position {
            Some(p) => format!("{file}:{}:{}", p.line, p.column),
            None => file.to_string(),
        })
    }
}

impl fmt::Display for Diagnostic {
    /// rustc-style rendering: header, location arrow, code frame, help.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{level}[{}]: {}", self.code, self.message)?;
        if let Some(loc) = self.location() {
            writeln!(f, "  --> {loc}")?;
        }
        if let Some(frame) = &self.frame {
            f.write_str(frame)?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "   = help: {help}")?;
        }
        Ok(())
    }
}

/// Renders the line before, the line itself and a caret under `column`, gutter-numbered like rustc.
pub fn code_frame(source: &str, line: u32, column: u32) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let idx = (line as usize).saturating_sub(1);
    let width = (line as usize + 1).to_string().len();
    let mut out = String::new();
    let _ = writeln!(out, "{:width$} |", "");
    let first = idx.saturating_sub(1);
    for (i, text) in lines.iter().enumerate().take(idx + 1).skip(first) {
        // Very long lines (minified input) are cut around the column so the frame stays readable.
        let text = clip_line(text, if i == idx { column as usize } else { 1 });
        let _ = writeln!(out, "{:>width$} | {}", i + 1, text.0);
        if i == idx {
            let pad: String = " ".repeat(text.1.saturating_sub(1));
            let _ = writeln!(out, "{:width$} | {pad}^", "");
        }
    }
    out
}

/// Returns at most ~120 characters of `line` around `column` and the column within the returned text.
fn clip_line(line: &str, column: usize) -> (String, usize) {
    const MAX: usize = 120;
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX {
        return (line.replace('\t', " "), column);
    }
    let start = column.saturating_sub(MAX / 2).min(chars.len().saturating_sub(MAX));
    let end = (start + MAX).min(chars.len());
    let mut text: String = chars[start..end].iter().collect::<String>().replace('\t', " ");
    let mut col = column - start;
    if start > 0 {
        text.insert(0, '…');
        col += 1;
    }
    if end < chars.len() {
        text.push('…');
    }
    (text, col)
}

/// Counts of a diagnostic list, for summaries and exit codes.
pub fn count(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    (errors, diagnostics.len() - errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let src = "let a = 1;\nlet b = ;\n";
        let d = Diagnostic::error("parse", Some(PathBuf::from("snippets/x.ts")), "Expression expected").at(src, 2, 9);
        let text = d.to_string();
        assert!(text.starts_with("error[parse]: Expression expected\n  --> snippets/x.ts:2:9\n"), "{text}");
        assert!(text.contains("1 | let a = 1;\n"), "{text}");
        assert!(text.contains("2 | let b = ;\n  |         ^\n"), "{text}");
    }

    #[test]
    fn clips_long_lines_around_the_column() {
        let line = "x".repeat(1000) + "@" + &"y".repeat(1000);
        let frame = code_frame(&line, 1, 1001);
        let caret_line = frame.lines().nth(2).unwrap();
        let text_line = frame.lines().nth(1).unwrap();
        let caret = caret_line.find('^').unwrap();
        assert_eq!(text_line.chars().nth(caret), Some('@'), "{frame}");
        assert!(frame.len() < 600);
    }
}
