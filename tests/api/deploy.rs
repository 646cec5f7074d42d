//! The deployment files, checked offline: the compose file and the Kubernetes manifests parse,
//! carry the expected kinds, and agree with each other and with the service's settings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn load(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not YAML: {e}"))
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

/// A mapping with its `<<` merge keys applied, as compose reads it.
fn merged(y: &Yaml) -> BTreeMap<String, Yaml> {
    let mut out = BTreeMap::new();
    let Some(map) = y.as_hash() else {
        return out;
    };
    if let Some(base) = map.get(&Yaml::String("<<".into())) {
        out.extend(merged(base));
    }
    for (k, v) in map {
        if let Some(k) = k.as_str().filter(|k| *k != "<<") {
            out.insert(k.to_owned(), v.clone());
        }
    }
    out
}

/// Every environment variable the service reads: its settings, the log format and filter.
fn known_env() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.insert(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeSet::from(["LOG_FORMAT".to_owned(), "RUST_LOG".to_owned()]);
    walk(&upconfirm::cli::Cli::command(), &mut out);
    out
}

#[test]
fn compose_runs_every_part_with_known_settings() {
    let docs = load(&deploy("compose.yaml"));
    assert_eq!(docs.len(), 1);
    let services = docs[0]["services"].as_hash().expect("compose has services");
    let names: BTreeSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    for want in ["postgres", "rabbitmq", "minio", "migrate", "api", "worker"] {
        assert!(names.contains(want), "no {want} service in {names:?}");
    }
    assert!(
        str_of(&docs[0]["services"]["rabbitmq"]["image"], "rabbitmq image").contains("management"),
        "RabbitMQ runs with its management plugin"
    );

    let known = known_env();
    for (role, command) in [("migrate", "migrate"), ("api", "api"), ("worker", "worker")] {
        let service = merged(&docs[0]["services"][role]);
        assert!(
            service.contains_key("image") && service.contains_key("build"),
            "{role} uses the upconfirm image"
        );
        assert_eq!(
            service["command"][0].as_str(),
            Some(command),
            "{role} runs `upconfirm {command}`"
        );
        let env = merged(&service["environment"]);
        for required in ["DATABASE_URL", "AMQP_URL", "S3_ENDPOINT", "S3_BUCKET"] {
            assert!(env.contains_key(required), "{role} has no {required}");
        }
        for key in env.keys() {
            assert!(
                known.contains(key),
                "{role} sets {key}, which nothing reads"
            );
        }
        let depends = service["depends_on"].as_hash().expect("depends_on");
        for dep in depends.keys() {
            assert!(
                names.contains(str_of(dep, "dependency")),
                "{role} depends on a missing service {dep:?}"
            );
        }
    }
    let worker = merged(&docs[0]["services"]["worker"]);
    assert!(
        worker["deploy"]["replicas"].as_i64().unwrap_or(0) >= 1,
        "workers are a pool with deploy.replicas"
    );
    assert_eq!(
        docs[0]["services"]["api"]["depends_on"]["migrate"]["condition"].as_str(),
        Some("service_completed_successfully"),
        "the API starts after the migration"
    );
}

/// Every document of every manifest, by kind and name.
fn manifests() -> BTreeMap<(String, String), Yaml> {
    let mut out = BTreeMap::new();
    let dir = deploy("k8s");
    for entry in std::fs::read_dir(&dir).expect("deploy/k8s") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml")
            || path.file_name() == Some("kustomization.yaml".as_ref())
        {
            continue;
        }
        for doc in load(&path) {
            let kind = str_of(&doc["kind"], "kind").to_owned();
            let name = str_of(&doc["metadata"]["name"], "metadata.name").to_owned();
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{path:?}: {kind} has no apiVersion"
            );
            out.insert((kind, name), doc);
        }
    }
    out
}

