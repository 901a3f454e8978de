//! Built-ins per target: which runtime globals a compiled script uses that its target's engines lack.
//!
//! Syntax is the guard's business; this is the other half. A script for ES5 may parse and still fail on load
//! because it (or a helper swc inlined) calls `new Map()` or `Promise.resolve()`. One walk over the program about
//! to be printed finds every unguarded use of a global or a static member newer than the target. A variant either
//! declares where each comes from (`provided` by the app's engine, or a `[[variant.polyfill]]` file that is then
//! prepended to the scripts that need it) or the connector is refused with a `builtin` diagnostic.
//!
//! Feature tests are not uses: `typeof X` and whatever it guards (`typeof Symbol !== "undefined" && o[Symbol.iterator]`,
//! the branch of a `?:` or an `if`), the left side of `||` (`Object.setPrototypeOf || function …`) and code inside a
//! `try` block. Methods on prototypes (`"a".padStart(…)`) cannot be told apart from an object's own methods without
//! types and are not reported: a variant that needs them lists a polyfill with `always = true`.

use super::diagnostic::Diagnostic;
use super::options::Target;
use std::collections::HashSet;
use std::sync::OnceLock;
use swc_core::common::Span;
use swc_core::ecma::ast::*;
use swc_core::ecma::visit::{Visit, VisitWith};

/// Globals and static members by the edition that introduced them (the same table the conformance suite strips
/// from its run contexts, `tests/interop/conformance.js`).
const EDITIONS: [(Target, &[&str]); 5] = [
    (
        Target::Es2015,
        &[
            "Symbol",
            "Map",
            "Set",
            "WeakMap",
            "WeakSet",
            "Promise",
            "Proxy",
            "Reflect",
            "Object.assign",
            "Object.setPrototypeOf",
            "Object.getOwnPropertySymbols",
            "Object.is",
            "Array.from",
            "Array.of",
            "String.raw",
            "String.fromCodePoint",
            "Number.isNaN",
            "Number.isFinite",
            "Number.isInteger",
            "Number.isSafeInteger",
            "Number.parseFloat",
            "Number.parseInt",
            "Number.EPSILON",
            "Number.MAX_SAFE_INTEGER",
            "Number.MIN_SAFE_INTEGER",
            "Math.trunc",
            "Math.sign",
            "Math.cbrt",
            "Math.log2",
            "Math.log10",
            "Math.hypot",
            "Math.imul",
            "Math.fround",
            "Math.clz32",
            "Math.expm1",
            "Math.log1p",
            "Math.sinh",
            "Math.cosh",
            "Math.tanh",
            "Math.asinh",
            "Math.acosh",
            "Math.atanh",
        ],
    ),
    (
        Target::Es2017,
        &["Object.entries", "Object.values", "Object.getOwnPropertyDescriptors", "SharedArrayBuffer", "Atomics"],
    ),
    (Target::Es2019, &["Object.fromEntries"]),
    (Target::Es2020, &["BigInt", "BigInt64Array", "BigUint64Array", "globalThis", "Promise.allSettled"]),
    (Target::Es2021, &["Promise.any", "AggregateError", "WeakRef", "FinalizationRegistry"]),
];

/// The edition that introduced `name` (a global such as `Map` or a static member such as `Object.entries`).
pub fn since(name: &str) -> Option<Target> {
    EDITIONS.iter().find(|(_, names)| names.contains(&name)).map(|(t, _)| *t)
}

/// Is `name` a built-in this module knows (for validating a variant's `provided` list)?
pub fn is_known(name: &str) -> bool {
    since(name).is_some()
}

/// One built-in a script uses that its target lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// `Map`, `Object.entries`.
    pub builtin: &'static str,
    /// The edition that has it.
    pub since: Target,
    /// The first use (dummy when only a helper swc wrote uses it).
    pub span: Span,
}

