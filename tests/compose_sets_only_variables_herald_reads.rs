//! Every `HERALD_*` variable that `docker/compose.yaml` and the Dockerfile
//! set is one Herald's configuration reads (a misspelt one would be ignored
//! silently otherwise).

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/compose.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("read docker/compose.yaml"))
        .expect("compose.yaml is YAML")
}

fn set_by_compose() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let services = compose()["services"]
        .as_mapping()
        .expect("services")
        .clone();
    for (_, service) in services {
        match &service["environment"] {
            Value::Mapping(m) => {
                names.extend(m.keys().filter_map(|k| k.as_str().map(str::to_owned)))
            }
            Value::Sequence(items) => names.extend(
                items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .map(|i| i.split('=').next().unwrap_or(i).to_owned()),
            ),
            _ => {}
        }
    }
    names.retain(|n| n.starts_with("HERALD_"));
    names
}

fn set_by_dockerfile() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/Dockerfile");
    let text = std::fs::read_to_string(path).expect("read docker/Dockerfile");
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("HERALD_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn compose_and_dockerfile_set_only_variables_the_config_reads() {
    let read: BTreeSet<String> = herald::config::environment_variables()
        .into_iter()
        .collect();
    assert!(
        read.contains("HERALD_STORE") && read.contains("HERALD_LISTEN"),
        "{read:?}"
    );
    let compose = set_by_compose();
    assert!(
        compose.contains("HERALD_STORE"),
        "compose wires Herald to Postgres: {compose:?}"
    );
    let unknown: Vec<_> = compose
        .union(&set_by_dockerfile())
        .filter(|n| !read.contains(*n))
        .cloned()
        .collect();
    assert!(
        unknown.is_empty(),
        "set in docker/ but never read by Herald: {unknown:?}; Herald reads {read:?}"
    );
}

#[test]
fn a_misspelt_variable_would_be_caught() {
    let read: BTreeSet<String> = herald::config::environment_variables()
        .into_iter()
        .collect();
    assert!(!read.contains("HERALD_STORE_URL"));
}
