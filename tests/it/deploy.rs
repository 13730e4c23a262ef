//! The deploy files, checked as far as they can be here: every YAML parses; compose runs two
//! bot replicas on a Redis that fsyncs every write and never evicts, behind one front that
//! forwards only what Lark calls, with health checks the images can run; the Kubernetes
//! manifests have what each kind needs (probes on /healthz and /readyz, 2+ replicas, a
//! PodDisruptionBudget, env from a ConfigMap and a Secret, no public /metrics); and every
//! variable the deploy files name is one the configuration reader knows, the required ones
//! all provided.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use abort_bot::config::{Settings, Sources, VARIABLES};
use serde::Deserialize;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every document of a YAML file, as JSON values.
fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value = serde_yaml_ng::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
            serde_json::to_value(value)
                .unwrap_or_else(|e| panic!("{relative}: not a plain document: {e}"))
        })
        .collect()
}

fn k8s_documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.ends_with(".yaml"), "only YAML in deploy/k8s: {name}");
        for doc in yaml_documents(&format!("k8s/{name}")) {
            docs.push((name.clone(), doc));
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == kind)
        .collect()
}

fn named<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> Option<&'a Value> {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The variables a bot cannot start without, as the configuration reader says.
fn required_variables() -> BTreeSet<String> {
    match Settings::from_sources(&Sources::default()) {
        Ok(_) => BTreeSet::new(),
        Err(e) => e.problems.iter().map(|p| p.variable.to_owned()).collect(),
    }
}

/// `NAME=value` lines of an env file: (name, commented out).
fn env_file_names(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (commented, rest) = match line.strip_prefix('#') {
                Some(rest) => (true, rest.trim_start()),
                None => (false, line),
            };
            let (name, _) = rest.split_once('=')?;
            let looks_like_a_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            looks_like_a_name.then(|| (name.to_owned(), commented))
        })
        .collect()
}

fn assert_known(names: impl IntoIterator<Item = String>, file: &str) {
    for name in names {
        assert!(
            VARIABLES.contains(&name.as_str()),
            "{file} sets {name}, which the configuration reader does not know"
        );
    }
}

#[test]
fn every_variable_in_the_deploy_files_is_known_and_the_required_ones_are_given() {
    let required = required_variables();
    assert!(required.contains("LARK_APP_SECRET"), "{required:?}");

    let example = env_file_names(&read("abort-bot.env.example"));
    assert_known(
        example.iter().map(|(n, _)| n.clone()),
        "abort-bot.env.example",
    );
    let given: BTreeSet<String> = example
        .iter()
        .filter(|(_, commented)| !commented)
        .map(|(n, _)| n.clone())
        .collect();
    let missing: Vec<_> = required.difference(&given).collect();
    assert!(
        missing.is_empty(),
        "abort-bot.env.example lacks {missing:?}"
    );

    // systemd reads the example (as its EnvironmentFile) and sets a few itself.
    let unit = read("abort-bot.service");
    assert!(unit.contains("EnvironmentFile=/etc/abort-bot/abort-bot.env"));
    assert_known(
        unit.lines()
            .filter_map(|l| l.strip_prefix("Environment="))
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_owned())),
        "abort-bot.service",
    );

    let dockerfile = read("Dockerfile");
    let mut image_env = Vec::new();
    let mut continued = false;
    for line in dockerfile.lines().map(str::trim) {
        let rest = match line.strip_prefix("ENV ") {
            Some(rest) => rest,
            None if continued => line,
            None => continue,
        };
        image_env.extend(
            rest.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, _)| k.to_owned()),
        );
        continued = line.ends_with('\\');
    }
    assert!(
        image_env.contains(&"ABORT_BOT_STORE".to_owned()),
        "{image_env:?}"
    );
    assert_known(image_env, "Dockerfile");

    let compose = &yaml_documents("compose.yaml")[0];
    let bot = &compose["services"]["abort-bot"];
    assert_eq!(
        bot["env_file"], "abort-bot.env",
        "compose reads the example's copy"
    );
    assert_known(keys(&bot["environment"]), "compose.yaml");

    // Kubernetes: the ConfigMap and the Secret together give every required variable.
    let docs = k8s_documents();
    let config = named(&docs, "ConfigMap", "abort-bot").expect("ConfigMap abort-bot");
    let secret = named(&docs, "Secret", "abort-bot").expect("Secret abort-bot");
    let config_keys = keys(&config["data"]);
    let secret_keys = keys(&secret["stringData"]);
    assert_known(config_keys.clone(), "k8s/configmap.yaml");
    assert_known(secret_keys.clone(), "k8s/secret.yaml");
    // Commented-out suggestions must be real names too.
    assert_known(
        read("k8s/configmap.yaml").lines().filter_map(|l| {
            let l = l.trim().strip_prefix('#')?.trim();
            let (name, _) = l.split_once(':')?;
            let is_name = ["ABORT_BOT_", "LARK_", "FEISHU_"]
                .iter()
                .any(|p| name.starts_with(p))
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_name.then(|| name.to_owned())
        }),
        "k8s/configmap.yaml",
    );
    let given: BTreeSet<String> = config_keys.union(&secret_keys).cloned().collect();
    let missing: Vec<_> = required.difference(&given).collect();
    assert!(
        missing.is_empty(),
        "the ConfigMap and Secret lack {missing:?}"
    );
    for secret_name in ["LARK_APP_SECRET", "FEISHU_PROJECT_PLUGIN_SECRET"] {
        assert!(
            secret_keys.contains(secret_name) && !config_keys.contains(secret_name),
            "{secret_name} belongs in the Secret only"
        );
    }
}