/// Every built-in newer than `target` that `program` uses outside a feature test, each once, in order of first use.
pub fn scan(program: &Program, target: Target) -> Vec<Need> {
    if EDITIONS.iter().all(|(since, _)| target >= *since) {
        return Vec::new(); // nothing in the table is newer than the target: no walk at all
    }
    // One walk: uses and declarations together; a use whose root the program declares anywhere is dropped after.
    let mut finder =
        Finder { target, declared: Declared::default(), guarded: Vec::new(), in_try: 0, found: Vec::new() };
    program.visit_with(&mut finder);
    let declared = finder.declared.0;
    finder.found.retain(|n| !declared.contains(n.builtin.split('.').next().unwrap_or(n.builtin)));
    finder.found
}

/// Every built-in root name (`Map`, `Object`) the program binds anywhere: a global shadowed somewhere is not
/// reported (conservative: never a false refusal for code that declares its own `Map`). Other names are not kept,
/// so the walk allocates nothing for ordinary code.
#[derive(Default)]
struct Declared(HashSet<String>);

impl Declared {
    fn insert(&mut self, name: &str) {
        if is_root(name) {
            self.0.insert(name.to_string());
        }
    }
}

/// Is `name` a global this module knows, or the object of a static member it knows (`Object` of `Object.entries`)?
fn is_root(name: &str) -> bool {
    // Every root is capitalised but `globalThis`: most identifiers leave here without hashing.
    if !name.as_bytes().first().is_some_and(u8::is_ascii_uppercase) && name != "globalThis" {
        return false;
    }
    static ROOTS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        EDITIONS.iter().flat_map(|(_, names)| names.iter()).filter_map(|n| n.split('.').next()).collect()
    });
    roots.contains(name)
}

struct Finder {
    target: Target,
    declared: Declared,
    /// Globals a surrounding `typeof` test guards.
    guarded: Vec<String>,
    in_try: usize,
    found: Vec<Need>,
}

impl Finder {
    fn record(&mut self, name: &str, span: Span) {
        if self.in_try > 0 || !is_root(name.split('.').next().unwrap_or(name)) {
            return;
        }
        let root = name.split('.').next().unwrap_or(name);
        if self.guarded.iter().any(|g| g == root || g == name) {
            return;
        }
        let Some((since, builtin)) =
            EDITIONS.iter().find_map(|(t, names)| names.iter().find(|n| **n == name).map(|n| (*t, *n)))
        else {
            return;
        };
        if since == Target::Es2015 && self.guarded.iter().any(|g| g == ES2015_PRESENT) {
            return;
        }
        if self.target < since && !self.found.iter().any(|n| n.builtin == builtin) {
            self.found.push(Need { builtin, since, span });
        }
    }

    /// Visits `node` with the globals that `test` feature-tests counted as guarded.
    fn guarded_by<N: VisitWith<Self>>(&mut self, test: &Expr, node: &N) {
        let depth = self.guarded.len();
        tested(test, &mut self.guarded);
        node.visit_with(self);
        self.guarded.truncate(depth);
    }
}

/// Stands for "every ES2015 built-in" in a guard list.
const ES2015_PRESENT: &str = "*es2015";

