//! `docker compose -f docker/compose.yaml up` brings up a working,
//! authenticated Herald on Postgres and RabbitMQ. There is no Docker engine
//! here, so the file is checked as Compose reads it — the rules of the
//! Compose specification that matter to it (services, images and builds,
//! restart policies, healthchecks, `depends_on` with health conditions and
//! profiles, ports, volumes, environment and interpolation) and its
//! consistency with the Dockerfile (paths, features, user, port, libraries)
//! — and then the `herald` binary is run with exactly the command line and
//! environment the container gets, the hostnames pointed at the local
//! servers: it starts on 0.0.0.0 with the admin key of the README's recipe,
//! its healthcheck passes, and it answers that key and only it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_testkit::{TestDatabase, TestVhost};
use serde_yaml_ng::Value;
use support::{free_port, herald_command, Herald};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn compose() -> Value {
    serde_yaml_ng::from_str(&read("docker/compose.yaml")).expect("compose.yaml is YAML")
}

fn services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_mapping()
        .expect("services is a mapping")
        .iter()
        .map(|(k, v)| (k.as_str().expect("a service name").to_owned(), v.clone()))
        .collect()
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value:?} is not a string"))
}

/// Compose's interpolation of one value: `${VAR}`, `${VAR:-default}`,
/// `${VAR-default}`, `${VAR:?message}`, `${VAR?message}` and `$$`; returns
/// the text and the variables it read.
fn interpolate(value: &str, vars: &BTreeMap<&str, &str>) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.find('}').map(|end| (&r[..end], &r[end + 1..])));
        let Some((expression, after)) = inner else {
            panic!("{value:?}: write variables as ${{NAME}} so the test can read them");
        };
        let name_end = expression
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expression.len());
        let (name, operator) = expression.split_at(name_end);
        assert!(
            !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()),
            "{value:?}: bad variable name"
        );
        let set = vars.get(name).copied();
        let replaced = match operator {
            "" => set.unwrap_or("").to_owned(),
            _ if operator.starts_with(":-") => set
                .filter(|v| !v.is_empty())
                .unwrap_or(&operator[2..])
                .to_owned(),
            _ if operator.starts_with('-') => set.unwrap_or(&operator[1..]).to_owned(),
            _ if operator.starts_with(":?") || operator.starts_with('?') => match set {
                Some(v) if !v.is_empty() || operator.starts_with('?') => v.to_owned(),
                _ => panic!("{value:?}: compose stops here: {name} is required"),
            },
            other => panic!("{value:?}: unknown interpolation {other:?}"),
        };
        names.push(name.to_owned());
        out.push_str(&replaced);
        rest = after;
    }
    out.push_str(rest);
    (out, names)
}

/// The environment a service gets, interpolated with `vars`.
fn environment(service: &Value, vars: &BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    let Some(map) = service["environment"].as_mapping() else {
        assert!(
            service.get("environment").is_none(),
            "environment must be a mapping here"
        );
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("environment {k:?}: {other:?} is not a string, number or boolean"),
            };
            (text(k).to_owned(), interpolate(&value, vars).0)
        })
        .collect()
}

/// `5s`, `1m30s`, `500ms`: a Compose duration.
fn is_duration(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let mut rest = text;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "us", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
        parts += 1;
    }
    parts > 0
}

/// The container port of a `"host:container"` mapping, checking its form.
fn port_mapping(value: &Value) -> (u16, u16) {
    // A YAML number here would be read in base 60 by some parsers.
    let mapping = value
        .as_str()
        .unwrap_or_else(|| panic!("ports must be quoted strings: {value:?}"));
    let (host, container) = mapping
        .split_once(':')
        .unwrap_or_else(|| panic!("{mapping}: publish as \"host:container\""));
    (
        host.parse()
            .unwrap_or_else(|_| panic!("{mapping}: host port")),
        container
            .parse()
            .unwrap_or_else(|_| panic!("{mapping}: container port")),
    )
}

const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "restart",
    "depends_on",
    "ports",
    "environment",
    "volumes",
    "healthcheck",
    "profiles",
    "command",
    "entrypoint",
    "hostname",
    "user",
    "working_dir",
    "networks",
    "secrets",
    "configs",
    "labels",
    "stop_grace_period",
    "stop_signal",
    "env_file",
    "expose",
];

