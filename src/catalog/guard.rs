//! The target guard: after every pass, one walk over the program about to be printed flags any syntax newer than
//! the variant's target (and module syntax in a script). A hit is a compile error, never a served script, so a
//! feature that no pass lowered — or that nothing can lower — cannot reach an engine that would fail to load it.
//!
//! It knows each construct's edition from ES2015 to ES2022 and the proposals TypeScript accepts (decorators,
//! `accessor`, `using`), which no target here runs natively.

use super::options::{ModuleFormat, Target};
use swc_core::common::{Span, Spanned};
use swc_core::ecma::ast::*;
use swc_core::ecma::visit::{Visit, VisitWith};

/// One construct the target cannot parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// What it is, for the diagnostic (`a BigInt literal`).
    pub feature: &'static str,
    /// The first target that has it (`EsNext` for proposals, and for module syntax in a script).
    pub since: Target,
    /// Where it is (dummy for code a pass wrote).
    pub span: Span,
}

/// What one walk over the parsed source finds: which optional passes must run, and what no pass can lower.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// A decorator.
    pub decorators: bool,
    /// An `accessor` field.
    pub auto_accessor: bool,
    /// A tagged template with an escape that is invalid before ES2018.
    pub invalid_template_escape: bool,
    /// A `using` declaration.
    pub using: bool,
    /// An async generator or a `for await` loop.
    pub async_iteration: bool,
    /// The first generator function: below ES2015 its objects are iterable only through `Symbol.iterator`.
    pub generator: Option<Span>,
    /// Regular-expression syntax newer than the target that no pass can lower (swc would only move it into a
    /// `RegExp` constructor string, which parses and then fails on the device).
    pub unlowerable: Vec<Hit>,
}

/// Surveys the parsed source for a compile to `target` (one walk: passes that have nothing to do are skipped).
pub fn survey(program: &Program, target: Target) -> Survey {
    struct Finder(Survey, Target);
    impl Visit for Finder {
        fn visit_decorator(&mut self, n: &Decorator) {
            self.0.decorators = true;
            n.visit_children_with(self);
        }
        fn visit_auto_accessor(&mut self, n: &AutoAccessor) {
            self.0.auto_accessor = true;
            n.visit_children_with(self);
        }
        fn visit_tagged_tpl(&mut self, n: &TaggedTpl) {
            self.0.invalid_template_escape |= n.tpl.quasis.iter().any(|q| q.cooked.is_none());
            n.visit_children_with(self);
        }
        fn visit_using_decl(&mut self, n: &UsingDecl) {
            self.0.using = true;
            n.visit_children_with(self);
        }
        fn visit_function(&mut self, n: &Function) {
            self.0.async_iteration |= n.is_async && n.is_generator;
            if n.is_generator && self.0.generator.is_none() {
                self.0.generator = Some(n.span);
            }
            n.visit_children_with(self);
        }
        fn visit_for_of_stmt(&mut self, n: &ForOfStmt) {
            self.0.async_iteration |= n.is_await;
            n.visit_children_with(self);
        }
        fn visit_regex(&mut self, n: &Regex) {
            for (since, feature, lowered) in regex_needs(&n.exp, &n.flags) {
                if !lowered && self.1 < since {
                    self.0.unlowerable.push(Hit { feature, since, span: n.span });
                }
            }
        }
    }
    let mut finder = Finder(Survey::default(), target);
    program.visit_with(&mut finder);
    finder.0
}

/// Every construct in `program` that `target` (with `module`) cannot parse, in source order.
pub fn check(program: &Program, target: Target, module: ModuleFormat) -> Vec<Hit> {
    let mut guard = Guard { target, module, hits: Vec::new(), function_depth: 0 };
    program.visit_with(&mut guard);
    guard.hits
}

struct Guard {
    target: Target,
    module: ModuleFormat,
    hits: Vec<Hit>,
    /// Functions entered: an `await` at depth 0 is a top-level await.
    function_depth: usize,
}

impl Guard {
    fn needs(&mut self, since: Target, feature: &'static str, span: Span) {
        if self.target < since {
            self.hits.push(Hit { feature, since, span });
        }
    }

    /// [`Guard::needs`] when the construct is there (`span` is `Some`).
    fn needs_at(&mut self, span: Option<Span>, since: Target, feature: &'static str) {
        if let Some(span) = span {
            self.needs(since, feature, span);
        }
    }

    fn in_function(&mut self, f: impl FnOnce(&mut Self)) {
        self.function_depth += 1;
        f(self);
        self.function_depth -= 1;
    }

    fn function_kind(&mut self, is_async: bool, is_generator: bool, span: Span) {
        match (is_async, is_generator) {
            (true, true) => self.needs(Target::Es2018, "an async generator", span),
            (true, false) => self.needs(Target::Es2017, "an async function", span),
            (false, true) => self.needs(Target::Es2015, "a generator function", span),
            (false, false) => {}
        }
    }
}

