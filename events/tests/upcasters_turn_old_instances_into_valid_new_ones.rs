//! Every declarative upcaster of the corpus turns each generated instance of
//! the old version into a payload the new version's validator accepts.

mod support;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use support::{corpus, for_instances_of, validator};

/// Generated old instances per upcaster.
const CASES_PER_UPCASTER: u32 = 300;

#[test]
fn upcast_old_instances_validate_under_the_new_version() {
    let mut upcasters = 0;
    for pair in corpus() {
        let Some(upcaster) = &pair.upcaster else {
            continue;
        };
        upcasters += 1;
        upcaster
            .check()
            .unwrap_or_else(|e| panic!("{}: {e}", pair.label()));
        let new = validator(&pair.new);
        for_instances_of(&pair.old, CASES_PER_UPCASTER, |old| {
            let upcast = upcaster.apply(old.clone()).map_err(|e| {
                TestCaseError::fail(format!("{:?}: {old} could not be upcast: {e}", pair.name))
            })?;
            let problems: Vec<String> = new.iter_errors(&upcast).map(|e| e.to_string()).collect();
            prop_assert!(
                problems.is_empty(),
                "{:?}: {old} upcast into {upcast}, which the new version rejects: {problems:?}",
                pair.name
            );
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(upcasters >= 3, "only {upcasters} upcasters in the corpus");
}

#[test]
fn without_its_upcaster_no_pair_of_the_corpus_is_compatible() {
    // An upcaster on a compatible pair would be dead weight.
    for pair in corpus().into_iter().filter(|p| p.upcaster.is_some()) {
        assert!(!pair.compatible, "{} needs no upcaster", pair.label());
        let problems = herald_events::compat::check(pair.mode, &pair.old, &pair.new)
            .expect_err("a pair with an upcaster is incompatible");
        let expected = pair
            .path
            .as_deref()
            .expect("an incompatible pair names a path");
        assert!(
            problems.iter().any(|p| p.path == expected),
            "{}: no problem at {expected} in {problems:#?}",
            pair.label()
        );
    }
}