#[test]
fn the_compose_file_follows_the_compose_rules_that_matter() {
    let compose = compose();
    let top: BTreeSet<&str> = compose.as_mapping().unwrap().keys().map(text).collect();
    for key in &top {
        assert!(
            ["name", "services", "volumes", "networks", "configs", "secrets"].contains(key)
                || key.starts_with("x-"),
            "top-level {key:?} is not Compose (and `version` is obsolete)"
        );
    }
    let name = text(&compose["name"]);
    assert!(name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'));

    let services = services(&compose);
    let declared_volumes: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(|k| text(k).to_owned()).collect())
        .unwrap_or_default();
    let mut used_volumes = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for (name, service) in &services {
        for key in service.as_mapping().unwrap().keys() {
            assert!(
                SERVICE_KEYS.contains(&text(key)),
                "{name}: {key:?} is not a key this test knows Compose to take"
            );
        }
        assert!(
            service.get("image").is_some() || service.get("build").is_some(),
            "{name}: neither image nor build"
        );
        if let Some(build) = service.get("build") {
            let context = root().join("docker").join(text(&build["context"]));
            assert!(context.is_dir(), "{name}: no build context {context:?}");
            let dockerfile = context.join(text(&build["dockerfile"]));
            assert!(dockerfile.is_file(), "{name}: no Dockerfile {dockerfile:?}");
        }
        let restart = text(&service["restart"]);
        assert!(
            ["no", "always", "unless-stopped"].contains(&restart)
                || restart.starts_with("on-failure"),
            "{name}: restart {restart:?}"
        );
        assert_ne!(restart, "no", "{name} is not restarted when it stops");
        let health = &service["healthcheck"];
        let test = health["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: a healthcheck test list"));
        assert!(
            ["CMD", "CMD-SHELL"].contains(&text(&test[0])) && test.len() >= 2,
            "{name}: healthcheck test {test:?}"
        );
        for key in ["interval", "timeout", "start_period"] {
            assert!(is_duration(&health[key]), "{name}: healthcheck {key}");
        }
        assert!(
            health["retries"].as_u64().is_some_and(|r| r > 0),
            "{name}: retries"
        );
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let (host, _) = port_mapping(port);
            assert!(host_ports.insert(host), "host port {host} published twice");
        }
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let (source, target) = text(volume).split_once(':').expect("source:target");
            assert!(target.starts_with('/'), "{name}: {target}");
            if !source.starts_with(['.', '/']) {
                assert!(
                    declared_volumes.contains(source),
                    "{name}: volume {source} undeclared"
                );
                used_volumes.insert(source.to_owned());
            }
        }
        let profiles: BTreeSet<&str> = service["profiles"]
            .as_sequence()
            .map(|p| p.iter().map(text).collect())
            .unwrap_or_default();
        if let Some(depends) = service.get("depends_on") {
            let depends = depends
                .as_mapping()
                .unwrap_or_else(|| panic!("{name}: depends_on as a mapping, with conditions"));
            for (dependency, how) in depends {
                let dependency = text(dependency);
                let target = services
                    .get(dependency)
                    .unwrap_or_else(|| panic!("{name} depends on no service {dependency}"));
                let condition = text(&how["condition"]);
                assert!(
                    [
                        "service_started",
                        "service_healthy",
                        "service_completed_successfully"
                    ]
                    .contains(&condition),
                    "{name}: condition {condition}"
                );
                if condition == "service_healthy" {
                    assert!(
                        target.get("healthcheck").is_some(),
                        "{name} waits for {dependency} to be healthy, which has no healthcheck"
                    );
                }
                let target_profiles: BTreeSet<&str> = target["profiles"]
                    .as_sequence()
                    .map(|p| p.iter().map(text).collect())
                    .unwrap_or_default();
                if !target_profiles.is_empty() && !target_profiles.is_subset(&profiles) {
                    assert_eq!(
                        how["required"].as_bool(),
                        Some(false),
                        "{name} depends on {dependency}, which runs only in a profile: \
                         `required: false`, or compose refuses the file without that profile"
                    );
                }
            }
        }
    }
    assert_eq!(
        used_volumes, declared_volumes,
        "declared volumes nobody mounts"
    );

    // Variables read by interpolation are Compose's, not Herald's: a
    // developer's own HERALD_* settings must not leak into the stack.
    let herald_reads: BTreeSet<String> = herald::config::environment_variables()
        .into_iter()
        .collect();
    let raw = read("docker/compose.yaml");
    let mut interpolated = BTreeSet::new();
    for service in services.values() {
        for value in service["environment"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(_, v)| v)
        {
            if let Some(v) = value.as_str() {
                interpolated.extend(interpolate(v, &BTreeMap::new()).1);
            }
        }
    }
    assert_eq!(
        interpolated,
        BTreeSet::from([
            "HERALD_ADMIN_KEY".to_owned(),
            "HERALD_COMPOSE_BROKER".to_owned()
        ])
    );
    for name in &interpolated {
        assert!(
            !herald_reads.contains(name),
            "{name} is read by Herald itself"
        );
    }
    assert!(!raw.contains("not set here yet"), "a stale comment");
}

