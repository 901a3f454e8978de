//! App versions as mobile apps really send them, and matching them against a variant's range.
//!
//! Apps send `3`, `3.1`, `3.1.0`, `v3.1.0`, `3.1.0-beta.2`, `3.1.0+4521`, and Android `versionName`s such as
//! `3.1.0.2`: missing parts are 0, a leading `v` and build metadata are ignored, and a fourth numeric part is a
//! build number (`3.1.0+2`: ordered numerically among builds of 3.1.0, matched by ranges as 3.1.0). A pre-release app matches a range as its release (a `4.0.0-beta.1` build ships the
//! 4.0 scripts) unless the range itself names a pre-release, in which case full semver ordering applies.

use semver::{Comparator, Op, Prerelease, Version, VersionReq};
use std::fmt;

/// Why an app version was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid app version {input:?}: {reason}; expected MAJOR[.MINOR[.PATCH[.BUILD]]][-PRERELEASE][+BUILD], e.g. 3.1.0 \
     or 3.1.0.2"
)]
pub struct VersionError {
    /// What was received (truncated when absurdly long).
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The longest version string we look at; longer ones are refused without parsing.
const MAX_LEN: usize = 64;

/// A parsed app version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppVersion(pub Version);

impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl AppVersion {
    /// The normalized version as [`fmt::Display`] writes it; a plain `major.minor.patch` (nearly every app's) is
    /// written without the formatting machinery, since this runs once per request.
    pub fn text(&self) -> String {
        let v = &self.0;
        if !v.pre.is_empty() || !v.build.is_empty() {
            return self.to_string();
        }
        let mut digits = itoa::Buffer::new();
        let mut s = String::with_capacity(24);
        s.push_str(digits.format(v.major));
        s.push('.');
        s.push_str(digits.format(v.minor));
        s.push('.');
        s.push_str(digits.format(v.patch));
        s
    }

    /// Parses an app version leniently (see module docs).
    pub fn parse(input: &str) -> Result<AppVersion, VersionError> {
        match plain(input) {
            Some(version) => Ok(AppVersion(version)),
            None => AppVersion::parse_lenient(input),
        }
    }

    /// Every form the module docs accept; [`plain`] is the shortcut for the common one.
    fn parse_lenient(input: &str) -> Result<AppVersion, VersionError> {
        let err = |reason| VersionError { input: input.chars().take(MAX_LEN).collect(), reason };
        if input.len() > MAX_LEN {
            return Err(err("too long"));
        }
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        // Split off +build, then -prerelease, then the numeric core.
        let (s, build) = match s.split_once('+') {
            Some((core, build)) => (core, Some(build)),
            None => (s, None),
        };
        let (core, pre) = match s.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (s, None),
        };
        let mut parts = [0u64; 4];
        for (n, part) in core.split('.').enumerate() {
            if n == 4 {
                return Err(err("more than four numeric parts"));
            }
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("the numeric parts must be digits"));
            }
            parts[n] = part.parse().map_err(|_| err("a numeric part is too large"))?;
        }
        let mut version = Version::new(parts[0], parts[1], parts[2]);
        if core.split('.').count() == 4 {
            // A number alone is a valid build identifier; semver orders those numerically.
            version.build =
                semver::BuildMetadata::new(&parts[3].to_string()).map_err(|_| err("invalid build number"))?;
        }
        if let Some(pre) = pre {
            if pre.is_empty() {
                return Err(err("invalid pre-release"));
            }
            version.pre = Prerelease::new(pre).map_err(|_| err("invalid pre-release"))?;
        }
        if let Some(build) = build {
            if build.is_empty() {
                return Err(err("invalid build metadata"));
            }
            semver::BuildMetadata::new(build).map_err(|_| err("invalid build metadata"))?;
        }
        Ok(AppVersion(version))
    }
}