/// One thing a regular expression literal needs: the first edition with it, what it is, and whether swc lowers it
/// for older targets (named groups and the `s` flag are rewritten; the rest has no lowering).
type RegexNeed = (Target, &'static str, bool);

/// What a regular expression literal needs: its flags and the pattern syntax a scan can see.
fn regex_needs(exp: &str, flags: &str) -> Vec<RegexNeed> {
    let mut needs = Vec::new();
    for f in flags.chars() {
        match f {
            'u' | 'y' => needs.push((Target::Es2015, "a regular expression with the u or y flag", false)),
            's' => needs.push((Target::Es2018, "a regular expression with the s (dotAll) flag", true)),
            'd' => needs.push((Target::Es2022, "a regular expression with the d (indices) flag", false)),
            'v' => needs.push((Target::EsNext, "a regular expression with the v flag", false)),
            _ => {}
        }
    }
    let bytes = exp.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                if matches!(bytes.get(i + 1), Some(b'p' | b'P')) && flags.contains('u') {
                    needs.push((Target::Es2018, "a regular expression with a Unicode property escape", false));
                }
                i += 2;
                continue;
            }
            b'(' if exp[i..].starts_with("(?<=") || exp[i..].starts_with("(?<!") => {
                needs.push((Target::Es2018, "a regular expression with a lookbehind", false));
            }
            b'(' if exp[i..].starts_with("(?<") => {
                needs.push((Target::Es2018, "a regular expression with named groups", true));
            }
            _ => {}
        }
        i += 1;
    }
    needs
}

/// Visits of nodes that need an edition just by being there (their children are visited too).
macro_rules! needs_by_presence {
    ($($method:ident($ty:ty) => $since:ident, $feature:literal;)*) => {
        $(fn $method(&mut self, n: &$ty) {
            self.needs(Target::$since, $feature, n.span);
            n.visit_children_with(self);
        })*
    };
}

impl Visit for Guard {
    // A table (one construct per line; `duplicates` sees its rows as repeats, which is the point).
    needs_by_presence! {
        visit_class_prop(ClassProp) => Es2022, "a class field";
        visit_private_prop(PrivateProp) => Es2022, "a private class field";
        visit_private_method(PrivateMethod) => Es2022, "a private method";
        visit_static_block(StaticBlock) => Es2022, "a class static block";
        visit_auto_accessor(AutoAccessor) => EsNext, "an `accessor` field";
        visit_decorator(Decorator) => EsNext, "a decorator";
        visit_using_decl(UsingDecl) => EsNext, "a `using` declaration";
        visit_tpl(Tpl) => Es2015, "a template literal";
        visit_array_pat(ArrayPat) => Es2015, "a destructuring pattern";
        visit_rest_pat(RestPat) => Es2015, "a rest parameter or element";
        visit_assign_pat(AssignPat) => Es2015, "a default value in a pattern";
        visit_opt_chain_expr(OptChainExpr) => Es2020, "optional chaining (?.)";
    }

    fn visit_module_decl(&mut self, n: &ModuleDecl) {
        if self.module != ModuleFormat::Esm {
            self.hits.push(Hit { feature: "import/export in a script", since: Target::EsNext, span: n.span() });
        }
        n.visit_children_with(self);
    }

    fn visit_function(&mut self, n: &Function) {
        self.function_kind(n.is_async, n.is_generator, n.span);
        self.in_function(|g| n.visit_children_with(g));
    }

    fn visit_arrow_expr(&mut self, n: &ArrowExpr) {
        self.needs(Target::Es2015, "an arrow function", n.span);
        self.function_kind(n.is_async, n.is_generator, n.span);
        self.in_function(|g| n.visit_children_with(g));
    }

    fn visit_class(&mut self, n: &Class) {
        self.needs(Target::Es2015, "a class", n.span);
        // Field initialisers and static blocks are function bodies for `await`.
        self.in_function(|g| n.visit_children_with(g));
    }

    fn visit_var_decl(&mut self, n: &VarDecl) {
        if n.kind != VarDeclKind::Var {
            self.needs(Target::Es2015, "a let/const declaration", n.span);
        }
        n.visit_children_with(self);
    }

    fn visit_tagged_tpl(&mut self, n: &TaggedTpl) {
        self.needs(Target::Es2015, "a tagged template", n.span);
        if n.tpl.quasis.iter().any(|q| q.cooked.is_none()) {
            self.needs(Target::Es2018, "a tagged template with an invalid escape", n.span);
        }
        n.visit_children_with(self);
    }

    fn visit_object_pat(&mut self, n: &ObjectPat) {
        self.needs(Target::Es2015, "a destructuring pattern", n.span);
        if n.props.iter().any(|p| matches!(p, ObjectPatProp::Rest(_))) {
            self.needs(Target::Es2018, "an object rest pattern", n.span);
        }
        n.visit_children_with(self);
    }