#[test]
fn herald_is_wired_to_the_services_of_the_file() {
    let compose = compose();
    let services = services(&compose);
    let herald = &services["herald"];
    let no_vars = BTreeMap::new();
    let env = environment(herald, &no_vars);

    // The store: the postgres service with its own credentials.
    let postgres = environment(&services["postgres"], &no_vars);
    assert_eq!(
        env["HERALD_STORE"],
        format!(
            "postgres://{}:{}@postgres:5432/{}",
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
        )
    );
    // The broker: RabbitMQ by default, on the rabbitmq service's AMQP port.
    assert_eq!(env["HERALD_BROKER"], "amqp://guest:guest@rabbitmq:5672/%2f");
    assert!(services["rabbitmq"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|p| port_mapping(p).1 == 5672));
    // Kafka when asked: the kafka service's in-network listener.
    let kafka_vars = BTreeMap::from([("HERALD_COMPOSE_BROKER", "kafka://kafka:9092")]);
    assert_eq!(
        environment(herald, &kafka_vars)["HERALD_BROKER"],
        "kafka://kafka:9092"
    );
    let kafka = environment(&services["kafka"], &no_vars);
    assert!(kafka["KAFKA_ADVERTISED_LISTENERS"]
        .split(',')
        .any(|l| l == "PLAINTEXT://kafka:9092"));
    for (dependency, required) in [("postgres", true), ("rabbitmq", true), ("kafka", false)] {
        let how = &herald["depends_on"][dependency];
        assert_eq!(text(&how["condition"]), "service_healthy", "{dependency}");
        assert_eq!(
            how["required"].as_bool().unwrap_or(true),
            required,
            "{dependency}"
        );
    }

    // Authentication: the key of the documented variable.
    let key_vars = BTreeMap::from([("HERALD_ADMIN_KEY", "hk_x")]);
    assert_eq!(
        environment(herald, &key_vars)["HERALD_BOOTSTRAP_ADMIN_KEY"],
        "hk_x"
    );
    assert_eq!(env["HERALD_BOOTSTRAP_ADMIN_KEY"], "");

    // One port everywhere: the listener, the published port, the
    // healthcheck, the Dockerfile's EXPOSE.
    let listen = &env["HERALD_LISTEN"];
    let port: u16 = listen
        .strip_prefix("0.0.0.0:")
        .expect("all interfaces")
        .parse()
        .unwrap();
    assert!(herald["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|p| port_mapping(p).1 == port));
    let probe = herald["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(probe.contains(&format!("/dev/tcp/127.0.0.1/{port}")) && probe.contains("/readyz"));
    let dockerfile = read("docker/Dockerfile");
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));

    // The data directory is the mounted volume, the Dockerfile's VOLUME,
    // made and owned by the image's user.
    let data_dir = &env["HERALD_DATA_DIR"];
    assert!(herald["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| text(v).ends_with(&format!(":{data_dir}"))));
    assert!(dockerfile.contains(&format!("VOLUME {data_dir}")));
    assert!(dockerfile.contains(&format!("mkdir -p {data_dir}")));
    assert!(dockerfile.contains("chown -R herald:herald /var/lib/herald"));
    assert!(dockerfile.contains("USER herald:herald"));
}

#[test]
fn the_dockerfile_builds_what_the_compose_file_runs() {
    let dockerfile = read("docker/Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    let builder = froms[0].split_whitespace().next().unwrap();
    let runtime = froms[1].split_whitespace().next().unwrap();
    // The binary runs on the Debian release it was linked on.
    let release = |image: &str| {
        image
            .rsplit(['-', ':'])
            .find(|p| ["bookworm", "trixie", "bullseye"].contains(p))
            .map(str::to_owned)
    };
    assert!(release(builder).is_some());
    assert_eq!(release(builder), release(runtime), "{builder} vs {runtime}");
    // The toolchain is at least the workspace's rust-version.
    let version = builder
        .strip_prefix("rust:")
        .and_then(|v| v.split('-').next())
        .expect("a rust image");
    let cargo_toml = read("Cargo.toml");
    let minimum = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("a rust-version");
    let parse = |v: &str| -> (u32, u32) {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap())
    };
    assert!(parse(version) >= parse(minimum), "{version} < {minimum}");

    // The default features, both brokers included, build the one binary.
    let build = dockerfile
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build");
    assert!(
        build.contains("--release") && build.contains("--locked") && build.contains("--bin herald")
    );
    assert!(!build.contains("--no-default-features") && !build.contains("--features"));
    assert!(cargo_toml.contains("default = [\"amqp\", \"kafka\"]"));
    assert!(
        dockerfile.contains("install -D -m 0755 /app/target/release/herald /usr/local/bin/herald")
    );
    assert!(dockerfile.contains("COPY --from=builder /usr/local/bin/herald /usr/local/bin/herald"));
    assert!(dockerfile.contains("WORKDIR /app") && dockerfile.contains("COPY . ."));
    // The build context keeps what the build needs.
    let ignored = read(".dockerignore");
    for needed in [
        "schemas",
        "benches",
        "events",
        "store",
        "brokers",
        "actors",
        "projections",
        "testkit",
        "src",
    ] {
        assert!(
            !ignored.lines().any(|l| l.trim_matches('/') == needed),
            ".dockerignore drops {needed}"
        );
    }
    // The runtime image (bookworm-slim) has every library the binary needs.
    let ldd = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_herald"))
        .output()
        .expect("run ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let library = line.split_whitespace().next().unwrap_or("");
        assert!(
            [
                "linux-vdso.so.1",
                "libz.so.1",
                "libgcc_s.so.1",
                "libm.so.6",
                "libc.so.6"
            ]
            .contains(&library)
                || library.contains("ld-linux"),
            "the binary needs {library}, which debian:bookworm-slim may lack"
        );
    }
}

/// The README's and docker/README.md's recipe for the admin key.
fn key_recipe() -> String {
    let mut recipes = BTreeSet::new();
    for file in ["README.md", "docker/README.md", "docker/compose.yaml"] {
        for line in read(file).lines() {
            let line = line.trim_start_matches(['#', ' ']);
            if line.starts_with("export HERALD_ADMIN_KEY=") {
                recipes.insert(line.to_owned());
            }
        }
    }
    assert_eq!(recipes.len(), 1, "the recipes differ: {recipes:?}");
    recipes.into_iter().next().unwrap()
}

/// What `docker compose up` runs in the herald container: the image's
/// ENTRYPOINT and CMD (or the service's `command`), with the image's ENV
/// under the service's environment.
fn container(vars: &BTreeMap<&str, &str>) -> (Vec<String>, BTreeMap<String, String>) {
    let dockerfile = read("docker/Dockerfile");
    let json_list = |instruction: &str| -> Vec<String> {
        let line = dockerfile
            .lines()
            .find_map(|l| l.strip_prefix(instruction))
            .unwrap_or_else(|| panic!("no {instruction}"));
        serde_json::from_str(line.trim()).expect("exec form")
    };
    let compose = compose();
    let herald = &services(&compose)["herald"];
    let mut command = json_list("ENTRYPOINT ");
    match herald.get("command").and_then(Value::as_sequence) {
        Some(list) => command.extend(list.iter().map(|v| text(v).to_owned())),
        None => command.extend(json_list("CMD ")),
    }
    assert_eq!(
        command[0], "herald",
        "the entrypoint is the binary on the PATH"
    );
    // ENV A=1 \ B=2: the image's variables.
    let mut env = BTreeMap::new();
    let mut in_env = false;
    for line in dockerfile.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("ENV ") {
            in_env = true;
            for pair in rest.trim_end_matches('\\').split_whitespace() {
                let (k, v) = pair.split_once('=').unwrap();
                env.insert(k.to_owned(), v.to_owned());
            }
        } else if in_env {
            for pair in line.trim_end_matches('\\').split_whitespace() {
                let (k, v) = pair.split_once('=').unwrap();
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        if in_env && !line.ends_with('\\') {
            in_env = false;
        }
    }
    env.extend(environment(herald, vars));
    (command[1..].to_vec(), env)
}

/// Points the compose file's hostnames at this test's servers.
fn locally(
    env: &mut BTreeMap<String, String>,
    db: &TestDatabase,
    vhost: &TestVhost,
    port: u16,
    data: &Path,
) {
    assert!(env["HERALD_STORE"].contains("@postgres:5432/"));
    env.insert("HERALD_STORE".into(), db.url().to_owned());
    assert!(env["HERALD_BROKER"].contains("@rabbitmq:5672/"));
    env.insert("HERALD_BROKER".into(), vhost.url().to_owned());
    let listen = env["HERALD_LISTEN"].replace(":8080", &format!(":{port}"));
    assert_eq!(listen, format!("0.0.0.0:{port}"));
    env.insert("HERALD_LISTEN".into(), listen);
    env.insert("HERALD_DATA_DIR".into(), data.display().to_string());
}

/// Runs the compose file's healthcheck against `port`.
fn healthcheck(port: u16) -> bool {
    let compose = compose();
    let test: Vec<String> = services(&compose)["herald"]["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| text(v).replace("/8080", &format!("/{port}")))
        .collect();
    assert_eq!(test[0], "CMD");
    std::process::Command::new(&test[1])
        .args(&test[2..])
        .status()
        .expect("run the healthcheck")
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_runs_with_the_compose_command_line_and_answers_the_admin_key() {
    let recipe = key_recipe();
    let made = std::process::Command::new("bash")
        .args(["-c", &format!("{recipe}\nprintf %s \"$HERALD_ADMIN_KEY\"")])
        .output()
        .expect("run the key recipe");
    assert!(
        made.status.success(),
        "{recipe}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key = String::from_utf8(made.stdout).unwrap();
    assert!(
        key.starts_with("hk_") && key.len() == 3 + 16 + 1 + 64,
        "{key}"
    );

    let db = TestDatabase::create().await;
    let vhost = TestVhost::create().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let vars = BTreeMap::from([("HERALD_ADMIN_KEY", key.as_str())]);
    let (args, mut env) = container(&vars);
    assert_eq!(args, ["serve"]);
    locally(&mut env, &db, &vhost, port, &dir.path().join("data"));
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    assert!(
        !healthcheck(port),
        "the healthcheck passes with nothing listening"
    );

    let env_pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut herald = Herald::start(dir.path(), &args, &env_pairs);
    herald.base = format!("http://127.0.0.1:{port}");
    herald.wait_healthy(Duration::from_secs(60)).await;
    let healthy = herald_testkit::eventually(Duration::from_secs(30), || async {
        tokio::task::spawn_blocking(move || healthcheck(port))
            .await
            .unwrap()
    })
    .await;
    assert!(
        healthy,
        "the compose healthcheck (GET /readyz) never passed"
    );

    let client = reqwest::Client::new();
    let events = |key: Option<String>| {
        let mut request = client.get(format!("{}/v1/events", herald.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(events(Some(key.clone())).await.unwrap().status(), 200);
    assert_eq!(events(None).await.unwrap().status(), 401);

    // More keys, as docker/README.md makes them in the container.
    let docker_readme = read("docker/README.md");
    let exec = docker_readme
        .lines()
        .find(|l| l.contains("exec herald herald keys create"))
        .expect("docker/README.md makes a key");
    let keys_args = exec.split("exec herald herald ").nth(1).unwrap();
    let made = std::process::Command::new("bash")
        .args(["-c", &format!("\"$HERALD_BIN\" {keys_args}")])
        .env("HERALD_BIN", env!("CARGO_BIN_EXE_herald"))
        .envs(env.iter())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let acme = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    let published = client
        .post(format!("{}/v1/events", herald.base))
        .bearer_auth(&acme)
        .json(&serde_json::json!({"stream": "tickets/D-1", "type": "tickets.note_appended", "version": 1, "payload": {"note": "from the compose stack"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);

    // `docker compose stop` sends SIGTERM.
    let stopped = tokio::task::spawn_blocking(move || herald.terminate(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(stopped.success());

    // Without the key (and no key stored yet) Herald refuses, saying why.
    let fresh = TestDatabase::create().await;
    let (args, mut env) = container(&BTreeMap::new());
    locally(
        &mut env,
        &fresh,
        &vhost,
        free_port(),
        &dir.path().join("data"),
    );
    let refused = herald_command()
        .current_dir(dir.path())
        .args(&args)
        .envs(env.iter())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to serve") && stderr.contains("HERALD_BOOTSTRAP_ADMIN_KEY"),
        "{stderr}"
    );
}