fn get<'a>(all: &'a BTreeMap<(String, String), Yaml>, kind: &str, name: &str) -> &'a Yaml {
    all.get(&(kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

#[test]
fn manifests_carry_the_expected_kinds_and_agree() {
    let all = manifests();
    let config = get(&all, "ConfigMap", "upconfirm");
    get(&all, "Secret", "upconfirm");
    get(&all, "Job", "upconfirm-migrate");
    get(&all, "Service", "upconfirm-api");
    get(&all, "TriggerAuthentication", "upconfirm-rabbitmq");
    let api = get(&all, "Deployment", "upconfirm-api");
    let worker = get(&all, "Deployment", "upconfirm-worker");
    let scaled = get(&all, "ScaledObject", "upconfirm-worker");

    // kustomization.yaml names exactly the files there are.
    let kustomization = &load(&deploy("k8s/kustomization.yaml"))[0];
    for resource in kustomization["resources"].as_vec().expect("resources") {
        let file = str_of(resource, "resource");
        assert!(deploy("k8s").join(file).exists(), "missing {file}");
    }

    // Settings are ones the service reads.
    let known = known_env();
    for kind in ["ConfigMap", "Secret"] {
        let doc = get(&all, kind, "upconfirm");
        let data = doc["data"]
            .as_hash()
            .or(doc["stringData"].as_hash())
            .expect("data");
        for key in data.keys() {
            let key = str_of(key, "key");
            assert!(
                known.contains(key),
                "{kind} sets {key}, which nothing reads"
            );
        }
    }

    // Probes and scraping on each role's port.
    for (deployment, role) in [(api, "api"), (worker, "worker")] {
        let pod = &deployment["spec"]["template"];
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["args"][0].as_str(), Some(role));
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz")
        );
        assert_eq!(
            pod["metadata"]["annotations"]["prometheus.io/path"].as_str(),
            Some("/metrics")
        );
        assert_eq!(
            pod["spec"]["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true)
        );
    }

    // The worker's grace period covers its drain.
    let drain: i64 = str_of(&config["data"]["WORKER_DRAIN_SECONDS"], "drain")
        .parse()
        .expect("a number of seconds");
    let grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > drain,
        "grace {grace} s must exceed the {drain} s drain"
    );

    // KEDA scales the worker Deployment on the bulk jobs waiting in PostgreSQL (the
    // dispatcher keeps the broker's bulk queue short) and on both lanes' queues.
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"].as_str(),
        Some("upconfirm-worker")
    );
    let triggers = scaled["spec"]["triggers"].as_vec().expect("triggers");
    let postgres: Vec<&Yaml> = triggers
        .iter()
        .filter(|t| t["type"].as_str() == Some("postgresql"))
        .collect();
    assert_eq!(postgres.len(), 1, "one trigger on the waiting bulk jobs");
    assert_eq!(
        postgres[0]["metadata"]["query"].as_str(),
        Some(upconfirm::store::outbox::WAITING_BULK_JOBS)
    );
    assert_eq!(
        postgres[0]["authenticationRef"]["name"].as_str(),
        Some("upconfirm-postgresql")
    );
    let prefix = str_of(&config["data"]["QUEUE_PREFIX"], "QUEUE_PREFIX");
    let topology = upconfirm::queue::Topology {
        prefix: prefix.to_owned(),
        delivery_limit: 5,
    };
    let queues: BTreeSet<&str> = triggers
        .iter()
        .filter(|t| t["type"].as_str() == Some("rabbitmq"))
        .map(|t| {
            assert_eq!(t["metadata"]["mode"].as_str(), Some("QueueLength"));
            assert_eq!(
                t["authenticationRef"]["name"].as_str(),
                Some("upconfirm-rabbitmq")
            );
            str_of(&t["metadata"]["queueName"], "queueName")
        })
        .collect();
    let lanes: Vec<String> = upconfirm::queue::Lane::ALL
        .iter()
        .map(|lane| topology.queue(*lane))
        .collect();
    assert_eq!(
        queues,
        lanes.iter().map(String::as_str).collect::<BTreeSet<&str>>(),
        "a trigger on each lane's queue"
    );
    for (kind, name) in [
        ("TriggerAuthentication", "upconfirm-postgresql"),
        ("TriggerAuthentication", "upconfirm-rabbitmq"),
    ] {
        get(&all, kind, name);
    }
}

#[test]
fn the_image_builds_in_stages_and_runs_as_non_root() {
    let text = std::fs::read_to_string(deploy("Dockerfile")).expect("deploy/Dockerfile");
    let from = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(from >= 2, "a multi-stage build: {from} FROM line(s)");
    let last_stage = text.rsplit("\nFROM ").next().unwrap_or_default();
    let user = last_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage names its USER");
    assert!(
        !["root", "0", "root:root", "0:0"].contains(&user.trim()),
        "runs as {user}"
    );
    assert!(last_stage.contains("ENTRYPOINT [\"/usr/local/bin/upconfirm\"]"));
    // Migrations are compiled in: they must be in the build context before the build.
    let copy_migrations = text.find("COPY migrations").expect("migrations copied");
    let last_build = text.rfind("cargo build").expect("a cargo build");
    assert!(copy_migrations < last_build);
    // The build context is the repository: its ignore file keeps `target/` out, and lets in
    // everything the build copies.
    let ignore = std::fs::read_to_string(deploy("Dockerfile.dockerignore")).expect("ignore file");
    let ignored: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(ignored.contains(&"*") || ignored.contains(&"target"));
    for copied in text
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len() - 1].to_vec()
        })
    {
        assert!(
            !ignored.contains(&"*") || ignored.contains(&format!("!{copied}").as_str()),
            "{copied} is copied but ignored"
        );
    }
}
