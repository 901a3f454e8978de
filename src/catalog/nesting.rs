//! Guards against input nested deep enough to overflow the compiler's stack, checked before it recurses.
//!
//! swc's parser and passes recurse once per nesting level, so a hostile or generated file could exhaust even the
//! compile thread's large stack. The bracket scan runs before the parser; the tree walk runs after it, before any
//! pass does.

use swc_core::common::{Span, Spanned};
use swc_core::ecma::ast::{Expr, Program, Stmt, TsType};
use swc_core::ecma::visit::{Visit, VisitWith};

/// Deepest bracket or expression nesting accepted. Real connectors stay far below; the limit keeps the recursive
/// parser and passes within the compile thread's stack.
pub const MAX_NESTING: usize = 1000;

/// Where the parsed program first nests expressions, statements or types deeper than [`MAX_NESTING`].
pub(super) fn too_deep_node(program: &Program) -> Option<Span> {
    let mut depth = DepthGuard { depth: 0, too_deep: None };
    program.visit_with(&mut depth);
    depth.too_deep
}

/// Stops descending past [`MAX_NESTING`] levels, so that it cannot overflow itself.
struct DepthGuard {
    depth: usize,
    too_deep: Option<Span>,
}

impl DepthGuard {
    fn enter<N: Spanned + VisitWith<Self>>(&mut self, n: &N) {
        if self.too_deep.is_some() {
            return;
        }
        self.depth += 1;
        if self.depth > MAX_NESTING {
            self.too_deep = Some(n.span());
        } else {
            n.visit_children_with(self);
        }
        self.depth -= 1;
    }
}

impl Visit for DepthGuard {
    fn visit_expr(&mut self, n: &Expr) {
        self.enter(n);
    }
    fn visit_stmt(&mut self, n: &Stmt) {
        self.enter(n);
    }
    fn visit_ts_type(&mut self, n: &TsType) {
        self.enter(n);
    }
}

/// Where bracket nesting first exceeds [`MAX_NESTING`], skipping strings and comments. Runs before the parser,
/// which recurses per level.
pub(super) fn too_deep_brackets(source: &str) -> Option<(u32, u32)> {
    let bytes = source.as_bytes();
    // Cheap first: a file with few opening brackets cannot nest deeper than their count (vectorized count).
    if bytes.iter().filter(|b| matches!(b, b'(' | b'[' | b'{')).count() <= MAX_NESTING {
        return None;
    }
    let (mut depth, mut line, mut line_start, mut i) = (0usize, 1u32, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                line += 1;
                line_start = i + 1;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let col = source[line_start..i].chars().count() as u32 + 1;
                    return Some((line, col));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            q @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    if bytes[i] == b'\\' {
                        i += 1;
                    } else if bytes[i] == b'\n' {
                        line += 1;
                        line_start = i + 1;
                    }
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    if bytes[i] == b'\n' {
                        line += 1;
                        line_start = i + 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}
