//! TypeScript → JavaScript for one source and one set of compile options, with swc, in-process.
//!
//! Pure: text in, code (+ source map) or diagnostics out. Pass order follows swc's own pipeline: parse →
//! resolver → strip TypeScript → downlevel (one compat pass per ES edition above the target) → module format →
//! inline helpers → minify → hygiene + fixer → emit. Every compile runs on a thread with a large stack and under
//! `catch_unwind`, after cheap guards against input that would otherwise recurse without bound: no source can take
//! the process down. The guards live in `nesting.rs`; printing, source maps and the iife wrapper in `emit.rs`.

use super::builtins;
use super::diagnostic::Diagnostic;
use super::emit::{emit, package};
use super::guard::{self, Survey};
use super::nesting::{too_deep_brackets, too_deep_node};
use super::platforms::{CompileOptions, ModuleFormat, Target};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use swc_core::common::comments::SingleThreadedComments;
use swc_core::common::errors::{DiagnosticBuilder, Emitter, Handler, Level, HANDLER};
use swc_core::common::sync::Lrc;
use swc_core::common::{FileName, Globals, Mark, SourceFile, SourceMap, Span, Spanned, GLOBALS};
use swc_core::ecma::ast::{EsVersion, ModuleItem, Program};
use swc_core::ecma::minifier::option::{CompressOptions, ExtraOptions, MangleOptions, MinifyOptions};
use swc_core::ecma::parser::{parse_file_as_program, parse_file_as_script, Syntax, TsSyntax};
use swc_core::ecma::transforms::base::fixer::fixer;
use swc_core::ecma::transforms::base::helpers::{inject_helpers, Helpers, HELPERS};
use swc_core::ecma::transforms::base::hygiene::hygiene;
use swc_core::ecma::transforms::base::resolver;
use swc_core::ecma::transforms::compat;
use swc_core::ecma::transforms::module::common_js::{common_js, FeatureFlag};
use swc_core::ecma::transforms::proposal::decorator_2023_11::decorator_2023_11;
use swc_core::ecma::transforms::proposal::decorators::{self, decorators};
use swc_core::ecma::transforms::proposal::explicit_resource_management::explicit_resource_management;
use swc_core::ecma::transforms::typescript;

pub use super::nesting::MAX_NESTING;
mod locate;
use locate::{target_diagnostic, Locate};

/// Stack of each compile thread. Reserved, not committed: only the pages a deep file touches are used.
const COMPILE_STACK: usize = 256 << 20;

pub use super::emit::Output;

/// One unit of compile work: a source file, the connector name it serves as, and the options.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Path shown in diagnostics.
    pub path: &'a Path,
    /// The file's name in source maps: its path relative to the snippets directory, so that a build does not
    /// depend on where the catalog lies (instances of a group must compute the same revisions) and phones do not
    /// learn server paths.
    pub map_source: &'a str,
    /// Source text.
    pub source: &'a str,
    /// Connector name (used by the iife wrapper).
    pub connector: &'a str,
    /// Compile options.
    pub options: CompileOptions,
}

/// The thread pool compiles run on: all cores, large stacks.
pub fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("compile-{i}"))
            .stack_size(COMPILE_STACK)
            .build()
            .unwrap_or_else(|_| {
                // Thread creation can only fail when the OS refuses threads; fall back to the defaults.
                rayon::ThreadPoolBuilder::new().build().expect("cannot create any compile thread")
            })
    })
}

/// Compiles one job on the compile pool. Never panics.
pub fn transpile(job: &Job<'_>) -> Result<Output, Vec<Diagnostic>> {
    pool().install(|| {
        catch_unwind(AssertUnwindSafe(|| transpile_here(job))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(vec![Diagnostic::error(
                "internal",
                job.path.to_path_buf(),
                format!("the compiler failed on this file ({what}); this is a bug in swc or connector-scripts"),
            )])
        })
    })
}

