//! What one catalog swap changed, variant by variant: pure, from the two catalogs.

use super::snapshot::Catalog;

/// What one swap changed, variant by variant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevisionDiff {
    /// Variants that are new or have a new revision: (platform, variant, revision).
    pub changed: Vec<(String, String, String)>,
    /// Variants that no longer exist: (platform, variant).
    pub removed: Vec<(String, String)>,
}

impl RevisionDiff {
    /// The difference from `previous` (nothing: everything is new) to `next`.
    pub fn between(previous: Option<&Catalog>, next: &Catalog) -> RevisionDiff {
        let revisions = |c: &Catalog| -> std::collections::BTreeMap<(String, String), String> {
            c.bundles().map(|b| ((b.platform.clone(), b.variant.clone()), b.revision.clone())).collect()
        };
        let before = previous.map(revisions).unwrap_or_default();
        let after = revisions(next);
        RevisionDiff {
            changed: (after.iter())
                .filter(|(k, rev)| before.get(*k) != Some(*rev))
                .map(|((p, v), rev)| (p.clone(), v.clone(), rev.clone()))
                .collect(),
            removed: before.keys().filter(|k| !after.contains_key(*k)).cloned().collect(),
        }
    }
}