#[test]
fn compose_runs_two_replicas_on_a_durable_redis_behind_one_front() {
    let compose = &yaml_documents("compose.yaml")[0];
    let services = &compose["services"];
    assert_eq!(
        keys(services),
        BTreeSet::from(["abort-bot".into(), "redis".into(), "front".into()])
    );

    let bot = &services["abort-bot"];
    assert!(bot["deploy"]["replicas"].as_u64() >= Some(2), "{bot}");
    let store = bot["environment"]["ABORT_BOT_STORE"]
        .as_str()
        .unwrap_or_default();
    assert!(store.starts_with("redis://redis:"), "{store}");
    assert!(
        bot.get("ports").is_none(),
        "the bots publish nothing: {bot}"
    );
    assert_eq!(bot["depends_on"]["redis"]["condition"], "service_healthy");
    let probe = bot["healthcheck"]["test"]
        .as_array()
        .expect("a healthcheck");
    assert_eq!(probe[0], "CMD");
    assert_eq!(probe[1], "curl", "{probe:?}");
    assert!(probe.iter().any(|a| a == "--fail"), "a probe that can fail");
    assert!(
        probe
            .iter()
            .any(|a| a.as_str().is_some_and(|s| s.ends_with(":3000/readyz"))),
        "{probe:?}"
    );
    // The probe runs inside the bot's image: its runtime stage must install curl.
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap_or_default();
    assert!(
        runtime
            .lines()
            .any(|l| l.contains("apt-get install") && l.split_whitespace().any(|w| w == "curl")),
        "the runtime image has no curl"
    );
    let grace = bot["stop_grace_period"].as_str().unwrap_or_default();
    let grace = abort_bot::config::parse_duration(grace).expect("a stop grace period");
    assert!(grace.as_secs() >= 30, "SIGTERM may take 30 s: {grace:?}");

    let redis = &services["redis"];
    let command: Vec<&str> = redis["command"]
        .as_array()
        .expect("redis command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (flag, value) in [
        ("--appendonly", "yes"),
        ("--appendfsync", "always"),
        ("--maxmemory-policy", "noeviction"),
    ] {
        let at = command.iter().position(|a| *a == flag);
        assert_eq!(
            at.and_then(|i| command.get(i + 1)).copied(),
            Some(value),
            "redis {flag} {value}: {command:?}"
        );
    }
    assert!(redis.get("ports").is_none(), "Redis publishes nothing");
    assert!(redis["healthcheck"]["test"].is_array());
    let store_net = &compose["networks"]["store"];
    assert_eq!(store_net["internal"], true, "Redis has no way out");
    assert_eq!(redis["networks"], serde_json::json!(["store"]));

    let front = &services["front"];
    let ports = front["ports"].as_array().expect("the front publishes");
    assert_eq!(ports.len(), 1, "one published port: {ports:?}");
    assert_eq!(
        front["depends_on"]["abort-bot"]["condition"],
        "service_healthy"
    );
    assert!(front["healthcheck"]["test"].is_array());
    let mounted = front["volumes"][0].as_str().unwrap_or_default();
    assert!(mounted.starts_with("./nginx.conf:"), "{mounted}");
}