fn es_version(t: Target) -> EsVersion {
    match t {
        Target::Es5 => EsVersion::Es5,
        Target::Es2015 => EsVersion::Es2015,
        Target::Es2016 => EsVersion::Es2016,
        Target::Es2017 => EsVersion::Es2017,
        Target::Es2018 => EsVersion::Es2018,
        Target::Es2019 => EsVersion::Es2019,
        Target::Es2020 => EsVersion::Es2020,
        Target::Es2021 => EsVersion::Es2021,
        Target::Es2022 => EsVersion::Es2022,
        Target::EsNext => EsVersion::EsNext,
    }
}

/// Collects swc's diagnostics (from transforms) instead of printing them.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Collected>>>);

/// Message, primary span, is-error.
type Collected = (String, Option<Span>, bool);

impl Emitter for Collector {
    fn emit(&mut self, db: &mut DiagnosticBuilder<'_>) {
        let is_error = matches!(db.level, Level::Bug | Level::Fatal | Level::PhaseFatal | Level::Error);
        if let Ok(mut v) = self.0.lock() {
            v.push((db.message(), db.span.primary_span(), is_error));
        }
    }
}

fn transpile_here(job: &Job<'_>) -> Result<Output, Vec<Diagnostic>> {
    let path = job.path;
    let source = job.source;
    if let Some((line, col)) = too_deep_brackets(source) {
        return Err(vec![Diagnostic::error(
            "too-deep",
            path.to_path_buf(),
            format!("brackets nested more than {MAX_NESTING} levels deep"),
        )
        .at(source, line, col)
        .with_help("split the expression; no real connector nests this deep")]);
    }
    let cm: Lrc<SourceMap> = Default::default();
    let fm = cm.new_source_file(Lrc::new(FileName::Real(path.to_path_buf())), source.to_string());
    let locate = Locate { cm: &cm, path, source };
    let comments = SingleThreadedComments::default();
    let program = parse(&fm, &comments, &locate)?;
    let survey = guard::survey(&program, job.options.target);
    if !survey.unlowerable.is_empty() {
        return Err(survey.unlowerable.iter().map(|h| target_diagnostic(&locate, h, job.options)).collect());
    }

    let collector = Collector::default();
    let handler = Handler::with_emitter(true, false, Box::new(collector.clone()));
    let options = job.options;
    let target = es_version(options.target);
    let emitted = GLOBALS.set(&Globals::new(), || {
        HELPERS.set(&Helpers::new(false), || {
            HANDLER.set(&handler, || {
                let (program, needs) = transform(program, &survey, (&cm, &comments), options);
                // Nothing the target cannot parse is ever printed, let alone served.
                let hits = guard::check(&program, options.target, options.module);
                if !hits.is_empty() {
                    return Err(hits);
                }
                Ok((emit(&cm, &program, (!options.minify).then_some(&comments), target, options), needs))
            })
        })
    });
    let transform_diags: Vec<Diagnostic> = collector
        .0
        .lock()
        .map(|v| v.iter().map(|(m, s, e)| locate.diagnostic("transform", m.clone(), *s, *e)).collect())
        .unwrap_or_default();
    if transform_diags.iter().any(Diagnostic::is_error) {
        return Err(transform_diags);
    }
    let (emitted, needs) =
        emitted.map_err(|hits| hits.iter().map(|h| target_diagnostic(&locate, h, options)).collect::<Vec<_>>())?;
    let (code, mappings) = emitted.map_err(|e| vec![Diagnostic::error("emit", path.to_path_buf(), e.to_string())])?;
    let mut output = package(&cm, code, mappings, (path, job.map_source), options.module, job.connector)?;
    output.builtins = needs
        .into_iter()
        .map(|n| builtins::Use {
            builtin: n.builtin,
            since: n.since,
            site: locate.diagnostic("builtin", String::new(), Some(n.span), true),
        })
        .collect();
    Ok(output)
}

