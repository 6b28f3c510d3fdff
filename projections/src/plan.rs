//! What to do with a read model's generations when a runner starts, a
//! rebuild is asked for, a build has caught up or a detached build is
//! made, decided from the generation rows alone: the runner loop decides
//! here and its backend carries the steps out, so both read-model
//! databases follow one rule.

use chrono::{DateTime, Utc};

use crate::schema::{Generation, GenerationState};

/// One change to the generation rows (in order) and the tables to set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Mark this generation retired (its tables are dropped later).
    Retire(u32),
    /// Make this (building) generation the serving one.
    Activate(u32),
    /// Add a generation in this state for the code's version, and set its
    /// tables up.
    Create(GenerationState),
    /// Set up (create if missing) this generation's tables.
    Setup(u32),
    /// Add a detached generation for the code's version: `retired`, with a
    /// `switched_at` in the future (until then no runner drops it), and set
    /// its tables up.
    CreateDetached(DateTime<Utc>),
}

/// A serving generation of a newer version: this older code must not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Newer {
    pub stored: u32,
}

fn find(generations: &[Generation], state: GenerationState) -> Option<Generation> {
    generations.iter().find(|g| g.state == state).copied()
}

/// At start: the first start creates a serving generation; a version above
/// the serving one's builds a new generation beside it (resuming a build of
/// that version under way); a build for an older version is abandoned.
pub(crate) fn install(generations: &[Generation], version: u32) -> Result<Vec<Step>, Newer> {
    let mut steps = Vec::new();
    let mut building = find(generations, GenerationState::Building);
    if let Some(b) = building.filter(|b| b.version < version) {
        steps.push(Step::Retire(b.generation));
        building = None;
    }
    match (find(generations, GenerationState::Active), building) {
        (None, None) => steps.push(Step::Create(GenerationState::Active)),
        (None, Some(b)) => {
            // A build with nothing serving yet may as well serve.
            steps.push(Step::Activate(b.generation));
            if b.version == version {
                steps.push(Step::Setup(b.generation));
            }
        }
        (Some(a), _) if a.version > version => return Err(Newer { stored: a.version }),
        (Some(a), building) if a.version == version => {
            steps.push(Step::Setup(a.generation));
            // A rebuild asked for earlier goes on.
            if let Some(b) = building.filter(|b| b.version == version) {
                steps.push(Step::Setup(b.generation));
            }
        }
        (Some(_), Some(b)) if b.version == version => steps.push(Step::Setup(b.generation)),
        (Some(_), _) => steps.push(Step::Create(GenerationState::Building)),
    }
    Ok(steps)
}

/// On a rebuild request: the build of this version under way, if any
/// (`Ok(Some)`), or the steps that start one.
pub(crate) fn rebuild(generations: &[Generation], version: u32) -> Result<u32, Vec<Step>> {
    let mut steps = Vec::new();
    if let Some(b) = find(generations, GenerationState::Building) {
        if b.version == version {
            return Ok(b.generation);
        }
        steps.push(Step::Retire(b.generation));
    }
    steps.push(Step::Create(GenerationState::Building));
    Err(steps)
}

/// At the switch: the serving generation to retire, if any, when `built`
/// is still the one being built (`None` when another runner switched).
pub(crate) fn switch(generations: &[Generation], built: u32) -> Option<Option<u32>> {
    let still_building = generations
        .iter()
        .any(|g| g.generation == built && g.state == GenerationState::Building);
    still_building.then(|| find(generations, GenerationState::Active).map(|g| g.generation))
}

/// The steps of the switch to `built` ([`switch`]): none when another
/// runner switched already.
pub(crate) fn switch_steps(generations: &[Generation], built: u32) -> Vec<Step> {
    match switch(generations, built) {
        None => Vec::new(),
        Some(replaced) => replaced
            .map(Step::Retire)
            .into_iter()
            .chain([Step::Activate(built)])
            .collect(),
    }
}

/// The steps of a rebuild request ([`rebuild`]): none when one is under way.
pub(crate) fn rebuild_steps(generations: &[Generation], version: u32) -> Vec<Step> {
    rebuild(generations, version).err().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use herald_events::Position;

    fn generation(generation: u32, version: u32, state: GenerationState) -> Generation {
        Generation {
            generation,
            version,
            state,
            position: Position::START,
            updated_at: Utc::now(),
            switched_at: None,
        }
    }

    #[test]
    fn a_first_start_serves_at_once_and_a_new_version_builds_beside() {
        use GenerationState::*;
        assert_eq!(install(&[], 1), Ok(vec![Step::Create(Active)]));
        let serving = [generation(1, 1, Active)];
        assert_eq!(install(&serving, 1), Ok(vec![Step::Setup(1)]));
        assert_eq!(install(&serving, 2), Ok(vec![Step::Create(Building)]));
        assert_eq!(install(&serving, 0), Err(Newer { stored: 1 }));
        let building = [generation(1, 1, Active), generation(2, 2, Building)];
        assert_eq!(install(&building, 2), Ok(vec![Step::Setup(2)]));
        assert_eq!(
            install(&building, 3),
            Ok(vec![Step::Retire(2), Step::Create(Building)])
        );
        // Older code keeps serving its own while a newer version builds.
        assert_eq!(install(&building, 1), Ok(vec![Step::Setup(1)]));
    }

    #[test]
    fn one_rebuild_at_a_time_and_one_switch() {
        use GenerationState::*;
        let building = [generation(1, 1, Active), generation(2, 1, Building)];
        assert_eq!(rebuild(&building, 1), Ok(2));
        assert_eq!(
            rebuild(&building, 2),
            Err(vec![Step::Retire(2), Step::Create(Building)])
        );
        assert_eq!(switch(&building, 2), Some(Some(1)));
        assert_eq!(
            switch_steps(&building, 2),
            vec![Step::Retire(1), Step::Activate(2)]
        );
        let switched = [generation(1, 1, Retired), generation(2, 1, Active)];
        assert_eq!(switch(&switched, 2), None);
        assert_eq!(switch_steps(&switched, 2), vec![]);
    }
}