/// The exact paths an nginx configuration forwards to `upstream`; panics unless everything
/// else answers 404.
fn proxied_paths(conf: &str, upstream: &str) -> Vec<String> {
    let mut proxied = Vec::new();
    let mut refused_rest = false;
    for block in conf.split("location ").skip(1) {
        let (head, body) = block.split_once('{').expect("a location block");
        let body = body.split('}').next().unwrap_or_default();
        let head: Vec<&str> = head.split_whitespace().collect();
        match head.as_slice() {
            ["=", path] if body.contains(&format!("proxy_pass {upstream};")) => {
                proxied.push((*path).to_owned());
            }
            ["/"] => refused_rest = body.contains("return 404;") && !body.contains("proxy_pass"),
            other => panic!("unexpected location {other:?}"),
        }
    }
    assert!(
        refused_rest,
        "everything else (/metrics included) answers 404"
    );
    proxied.sort_unstable();
    proxied
}

#[test]
fn the_front_forwards_only_what_lark_calls() {
    let conf = read("nginx.conf");
    assert_eq!(
        proxied_paths(&conf, "http://abort_bot"),
        ["/healthz", "/lark/cards", "/lark/events"]
    );
    assert!(
        conf.contains("server abort-bot:3000 resolve;"),
        "both replicas, re-resolved"
    );
}

#[test]
fn under_systemd_the_bot_listens_on_loopback_behind_an_https_front() {
    let unit = read("abort-bot.service");
    let listen = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=ABORT_BOT_LISTEN="))
        .expect("the unit sets ABORT_BOT_LISTEN");
    let addr: std::net::SocketAddr = listen.parse().expect("an address");
    assert!(addr.ip().is_loopback(), "{addr}: /metrics would be public");

    let conf = read("nginx-host.conf");
    assert_eq!(
        proxied_paths(&conf, &format!("http://{addr}")),
        ["/healthz", "/lark/cards", "/lark/events"]
    );
    assert!(conf.contains("listen 443 ssl;"), "the public side is HTTPS");
    for directive in ["ssl_certificate ", "ssl_certificate_key ", "server_name "] {
        assert!(conf.contains(directive), "{directive}");
    }
}