/// What a test feature-tests, as names [`Finder::record`] then skips (pushed onto `out`):
/// - `typeof X`, `typeof X.y` and a bare `X.y` tested for truth (`Object.setPrototypeOf ? … : …`);
/// - a call to a feature-test function named after the built-in (`_is_native_reflect_construct()` tests `Reflect`);
/// - `"@@iterator"` or the name of an ES2015 class compared with (`n === "Map"`): the branch only runs where the
///   iteration protocol exists, so it stands for every ES2015 built-in ([`ES2015_PRESENT`]).
///
/// The test is taken apart only through `!`, `&&`, `||`, comparisons and parentheses, so that a use inside the
/// test (`if (Object.entries(o).length)`) stays a use.
fn tested(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Paren(p) => tested(&p.expr, out),
        Expr::Unary(u) if u.op == UnaryOp::TypeOf => out.extend(dotted(&u.arg)),
        Expr::Unary(u) if u.op == UnaryOp::Bang => tested(&u.arg, out),
        Expr::Bin(b)
            if matches!(
                b.op,
                BinaryOp::LogicalAnd
                    | BinaryOp::LogicalOr
                    | BinaryOp::EqEq
                    | BinaryOp::NotEq
                    | BinaryOp::EqEqEq
                    | BinaryOp::NotEqEq
            ) =>
        {
            tested(&b.left, out);
            tested(&b.right, out);
        }
        Expr::Member(m) => {
            out.extend(dotted(e));
            if let MemberProp::Computed(c) = &m.prop {
                tested(&c.expr, out);
            }
        }
        Expr::Call(c) => {
            if let Some(f) = c.callee.as_expr().and_then(|c| c.as_ident()) {
                let f = f.sym.to_lowercase().replace('_', "");
                let globals = EDITIONS.iter().flat_map(|(_, n)| n.iter()).filter(|n| !n.contains('.'));
                out.extend(globals.filter(|g| f.contains(&g.to_lowercase())).map(|g| g.to_string()));
            }
        }
        Expr::Lit(Lit::Str(s)) => {
            let v = s.value.to_string_lossy();
            if v == "@@iterator" || since(&v) == Some(Target::Es2015) {
                out.push(ES2015_PRESENT.to_string());
            }
        }
        _ => {}
    }
}

/// `X` or `X.y` as text.
fn dotted(e: &Expr) -> Option<String> {
    match e {
        Expr::Ident(i) => Some(i.sym.to_string()),
        Expr::Member(m) => match (&*m.obj, &m.prop) {
            (Expr::Ident(o), MemberProp::Ident(p)) => Some(format!("{}.{}", o.sym, p.sym)),
            _ => None,
        },
        Expr::Paren(p) => dotted(&p.expr),
        _ => None,
    }
}

impl Visit for Finder {
    fn visit_expr(&mut self, e: &Expr) {
        match e {
            Expr::Ident(i) => self.record(&i.sym, i.span),
            Expr::Member(m) => match (&*m.obj, &m.prop) {
                (Expr::Ident(o), MemberProp::Ident(p)) if is_root(&o.sym) => {
                    let name = format!("{}.{}", o.sym, p.sym);
                    if since(&name).is_some() {
                        self.record(&name, m.span);
                    } else {
                        self.record(&o.sym, o.span);
                    }
                }
                (Expr::Ident(_), MemberProp::Ident(_)) => {}
                _ => m.visit_children_with(self),
            },
            Expr::Unary(u) if u.op == UnaryOp::TypeOf => {} // a feature test, not a use
            Expr::Bin(b) if b.op == BinaryOp::LogicalAnd => {
                self.guarded_by(&b.left, &b.left);
                self.guarded_by(&b.left, &b.right);
            }
            // `A && B || C`: C runs where A or B failed, so what A tests is not known there; only B's own
            // reach counts (as above).
            Expr::Bin(b) if b.op == BinaryOp::LogicalOr && dotted(&b.left).is_some() => b.right.visit_with(self),
            Expr::Cond(c) => {
                self.guarded_by(&c.test, &c.test);
                self.guarded_by(&c.test, &c.cons);
                self.guarded_by(&c.test, &c.alt);
            }
            _ => e.visit_children_with(self),
        }
    }
    fn visit_if_stmt(&mut self, s: &IfStmt) {
        self.guarded_by(&s.test, &s.test);
        self.guarded_by(&s.test, &s.cons);
        if let Some(alt) = &s.alt {
            self.guarded_by(&s.test, alt);
        }
    }
    fn visit_binding_ident(&mut self, n: &BindingIdent) {
        self.declared.insert(&n.id.sym);
    }
    fn visit_fn_decl(&mut self, n: &FnDecl) {
        self.declared.insert(&n.ident.sym);
        n.visit_children_with(self);
    }
    fn visit_class_decl(&mut self, n: &ClassDecl) {
        self.declared.insert(&n.ident.sym);
        n.visit_children_with(self);
    }
    fn visit_fn_expr(&mut self, n: &FnExpr) {
        if let Some(i) = &n.ident {
            self.declared.insert(&i.sym);
        }
        n.visit_children_with(self);
    }
    fn visit_class_expr(&mut self, n: &ClassExpr) {
        if let Some(i) = &n.ident {
            self.declared.insert(&i.sym);
        }
        n.visit_children_with(self);
    }
    fn visit_import_named_specifier(&mut self, n: &ImportNamedSpecifier) {
        self.declared.insert(&n.local.sym);
    }
    fn visit_import_default_specifier(&mut self, n: &ImportDefaultSpecifier) {
        self.declared.insert(&n.local.sym);
    }
    fn visit_import_star_as_specifier(&mut self, n: &ImportStarAsSpecifier) {
        self.declared.insert(&n.local.sym);
    }
    fn visit_try_stmt(&mut self, s: &TryStmt) {
        self.in_try += 1;
        s.block.visit_with(self);
        self.in_try -= 1;
        s.handler.visit_with(self);
        s.finalizer.visit_with(self);
    }
}

