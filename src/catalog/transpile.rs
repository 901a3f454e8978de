//! TypeScript → JavaScript for one source and one set of compile options, with swc, in-process.
//!
//! Pure: text in, code (+ source map) or diagnostics out. Pass order follows swc's own pipeline: parse →
//! resolver → strip TypeScript → downlevel (one compat pass per ES edition above the target) → module format →
//! inline helpers → minify → hygiene + fixer → emit. Every compile runs on a thread with a large stack and under
//! `catch_unwind`, after cheap guards against input that would otherwise recurse without bound: no source can take
//! the process down.

use super::diagnostic::Diagnostic;
use super::platforms::{CompileOptions, ModuleFormat, Target};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use swc_core::common::comments::SingleThreadedComments;
use swc_core::common::errors::{DiagnosticBuilder, Emitter, Handler, Level, HANDLER};
use swc_core::common::source_map::SourceMapGenConfig;
use swc_core::common::sync::Lrc;
use swc_core::common::{BytePos, FileName, Globals, LineCol, Mark, SourceMap, Span, Spanned, GLOBALS};
use swc_core::ecma::ast::{EsVersion, Expr, Program, Stmt, TsType};
use swc_core::ecma::codegen::{text_writer::JsWriter, Config as CodegenConfig, Emitter as JsEmitter};
use swc_core::ecma::minifier::option::{CompressOptions, ExtraOptions, MangleOptions, MinifyOptions};
use swc_core::ecma::parser::{parse_file_as_program, Syntax, TsSyntax};
use swc_core::ecma::transforms::base::fixer::fixer;
use swc_core::ecma::transforms::base::helpers::{inject_helpers, Helpers, HELPERS};
use swc_core::ecma::transforms::base::hygiene::hygiene;
use swc_core::ecma::transforms::base::resolver;
use swc_core::ecma::transforms::compat;
use swc_core::ecma::transforms::module::common_js::{common_js, FeatureFlag};
use swc_core::ecma::transforms::typescript;
use swc_core::ecma::visit::{Visit, VisitWith};

/// Deepest bracket or expression nesting accepted. Real connectors stay far below; the limit keeps the recursive
/// parser and passes within the compile thread's stack.
pub const MAX_NESTING: usize = 1000;

/// Stack of each compile thread. Reserved, not committed: only the pages a deep file touches are used.
const COMPILE_STACK: usize = 256 << 20;

/// What a successful compile yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The JavaScript.
    pub code: String,
    /// Source map JSON (with the TypeScript inlined) when asked for.
    pub source_map: Option<String>,
}

/// One unit of compile work: a source file, the connector name it serves as, and the options.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Path shown in diagnostics and recorded in source maps.
    pub path: &'a Path,
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
    if let Some((line, col)) = nesting_too_deep(source) {
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
    let at = |code: &'static str, msg: String, span: Option<Span>, error: bool| {
        let mut d = if error {
            Diagnostic::error(code, path.to_path_buf(), msg)
        } else {
            Diagnostic::warning(code, path.to_path_buf(), msg)
        };
        if let Some(span) = span.filter(|s| !s.is_dummy()) {
            let loc = cm.lookup_char_pos(span.lo);
            d = d.at(source, loc.line as u32, loc.col.0 as u32 + 1);
        }
        d
    };

    let comments = SingleThreadedComments::default();
    let syntax = Syntax::Typescript(TsSyntax { decorators: true, ..Default::default() });
    let mut recovered = Vec::new();
    let parsed = parse_file_as_program(&fm, syntax, EsVersion::EsNext, Some(&comments), &mut recovered);
    let mut diags: Vec<Diagnostic> =
        recovered.iter().map(|e| at("parse", e.kind().msg().to_string(), Some(e.span()), true)).collect();
    let program = match parsed {
        Ok(p) => p,
        Err(e) => {
            diags.push(at("parse", e.kind().msg().to_string(), Some(e.span()), true));
            return Err(diags);
        }
    };
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut depth = DepthGuard { depth: 0, too_deep: None };
    program.visit_with(&mut depth);
    if let Some(span) = depth.too_deep {
        return Err(vec![at(
            "too-deep",
            format!("expression or statement nested more than {MAX_NESTING} levels deep"),
            Some(span),
            true,
        )]);
    }

    let collector = Collector::default();
    let handler = Handler::with_emitter(true, false, Box::new(collector.clone()));
    let options = job.options;
    let target = es_version(options.target);
    let emitted = GLOBALS.set(&Globals::new(), || {
        HELPERS.set(&Helpers::new(false), || {
            HANDLER.set(&handler, || {
                let unresolved = Mark::new();
                let top_level = Mark::new();
                let mut program = program.apply(resolver(unresolved, top_level, true)).apply(typescript::typescript(
                    typescript::Config::default(),
                    unresolved,
                    top_level,
                ));
                program = downlevel(program, options.target, unresolved, &comments);
                if options.module != ModuleFormat::Esm {
                    let features = FeatureFlag {
                        support_block_scoping: options.target >= Target::Es2015,
                        support_arrow: options.target >= Target::Es2015,
                    };
                    program = program.apply(common_js(Default::default(), unresolved, Default::default(), features));
                }
                program = program.apply(inject_helpers(unresolved));
                if options.minify {
                    program = minify(program, &cm, &comments, target, unresolved, top_level);
                }
                let program = program.apply((hygiene(), fixer(Some(&comments))));
                emit(&cm, &program, (!options.minify).then_some(&comments), target, options)
            })
        })
    });
    let transform_diags: Vec<Diagnostic> = collector
        .0
        .lock()
        .map(|v| v.iter().map(|(m, s, e)| at("transform", m.clone(), *s, *e)).collect())
        .unwrap_or_default();
    if transform_diags.iter().any(Diagnostic::is_error) {
        return Err(transform_diags);
    }
    let (code, mappings) = emitted.map_err(|e| vec![Diagnostic::error("emit", path.to_path_buf(), e.to_string())])?;
    let source_map = match mappings {
        Some(mappings) => Some(source_map_json(&cm, &mappings, path)?),
        None => None,
    };
    Ok(match options.module {
        ModuleFormat::Iife => wrap_iife(code, source_map, job.connector),
        _ => Output { code, source_map },
    })
}