#[test]
fn the_kubernetes_manifests_are_complete_and_keep_metrics_inside() {
    let docs = k8s_documents();
    // What every object needs, and what each kind needs on top.
    for (file, doc) in &docs {
        for field in ["apiVersion", "kind"] {
            assert!(doc[field].is_string(), "{file}: no {field}");
        }
        assert!(
            doc["metadata"]["name"].is_string(),
            "{file}: no metadata.name"
        );
        let kind = doc["kind"].as_str().unwrap_or_default();
        let (api, needs): (&str, &[&str]) = match kind {
            "Deployment" | "StatefulSet" => ("apps/v1", &["selector", "template"]),
            "Service" => ("v1", &["selector", "ports"]),
            "ConfigMap" => ("v1", &[]),
            "Secret" => ("v1", &[]),
            "PodDisruptionBudget" => ("policy/v1", &["selector"]),
            "Ingress" => ("networking.k8s.io/v1", &["rules"]),
            "NetworkPolicy" => ("networking.k8s.io/v1", &["podSelector"]),
            other => panic!("{file}: unexpected kind {other}"),
        };
        assert_eq!(doc["apiVersion"], api, "{file}: {kind}");
        for field in needs {
            assert!(
                !doc["spec"][field].is_null(),
                "{file}: {kind} without spec.{field}"
            );
        }
        if let Some(selector) = doc["spec"]["selector"]["matchLabels"].as_object() {
            let labels = &doc["spec"]["template"]["metadata"]["labels"];
            if !labels.is_null() {
                for (k, v) in selector {
                    assert_eq!(&labels[k], v, "{file}: the selector must match the pods");
                }
            }
        }
    }

    let deployment = named(&docs, "Deployment", "abort-bot").expect("Deployment abort-bot");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    assert!(replicas >= 2, "{replicas} replicas");
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(grace > 30, "SIGTERM may take 30 s: {grace}");
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let port_names: Vec<&str> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let port = get["port"].as_str().unwrap_or_default();
        assert!(port_names.contains(&port), "{probe} port {port}");
    }
    for limit in ["requests", "limits"] {
        assert!(
            c["resources"][limit]["memory"].is_string(),
            "resources.{limit}"
        );
    }
    let env_from = c["envFrom"].as_array().expect("envFrom");
    let config_ref = env_from
        .iter()
        .find_map(|e| e["configMapRef"]["name"].as_str());
    let secret_ref = env_from
        .iter()
        .find_map(|e| e["secretRef"]["name"].as_str());
    assert!(named(&docs, "ConfigMap", config_ref.unwrap_or_default()).is_some());
    assert!(named(&docs, "Secret", secret_ref.unwrap_or_default()).is_some());
    let bot_labels = &deployment["spec"]["selector"]["matchLabels"];

    let pdbs = of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdbs.len(), 1);
    assert_eq!(&pdbs[0]["spec"]["selector"]["matchLabels"], bot_labels);
    let min = pdbs[0]["spec"]["minAvailable"]
        .as_u64()
        .expect("minAvailable");
    assert!(
        (1..replicas).contains(&min),
        "a drain keeps {min} of {replicas}"
    );

    // Nothing is exposed outside the cluster but the Ingress, and it routes Lark's paths only.
    for service in of_kind(&docs, "Service") {
        let kind = service["spec"]["type"].as_str().unwrap_or("ClusterIP");
        assert_eq!(kind, "ClusterIP", "{service}");
    }
    let bot_service = named(&docs, "Service", "abort-bot").expect("Service abort-bot");
    assert_eq!(&bot_service["spec"]["selector"], bot_labels);
    let ingresses = of_kind(&docs, "Ingress");
    assert_eq!(ingresses.len(), 1);
    let mut paths = Vec::new();
    for rule in ingresses[0]["spec"]["rules"].as_array().expect("rules") {
        for p in rule["http"]["paths"].as_array().expect("paths") {
            assert_eq!(p["pathType"], "Exact", "{p}");
            assert_eq!(p["backend"]["service"]["name"], "abort-bot");
            paths.push(p["path"].as_str().unwrap_or_default().to_owned());
        }
    }
    paths.sort();
    assert_eq!(paths, ["/lark/cards", "/lark/events"]);

    // The Redis it ships fsyncs every write and never evicts, like compose's.
    let redis = named(&docs, "StatefulSet", "abort-bot-redis").expect("StatefulSet");
    let args: Vec<&str> = redis["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("redis args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for pair in [
        ["--appendonly", "yes"],
        ["--appendfsync", "always"],
        ["--maxmemory-policy", "noeviction"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    let config = named(&docs, "ConfigMap", "abort-bot").expect("ConfigMap");
    let store = config["data"]["ABORT_BOT_STORE"]
        .as_str()
        .unwrap_or_default();
    assert!(store.starts_with("redis://abort-bot-redis:"), "{store}");
}