/// A [`Need`] located in the source, as compiled outputs carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// `Map`, `Object.entries`.
    pub builtin: &'static str,
    /// The edition that has it.
    pub since: Target,
    /// Where: an error diagnostic at the first use in the author's source (with its code frame), or on the file
    /// when only a helper swc inlined uses it. The catalog fills in the message once it knows the variant.
    pub site: Diagnostic,
}

#[cfg(test)]
mod tests {
    use super::*;
    use swc_core::common::{sync::Lrc, FileName, SourceMap};
    use swc_core::ecma::parser::{parse_file_as_program, Syntax};

    fn needs(code: &str, target: Target) -> Vec<&'static str> {
        let cm: Lrc<SourceMap> = Default::default();
        let fm = cm.new_source_file(Lrc::new(FileName::Anon), code.to_string());
        let program = parse_file_as_program(&fm, Syntax::Es(Default::default()), EsVersion::EsNext, None, &mut vec![])
            .expect("parses");
        scan(&program, target).into_iter().map(|n| n.builtin).collect()
    }

    #[test]
    fn finds_globals_and_static_members_newer_than_the_target() {
        let code = "var m = new Map(); var e = Object.entries(o); var k = Object.keys(o); Promise.resolve(1);";
        assert_eq!(needs(code, Target::Es5), ["Map", "Object.entries", "Promise"]);
        assert_eq!(needs(code, Target::Es2015), ["Object.entries"]);
        assert!(needs(code, Target::Es2017).is_empty());
    }

    #[test]
    fn feature_tests_are_not_uses() {
        let guarded = "var it = typeof Symbol !== 'undefined' && o[Symbol.iterator];\n\
            var s = Object.setPrototypeOf || function (o, p) { o.__proto__ = p; return o; };\n\
            if (typeof Object.getOwnPropertySymbols === 'function') Object.getOwnPropertySymbols(x);\n\
            var r = typeof Reflect === 'undefined' ? null : Reflect.construct;\n\
            try { Reflect.construct(Boolean, [], function () {}); } catch (e) {}\n\
            var g = Object.setPrototypeOf ? Object.getPrototypeOf : null;\n\
            var c = _is_native_reflect_construct() ? Reflect.construct(D, a) : D.apply(t, a);\n\
            if (n === 'Map' || n === 'Set') Array.from(o);\n\
            if (typeof Symbol !== 'undefined' && i[Symbol.iterator] != null || i['@@iterator'] != null) Array.from(i);";
        assert!(needs(guarded, Target::Es5).is_empty(), "{:?}", needs(guarded, Target::Es5));
        assert_eq!(needs("var it = o[Symbol.iterator]();", Target::Es5), ["Symbol"]);
    }

    #[test]
    fn a_name_the_program_declares_is_its_own() {
        assert!(needs("function Map() {} var m = new Map();", Target::Es5).is_empty());
        assert!(needs("var Promise = require('p'); Promise.resolve();", Target::Es5).is_empty());
    }
}
