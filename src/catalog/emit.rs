//! The last step of a compile: JavaScript text from the transformed program, its source map, and the iife wrapper.

use super::builtins;
use super::diagnostic::Diagnostic;
use super::platforms::{CompileOptions, ModuleFormat};
use std::path::Path;
use swc_core::common::comments::SingleThreadedComments;
use swc_core::common::source_map::SourceMapGenConfig;
use swc_core::common::sync::Lrc;
use swc_core::common::{BytePos, FileName, LineCol, SourceMap};
use swc_core::ecma::ast::{EsVersion, Program};
use swc_core::ecma::codegen::{text_writer::JsWriter, Config as CodegenConfig, Emitter as JsEmitter};

/// What a successful compile yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The JavaScript.
    pub code: String,
    /// Source map JSON (with the TypeScript inlined) when asked for.
    pub source_map: Option<String>,
    /// Built-ins the code uses that its target lacks (see [`builtins`]): the variant must provide them.
    pub builtins: Vec<builtins::Use>,
}

/// The emitted code and, when source maps are asked for, the raw mappings.
pub(super) type Emitted = std::io::Result<(String, Option<Vec<(BytePos, LineCol)>>)>;

/// Prints the program. Comments are kept unless minifying.
pub(super) fn emit(
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
    (path, name): (&Path, &str),
) -> Result<String, Vec<Diagnostic>> {
    let map = cm.build_source_map(mappings, None, MapConfig(name.to_string()));
    let mut out = Vec::new();
    map.to_writer(&mut out).map_err(|e| vec![Diagnostic::error("source-map", path.to_path_buf(), e.to_string())])?;
    String::from_utf8(out).map_err(|e| vec![Diagnostic::error("source-map", path.to_path_buf(), e.to_string())])
}

/// Source maps name the snippet by its path in the catalog and embed the TypeScript, so device debuggers need
/// nothing else.
struct MapConfig(String);

impl SourceMapGenConfig for MapConfig {
    fn file_name_to_source(&self, _: &FileName) -> String {
        self.0.clone()
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
        "(function (root) {{ \"use strict\"; var module = {{ exports: {{}} }}, exports = module.exports;\n{code}\n\
         (root.connectors = root.connectors || {{}})[{name}] = module.exports;\n\
         }})(typeof globalThis !== \"undefined\" ? globalThis : typeof self !== \"undefined\" ? self : this);\n"
    );
    let source_map = source_map.map(|m| super::bundle::shift_source_map(&m, 1));
    Output { code, source_map, builtins: Vec::new() }
}

/// Turns emitted code into the delivered [`Output`]: the source map serialized, and the iife wrapper applied when
/// the module format asks for it.
pub(super) fn package(
    cm: &Lrc<SourceMap>,
    code: String,
    mappings: Option<Vec<(BytePos, LineCol)>>,
    names: (&Path, &str),
    module: ModuleFormat,
    connector: &str,
) -> Result<Output, Vec<Diagnostic>> {
    let source_map = match mappings {
        Some(mappings) => Some(source_map_json(cm, &mappings, names)?),
        None => None,
    };
    Ok(match module {
        ModuleFormat::Iife => wrap_iife(code, source_map, connector),
        _ => Output { code, source_map, builtins: Vec::new() },
    })
}