/// Parses the TypeScript and refuses what the passes must not see: any parse error, even one the parser recovered
/// from (the output would not be what the author wrote), and nesting deep enough to overflow a recursive pass.
fn parse(fm: &SourceFile, comments: &SingleThreadedComments, locate: &Locate<'_>) -> Result<Program, Vec<Diagnostic>> {
    let syntax = Syntax::Typescript(TsSyntax { decorators: true, ..Default::default() });
    let mut recovered = Vec::new();
    let parsed = parse_file_as_program(fm, syntax, EsVersion::EsNext, Some(comments), &mut recovered);
    let mut diags: Vec<Diagnostic> = recovered
        .iter()
        .map(|e| locate.diagnostic("parse", e.kind().msg().to_string(), Some(e.span()), true))
        .collect();
    let program = match parsed {
        Ok(p) => p,
        Err(e) => {
            diags.push(locate.diagnostic("parse", e.kind().msg().to_string(), Some(e.span()), true));
            return Err(diags);
        }
    };
    if !diags.is_empty() {
        return Err(diags);
    }
    if let Some(span) = too_deep_node(&program) {
        return Err(vec![locate.diagnostic(
            "too-deep",
            format!("expression or statement nested more than {MAX_NESTING} levels deep"),
            Some(span),
            true,
        )]);
    }
    Ok(program)
}

/// The pass pipeline, in swc's order. Runs inside the `GLOBALS`, `HELPERS` and `HANDLER` scopes the passes expect.
/// Also returns the built-ins the program needs, scanned before the minifier renames the helpers' feature tests.
fn transform(
    program: Program,
    survey: &Survey,
    (cm, comments): (&Lrc<SourceMap>, &SingleThreadedComments),
    options: CompileOptions,
) -> (Program, Vec<builtins::Need>) {
    let unresolved = Mark::new();
    let top_level = Mark::new();
    let mut program = without_hashbang(program);
    if options.target < Target::EsNext && survey.using {
        program = with_dispose_symbols(program, cm);
    }
    program = program.apply(resolver(unresolved, top_level, true));
    if survey.decorators {
        // TypeScript's experimentalDecorators semantics (what NestJS-style code expects), while the types are there.
        let legacy = decorators::Config { legacy: true, emit_metadata: false, use_define_for_class_fields: false };
        program = program.apply(decorators(legacy));
    }
    program = program.apply(typescript::typescript(typescript::Config::default(), unresolved, top_level));
    program = proposals(program, survey, options.target);
    program = downlevel(program, survey, options.target, (unresolved, comments));
    if options.module != ModuleFormat::Esm {
        let features = FeatureFlag {
            support_block_scoping: options.target >= Target::Es2015,
            support_arrow: options.target >= Target::Es2015,
        };
        program = program.apply(common_js(Default::default(), unresolved, Default::default(), features));
    }
    program = program.apply(inject_helpers(unresolved));
    let mut needs = builtins::scan(&program, options.target);
    if let Some(span) = survey.generator.filter(|_| options.target < Target::Es2015) {
        if !needs.iter().any(|n| n.builtin == "Symbol") {
            needs.push(builtins::Need { builtin: "Symbol", since: Target::Es2015, span });
        }
    }
    if options.minify {
        program = minify(program, cm, comments, es_version(options.target), unresolved, top_level);
    }
    (program.apply((hygiene(), fixer(Some(comments)))), needs)
}

/// A hashbang is legal only as the first line of a file an engine loads directly: connectors are loaded by the
/// app (and iife output wraps them), so it goes.
fn without_hashbang(mut program: Program) -> Program {
    match &mut program {
        Program::Module(m) => m.shebang = None,
        Program::Script(s) => s.shebang = None,
    }
    program
}

/// What lowered `using` declarations look up, defined where the engine lacks them (every engine a target below
/// esnext describes): the minimal polyfill TypeScript's documentation gives for `using`, by usage only.
const DISPOSE_SYMBOLS: &str = "if (typeof Symbol === \"function\") {\n\
    if (!Symbol.dispose) Symbol.dispose = Symbol.for(\"Symbol.dispose\");\n\
    if (!Symbol.asyncDispose) Symbol.asyncDispose = Symbol.for(\"Symbol.asyncDispose\");\n}\n";