/// Applies one compat pass per ES edition newer than the target, newest first (swc's own order).
fn downlevel(mut p: Program, target: Target, unresolved: Mark, comments: &SingleThreadedComments) -> Program {
    if target < Target::EsNext && target < Target::Es2022 {
        p = p.apply(compat::es2022::es2022(Default::default(), unresolved));
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
    if target < Target::Es2017 {
        p = p.apply(compat::es2017::es2017(Default::default(), unresolved));
    }
    if target < Target::Es2016 {
        p = p.apply(compat::es2016::es2016());
    }
    if target < Target::Es2015 {
        let cfg = compat::es2015::Config { typescript: true, ..Default::default() };
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

type Emitted = std::io::Result<(String, Option<Vec<(BytePos, LineCol)>>)>;

fn emit(
    cm: &Lrc<SourceMap>,
    program: &Program,
    comments: Option<&SingleThreadedComments>,
    target: EsVersion,
    options: CompileOptions,
) -> Emitted {
    let mut buf = Vec::new();
    let mut mappings = Vec::new();
    {
        let writer = JsWriter::new(cm.clone(), "\n", &mut buf, options.source_maps.then_some(&mut mappings));
        let mut emitter = JsEmitter {
            cfg: CodegenConfig::default().with_target(target).with_minify(options.minify),
            cm: cm.clone(),
            comments: comments.map(|c| c as &dyn swc_core::common::comments::Comments),
            wr: writer,
        };
        emitter.emit_program(program)?;
    }
    let code = String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok((code, options.source_maps.then_some(mappings)))
}

fn source_map_json(
    cm: &Lrc<SourceMap>,
    mappings: &[(BytePos, LineCol)],
    path: &Path,
) -> Result<String, Vec<Diagnostic>> {
    let map = cm.build_source_map(mappings, None, MapConfig);
    let mut out = Vec::new();
    map.to_writer(&mut out).map_err(|e| vec![Diagnostic::error("source-map", path.to_path_buf(), e.to_string())])?;
    String::from_utf8(out).map_err(|e| vec![Diagnostic::error("source-map", path.to_path_buf(), e.to_string())])
}

/// Source maps name the snippet by its path and embed the TypeScript, so device debuggers need nothing else.
struct MapConfig;

impl SourceMapGenConfig for MapConfig {
    fn file_name_to_source(&self, f: &FileName) -> String {
        f.to_string()
    }

    fn inline_sources_content(&self, _: &FileName) -> bool {
        true
    }
}

/// Wraps CommonJS output into a self-running script that publishes its exports on `connectors[name]` of the
/// global object. The wrapper's first line shifts the source map by one line (one `;` in `mappings`).
fn wrap_iife(code: String, source_map: Option<String>, connector: &str) -> Output {
    let name = serde_json::to_string(connector).unwrap_or_else(|_| "\"connector\"".into());
    let code = format!(
        "(function (root) {{ var module = {{ exports: {{}} }}, exports = module.exports;\n{code}\n\
         (root.connectors = root.connectors || {{}})[{name}] = module.exports;\n\
         }})(typeof globalThis !== \"undefined\" ? globalThis : typeof self !== \"undefined\" ? self : this);\n"
    );
    let source_map = source_map.map(|m| match serde_json::from_str::<serde_json::Value>(&m) {
        Ok(mut v) => {
            if let Some(serde_json::Value::String(s)) = v.get_mut("mappings") {
                s.insert(0, ';');
            }
            v.to_string()
        }
        Err(_) => m,
    });
    Output { code, source_map }
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
fn nesting_too_deep(source: &str) -> Option<(u32, u32)> {
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