    fn visit_expr_or_spread(&mut self, n: &ExprOrSpread) {
        self.needs_at(n.spread, Target::Es2015, "a spread argument or element");
        n.visit_children_with(self);
    }

    fn visit_prop_or_spread(&mut self, n: &PropOrSpread) {
        let spread = match n {
            PropOrSpread::Spread(s) => Some(s.dot3_token),
            PropOrSpread::Prop(_) => None,
        };
        self.needs_at(spread, Target::Es2018, "an object spread");
        n.visit_children_with(self);
    }

    fn visit_prop(&mut self, n: &Prop) {
        match n {
            Prop::Shorthand(i) => self.needs(Target::Es2015, "a shorthand property", i.span),
            Prop::Method(m) => self.needs(Target::Es2015, "a method shorthand", m.function.span),
            _ => {}
        }
        n.visit_children_with(self);
    }

    fn visit_prop_name(&mut self, n: &PropName) {
        let computed = match n {
            PropName::Computed(c) => Some(c.span),
            _ => None,
        };
        self.needs_at(computed, Target::Es2015, "a computed property name");
        n.visit_children_with(self);
    }

    fn visit_for_of_stmt(&mut self, n: &ForOfStmt) {
        self.needs(Target::Es2015, "a for-of loop", n.span);
        if n.is_await {
            self.needs(Target::Es2018, "a for-await loop", n.span);
        }
        n.visit_children_with(self);
    }

    fn visit_bin_expr(&mut self, n: &BinExpr) {
        match n.op {
            BinaryOp::Exp => self.needs(Target::Es2016, "the ** operator", n.span),
            BinaryOp::NullishCoalescing => self.needs(Target::Es2020, "the ?? operator", n.span),
            BinaryOp::In if n.left.is_private_name() => self.needs(Target::Es2022, "`#field in obj`", n.span),
            _ => {}
        }
        n.visit_children_with(self);
    }

    fn visit_assign_expr(&mut self, n: &AssignExpr) {
        match n.op {
            AssignOp::ExpAssign => self.needs(Target::Es2016, "the **= operator", n.span),
            AssignOp::AndAssign | AssignOp::OrAssign | AssignOp::NullishAssign => {
                self.needs(Target::Es2021, "a logical assignment (&&=, ||=, ??=)", n.span)
            }
            _ => {}
        }
        n.visit_children_with(self);
    }

    fn visit_await_expr(&mut self, n: &AwaitExpr) {
        if self.function_depth == 0 {
            if self.module != ModuleFormat::Esm {
                self.hits.push(Hit { feature: "a top-level await in a script", since: Target::EsNext, span: n.span });
            }
            self.needs(Target::Es2022, "a top-level await", n.span);
        } else {
            self.needs(Target::Es2017, "an await expression", n.span);
        }
        n.visit_children_with(self);
    }

    fn visit_catch_clause(&mut self, n: &CatchClause) {
        if n.param.is_none() {
            self.needs(Target::Es2019, "a catch without a binding", n.span);
        }
        n.visit_children_with(self);
    }

    fn visit_big_int(&mut self, n: &BigInt) {
        self.needs(Target::Es2020, "a BigInt literal", n.span);
    }

    fn visit_meta_prop_expr(&mut self, n: &MetaPropExpr) {
        match n.kind {
            MetaPropKind::NewTarget => self.needs(Target::Es2015, "new.target", n.span),
            MetaPropKind::ImportMeta => self.needs(Target::Es2020, "import.meta", n.span),
        }
    }

    fn visit_callee(&mut self, n: &Callee) {
        if let Callee::Import(i) = n {
            self.needs(Target::Es2020, "a dynamic import()", i.span);
        }
        n.visit_children_with(self);
    }

    fn visit_str(&mut self, n: &Str) {
        if n.raw.as_deref().is_some_and(|r| r.contains("\\u{")) {
            self.needs(Target::Es2015, "a \\u{…} escape", n.span);
        }
    }

    fn visit_regex(&mut self, n: &Regex) {
        for (since, feature, _) in regex_needs(&n.exp, &n.flags) {
            self.needs(since, feature, n.span);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_needs_by_edition() {
        let first =
            |exp: &str, flags: &str| regex_needs(exp, flags).into_iter().map(|n| (n.0, n.2)).collect::<Vec<_>>();
        assert_eq!(first("a+b", "gi"), []);
        assert_eq!(first("(?<y>\\d{4})", ""), [(Target::Es2018, true)]);
        assert_eq!(first("(?<=a)b", ""), [(Target::Es2018, false)]);
        assert_eq!(first("\\(?<x", ""), [], "an escaped paren is no group");
        assert_eq!(first("\\p{L}", "u"), [(Target::Es2015, false), (Target::Es2018, false)]);
        assert_eq!(first("x", "d"), [(Target::Es2022, false)]);
        assert_eq!(first("(?:a)", "s"), [(Target::Es2018, true)]);
    }
}