/// Puts [`DISPOSE_SYMBOLS`] first in the program.
fn with_dispose_symbols(mut program: Program, cm: &Lrc<SourceMap>) -> Program {
    let fm = cm.new_source_file(Lrc::new(FileName::Custom("dispose-symbols".into())), DISPOSE_SYMBOLS.to_string());
    let mut errors = Vec::new();
    let Ok(prelude) = parse_file_as_script(&fm, Syntax::Es(Default::default()), EsVersion::Es5, None, &mut errors)
    else {
        return program; // a constant that parses; the guard would still refuse what needs it
    };
    match &mut program {
        Program::Module(m) => m.body.splice(0..0, prelude.body.into_iter().map(ModuleItem::Stmt)).for_each(drop),
        Program::Script(s) => s.body.splice(0..0, prelude.body).for_each(drop),
    }
    program
}

/// Lowers the proposals TypeScript accepts that no target below esnext runs: `using` declarations and `accessor`
/// fields (decorators are lowered before the types are stripped).
fn proposals(mut p: Program, survey: &Survey, target: Target) -> Program {
    if target >= Target::EsNext {
        return p;
    }
    if survey.using {
        p = p.apply(explicit_resource_management());
    }
    if survey.auto_accessor {
        p = p.apply(decorator_2023_11());
    }
    p
}

/// Applies one compat pass per ES edition newer than the target, newest first (swc's own order). Two passes reach
/// further than their edition: async generators (ES2018) are lowered by the ES2017 pass, and a tagged template with
/// an invalid escape (legal from ES2018) by the ES2015 template pass.
fn downlevel(
    mut p: Program,
    survey: &Survey,
    target: Target,
    (unresolved, comments): (Mark, &SingleThreadedComments),
) -> Program {
    if target < Target::EsNext && target < Target::Es2022 {
        let mut cfg = compat::es2022::Config::default();
        cfg.class_properties.private_as_properties = target < Target::Es2015;
        p = p.apply(compat::es2022::es2022(cfg, unresolved));
    }
    if target < Target::Es2021 {
        p = p.apply(compat::es2021::es2021());
    }
    if target < Target::Es2020 {
        p = p.apply(compat::es2020::es2020(Default::default(), unresolved));
    }
    if target < Target::Es2019 {
        p = p.apply(compat::es2019::es2019());
    }
    if target < Target::Es2018 {
        p = p.apply(compat::es2018::es2018(Default::default()));
    }
    // Only where needed for es2017: the pass lowers every async function along with the async generators.
    if target < Target::Es2017 || (target < Target::Es2018 && survey.async_iteration) {
        p = p.apply(compat::es2017::es2017(Default::default(), unresolved));
    }
    if (Target::Es2015..Target::Es2018).contains(&target) && survey.invalid_template_escape {
        p = p.apply(compat::es2015::template_literal::template_literal(Default::default()));
    }
    if target < Target::Es2016 {
        p = p.apply(compat::es2016::es2016());
    }
    if target < Target::Es2015 {
        let mut cfg = compat::es2015::Config { typescript: true, ..Default::default() };
        cfg.for_of.loose = true;
        p = p.apply(compat::es2015::es2015(unresolved, Some(comments.clone()), cfg));
    }
    p
}

fn minify(
    program: Program,
    cm: &Lrc<SourceMap>,
    comments: &SingleThreadedComments,
    target: EsVersion,
    unresolved_mark: Mark,
    top_level_mark: Mark,
) -> Program {
    let options = MinifyOptions {
        compress: Some(CompressOptions { ecma: target, ..Default::default() }),
        mangle: Some(MangleOptions::default()),
        ..Default::default()
    };
    let extra = ExtraOptions { unresolved_mark, top_level_mark, mangle_name_cache: None };
    swc_core::ecma::minifier::optimize(program, cm.clone(), Some(comments), None, &options, &extra)
}
