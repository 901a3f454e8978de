//! Compile options: what a variant's sources are compiled to (language level, module format, minify, source maps).
//!
//! Kept apart from the manifest that names them because the transpiler, the compile cache and the bundles use them
//! too: two variants with equal options share their compiled output.

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// The JavaScript language level a variant is compiled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// ES5: old WebViews and embedded engines; everything downleveled, helpers inlined.
    Es5,
    /// ES2015 (ES6).
    Es2015,
    /// ES2016.
    Es2016,
    /// ES2017 (async/await).
    Es2017,
    /// ES2018.
    Es2018,
    /// ES2019.
    Es2019,
    /// ES2020 (optional chaining).
    Es2020,
    /// ES2021.
    Es2021,
    /// ES2022 (class fields).
    Es2022,
    /// Whatever the parser knows: only TypeScript is removed.
    EsNext,
}

impl Target {
    /// Every target with its name, oldest first.
    pub const ALL: [(Target, &'static str); 10] = [
        (Target::Es5, "es5"),
        (Target::Es2015, "es2015"),
        (Target::Es2016, "es2016"),
        (Target::Es2017, "es2017"),
        (Target::Es2018, "es2018"),
        (Target::Es2019, "es2019"),
        (Target::Es2020, "es2020"),
        (Target::Es2021, "es2021"),
        (Target::Es2022, "es2022"),
        (Target::EsNext, "esnext"),
    ];

    /// The manifest spelling.
    pub fn name(self) -> &'static str {
        Target::ALL.iter().find(|(t, _)| *t == self).map_or("esnext", |(_, n)| n)
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let lower = if lower == "es6" { "es2015".to_string() } else { lower };
        Target::ALL.iter().find(|(_, n)| *n == lower).map(|(t, _)| *t).ok_or_else(|| {
            let names: Vec<&str> = Target::ALL.iter().map(|(_, n)| *n).collect();
            format!("unknown target {s:?}; expected one of {}", names.join(", "))
        })
    }
}

/// How a compiled connector is packaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleFormat {
    /// ES modules (`export` kept).
    Esm,
    /// CommonJS (`exports.x = …`), for engines that provide `module`/`exports`.
    Commonjs,
    /// A self-running script: the exports land in `globalThis.connectors[name]`; for engines without modules.
    Iife,
}

impl ModuleFormat {
    /// The manifest spelling.
    pub fn name(self) -> &'static str {
        match self {
            ModuleFormat::Esm => "esm",
            ModuleFormat::Commonjs => "commonjs",
            ModuleFormat::Iife => "iife",
        }
    }
}

/// What a source is compiled to. Two variants with equal options share compiled output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CompileOptions {
    /// Language level.
    pub target: Target,
    /// Module format.
    pub module: ModuleFormat,
    /// Minify (compress + mangle).
    pub minify: bool,
    /// Produce a source map per script.
    pub source_maps: bool,
}

impl fmt::Display for CompileOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.target.name(), self.module.name())?;
        if self.minify {
            f.write_str("/min")?;
        }
        if self.source_maps {
            f.write_str("/map")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names() {
        assert_eq!("ES2017".parse::<Target>(), Ok(Target::Es2017));
        assert_eq!("es6".parse::<Target>(), Ok(Target::Es2015));
        assert!("es4".parse::<Target>().unwrap_err().contains("es5, es2015"));
    }
}