/// `major[.minor[.patch]]` in plain digits, read byte by byte: what nearly every app sends, parsed once per request.
/// `None` for anything else (and for numbers too large), which [`AppVersion::parse_lenient`] then reads or refuses.
fn plain(input: &str) -> Option<Version> {
    if input.len() > MAX_LEN {
        return None;
    }
    let mut parts = [0u64; 3];
    let (mut n, mut digits) = (0, 0);
    for &b in input.as_bytes() {
        match b {
            b'0'..=b'9' => {
                parts[n] = parts[n].checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            b'.' if digits > 0 && n < 2 => (n, digits) = (n + 1, 0),
            _ => return None,
        }
    }
    (digits > 0).then(|| Version::new(parts[0], parts[1], parts[2]))
}

/// A variant's `versions` requirement, e.g. `">=2.0, <3"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    req: VersionReq,
    text: String,
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl VersionRange {
    /// Parses a semver requirement; `*` matches everything.
    pub fn parse(text: &str) -> Result<VersionRange, semver::Error> {
        Ok(VersionRange { req: VersionReq::parse(text)?, text: text.trim().to_string() })
    }

    /// Does an app of this version get this range's variant?
    pub fn matches(&self, v: &AppVersion) -> bool {
        let v = &v.0;
        if v.pre.is_empty() || self.req.comparators.iter().any(|c| !c.pre.is_empty()) {
            return self.req.matches(v);
        }
        let release = Version::new(v.major, v.minor, v.patch);
        self.req.matches(&release)
    }

    /// Boundary versions of the range: if two ranges share any version, they share one of these.
    fn probes(&self) -> Vec<AppVersion> {
        let mut out = vec![AppVersion(Version::new(0, 0, 0))];
        for c in &self.req.comparators {
            out.extend(comparator_probes(c).into_iter().map(AppVersion));
        }
        out
    }

    /// True when no version at all matches (e.g. `>=3, <2`).
    pub fn is_empty(&self) -> bool {
        !self.probes().iter().any(|v| self.matches(v))
    }

    /// A version matched by both ranges, if any.
    pub fn overlap(&self, other: &VersionRange) -> Option<AppVersion> {
        let mut probes = self.probes();
        probes.extend(other.probes());
        probes.sort();
        probes.into_iter().find(|v| self.matches(v) && other.matches(v))
    }
}

/// The version a comparator names, and the next versions after it at each precision.
fn comparator_probes(c: &Comparator) -> Vec<Version> {
    let (major, minor, patch) = (c.major, c.minor.unwrap_or(0), c.patch.unwrap_or(0));
    let mut base = Version::new(major, minor, patch);
    base.pre = c.pre.clone();
    let mut out = vec![
        base,
        Version::new(major, minor, patch),
        Version::new(major, minor, patch.saturating_add(1)),
        Version::new(major, minor.saturating_add(1), 0),
        Version::new(major.saturating_add(1), 0, 0),
    ];
    if matches!(c.op, Op::Less | Op::LessEq | Op::Tilde | Op::Caret) {
        // Just below the bound, at every precision.
        if patch > 0 {
            out.push(Version::new(major, minor, patch - 1));
        }
        if minor > 0 {
            out.push(Version::new(major, minor - 1, u64::MAX / 2));
        }
        if major > 0 {
            out.push(Version::new(major - 1, u64::MAX / 2, u64::MAX / 2));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> AppVersion {
        AppVersion::parse(s).unwrap()
    }

    #[test]
    fn parses_what_apps_send() {
        let cases = [
            ("3", "3.0.0"),
            ("3.1", "3.1.0"),
            ("3.1.0", "3.1.0"),
            ("v3.1.0", "3.1.0"),
            ("V3.1", "3.1.0"),
            ("3.1.0-beta.2", "3.1.0-beta.2"),
            ("3.1-rc.1", "3.1.0-rc.1"),
            ("3.1.0+4521", "3.1.0"),
            ("3.1.0-beta.2+4521", "3.1.0-beta.2"),
            (" 2.4.1 ", "2.4.1"),
            ("10.20.30", "10.20.30"),
            // Android versionName with a build number.
            ("3.1.0.2", "3.1.0+2"),
            ("v3.1.0.17-beta.1", "3.1.0-beta.1+17"),
        ];
        for (input, want) in cases {
            assert_eq!(AppVersion::parse(input).map(|v| v.to_string()), Ok(want.to_string()), "{input}");
            // What a reply echoes: the same text, by the fast path or the general one.
            assert_eq!(AppVersion::parse(input).map(|v| v.text()), Ok(want.to_string()), "{input}");
        }
        let big = format!("{}.0.{}", u64::MAX, u64::MAX - 1);
        assert_eq!(v(&big).text(), big);
    }

    #[test]
    fn the_plain_shortcut_agrees_with_the_lenient_parser() {
        let inputs = [
            "3",
            "3.1",
            "3.1.0",
            "10.20.30",
            "007.08.9",
            "0.0.0",
            "18446744073709551615.1.2",
            "18446744073709551616",
            "3.",
            ".3",
            "3..1",
            "3.1.0.2",
            "3.1.0-beta",
            " 3.1",
            "v3",
            "3.1a",
            "",
            "3.1.0+7",
        ];
        // Too long for the lenient parser, though its numbers are small.
        let zeros = format!("1.2.{}3", "0".repeat(MAX_LEN));
        for input in inputs.into_iter().chain([zeros.as_str()]) {
            let lenient = AppVersion::parse_lenient(input);
            match plain(input) {
                Some(version) => assert_eq!(lenient, Ok(AppVersion(version)), "{input}"),
                // Not plain: the lenient parser decides, and parse says what it says.
                None => assert_eq!(AppVersion::parse(input), lenient, "{input}"),
            }
        }
        assert!(plain("3.1.0").is_some() && plain("18446744073709551616").is_none() && plain("3.1.0.2").is_none());
    }

    #[test]
    fn refuses_garbage_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("abc", "the numeric parts must be digits"),
            ("3.x", "the numeric parts must be digits"),
            ("3..1", "the numeric parts must be digits"),
            ("3.1.0.7.1", "more than four numeric parts"),
            ("3.1.0.", "the numeric parts must be digits"),
            ("-1", "the numeric parts must be digits"),
            ("3.1.0-", "invalid pre-release"),
            ("3.1.0-beta..2", "invalid pre-release"),
            ("3.1.0+", "invalid build metadata"),
            ("99999999999999999999999", "a numeric part is too large"),
            ("1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28.29.30", "too long"),
        ];
        for (input, reason) in cases {
            let err = AppVersion::parse(input).unwrap_err();
            assert_eq!(err.reason, reason, "{input:?}");
            assert!(err.to_string().contains("expected MAJOR[.MINOR[.PATCH[.BUILD]]]"), "{err}");
        }
    }

    #[test]
    fn a_fourth_part_is_a_build_number_ordered_numerically_and_matched_as_its_release() {
        assert!(v("3.1.0.10") > v("3.1.0.9"), "numeric, not lexical");
        assert!(v("3.1.0.2") > v("3.1.0"));
        assert!(v("3.1.0.99") < v("3.1.1"));
        let range = VersionRange::parse(">=3.1.0, <3.2").unwrap();
        assert!(range.matches(&v("3.1.0.2")) && !range.matches(&v("3.2.0.1")));
        assert!(VersionRange::parse("=3.1.0").unwrap().matches(&v("3.1.0.5")));
    }

    #[test]
    fn range_matching_at_boundaries_and_prereleases() {
        let cases = [
            (">=2.0, <3", "2.0.0", true),
            (">=2.0, <3", "1.99.99", false),
            (">=2.0, <3", "2.99.99", true),
            (">=2.0, <3", "3.0.0", false),
            (">=2.0, <3", "3", false),
            (">=2.0, <3", "2", true),
            // Pre-releases match as their release...
            (">=2.0, <3", "2.5.0-beta.1", true),
            (">=3", "3.0.0-beta.1", true),
            ("<3", "3.0.0-beta.1", false),
            // ...unless the range names pre-releases itself.
            (">=3.0.0-rc.1", "3.0.0-beta.1", false),
            (">=3.0.0-rc.1", "3.0.0-rc.2", true),
            ("*", "0.0.1", true),
            ("*", "7.3.0-alpha", true),
            ("^1.2", "1.9.0", true),
            ("^1.2", "2.0.0", false),
            ("~1.2", "1.2.9", true),
            ("~1.2", "1.3.0", false),
        ];
        for (range, version, want) in cases {
            let r = VersionRange::parse(range).unwrap();
            assert_eq!(r.matches(&v(version)), want, "{range} vs {version}");
        }
    }

    #[test]
    fn detects_empty_ranges_and_overlaps() {
        let r = |s| VersionRange::parse(s).unwrap();
        assert!(r(">=3, <2").is_empty());
        assert!(r(">3, <=3").is_empty());
        assert!(!r(">=2, <3").is_empty());
        assert!(!r("<0.0.1").is_empty());
        assert!(!r("*").is_empty());
        let cases = [
            (">=2, <3", ">=3", None),
            (">=2, <3", ">=2.5", Some("2.5.0")),
            ("<2", ">=2", None),
            ("<=2", ">=2", Some("2.0.0")),
            ("*", ">=9", Some("9.0.0")),
            ("^1", "^2", None),
            ("~1.2", ">=1.2.5, <1.4", Some("1.2.5")),
            (">1.2.3", "<1.2.4", None),
        ];
        for (a, b, want) in cases {
            let got = r(a).overlap(&r(b)).map(|v| v.to_string());
            assert_eq!(got.as_deref(), want, "{a} ∩ {b}");
        }
    }
}
