//! The README's Envoy configuration, checked against Envoy's own protos, as
//! far as that is possible without an Envoy binary (none can be installed
//! here): its `http_filters` and `clusters` are set into a complete
//! `envoy.config.bootstrap.v3.Bootstrap` and decoded with protobuf's JSON
//! mapping, which is what Envoy does to YAML it loads. Unknown fields, wrong
//! types, bad enum names, durations without a unit and `Any` payloads whose
//! `@type` names no message all fail, as in Envoy. The protos are those that
//! envoy-types ships (envoyproxy/data-plane-api, cncf/xds, googleapis,
//! protoc-gen-validate), compiled by protox at run time.
//!
//! Envoy also enforces the protos' `(validate.rules)`: the rules the
//! configuration could break (required messages and oneofs, minimum lengths
//! and counts, numeric bounds, deprecated fields and enum values) are
//! checked here by walking the decoded message; so are two of Envoy's own
//! start-up checks (the gRPC service's cluster exists, the router ends the
//! filter chain). What this cannot check is the rest of Envoy's behaviour:
//! rules it enforces in code, that the filters are registered in the Envoy
//! build at hand, that DNS resolves, that the cluster answers.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::LazyLock,
};

use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value,
};
use serde_json::json;

/// The sentence in README.md right before the Envoy YAML block.
const ENVOY_ANCHOR: &str = "Envoy's filter and the cluster it calls";

/// The files holding every message the configuration uses (protox follows
/// their imports): the bootstrap, the listener's HTTP connection manager,
/// the two HTTP filters and the cluster's protocol options.
const ENVOY_PROTOS: [&str; 5] = [
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
];

/// The roots, under envoy-types' `proto/` directory, that Envoy's imports
/// are relative to.
const PROTO_ROOTS: [&str; 6] = [
    "data-plane-api",
    "xds",
    "googleapis",
    "protoc-gen-validate",
    "cel-spec/proto",
    "opentelemetry-proto",
];

/// Envoy's protos, compiled once per test process.
static ENVOY: LazyLock<DescriptorPool> = LazyLock::new(|| {
    let protos = envoy_types_protos();
    let roots: Vec<PathBuf> = PROTO_ROOTS.iter().map(|root| protos.join(root)).collect();
    let mut compiler =
        protox::Compiler::new(&roots).unwrap_or_else(|error| panic!("proto roots under {protos:?}: {error}"));
    compiler.include_imports(true);
    compiler
        .open_files(ENVOY_PROTOS)
        .unwrap_or_else(|error| panic!("compiling Envoy's protos under {protos:?}: {error}"));
    compiler.descriptor_pool()
});

#[test]
fn the_readme_envoy_configuration_is_a_valid_bootstrap() {
    // Arrange
    let readme = readme_yaml_after(ENVOY_ANCHOR);

    // Act
    let checked = check_envoy(&readme);

    // Assert
    if let Err(problem) = checked {
        panic!(
            "README.md's Envoy configuration (the YAML after {ENVOY_ANCHOR:?}) is not what Envoy accepts: {problem}"
        );
    }
}

#[test]
fn the_check_refuses_what_envoy_refuses() {
    // Arrange: the README's configuration, broken in one place at a time.
    let readme = readme_yaml_after(ENVOY_ANCHOR);
    let breakages = [
        ("failure_mode_allow:", "failure_mode_alow:", "failure_mode_alow"),
        ("transport_api_version: V3", "transport_api_version: V4", "V4"),
        ("transport_api_version: V3", "transport_api_version: V2", "deprecated"),
        ("timeout: 0.25s", "timeout: 0.25", "timeout"),
        ("timeout: 0.25s", "timeout: 250ms", "timeout"),
        ("v3.ExtAuthz", "v3.ExtAuthZ", "ExtAuthZ"),
        ("port_value: 50051", "port_value: 70000", "port_value"),
        ("{cluster_name: token_authority}", "{cluster_name: \"\"}", "cluster_name"),
        ("{cluster_name: token_authority}", "{cluster_name: elsewhere}", "elsewhere"),
        ("      envoy_grpc: {cluster_name: token_authority}\n", "", "target_specifier"),
        ("{socket_address: {address: token-authority.internal, port_value: 50051}}", "{}", "address"),
        ("type: STRICT_DNS", "type: STRICT_DNZ", "STRICT_DNZ"),
        ("{http2_protocol_options: {}}", "{}", "protocol_config"),
        (
            "- name: envoy.filters.http.ext_authz",
            "- name: envoy.filters.http.router\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n- name: envoy.filters.http.ext_authz",
            "router",
        ),
        // HTTP/2 set the way older Envoys took it, on the cluster itself.
        ("type: STRICT_DNS", "type: STRICT_DNS\n  http2_protocol_options: {}", "deprecated"),
    ];

    for (from, to, named) in breakages {
        assert!(readme.contains(from), "the README's Envoy YAML no longer contains {from:?}; update this test");
        let broken = readme.replacen(from, to, 1);

        // Act
        let checked = check_envoy(&broken);

        // Assert
        match checked {
            Ok(()) => panic!("{from:?} -> {to:?} was accepted"),
            Err(problem) => assert!(problem.contains(named), "{from:?} -> {to:?}: {problem:?} does not name {named:?}"),
        }
    }
}

/// Whether Envoy would load `readme` (the YAML of the README's block): the
/// complete bootstrap decodes, keeps the rules, refers only to clusters it
/// defines and ends its HTTP filters with the router.
fn check_envoy(readme: &str) -> Result<(), String> {
    let pool = &*ENVOY;
    let bootstrap = bootstrap_with(readme)?;
    let descriptor = message(pool, "envoy.config.bootstrap.v3.Bootstrap");
    let decoded = decode(descriptor, &bootstrap)?;
    let mut problems = Vec::new();
    check_rules(pool, &decoded, "", &mut problems);
    check_grpc_clusters(&bootstrap, &mut problems);
    check_router_last(&bootstrap, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// A complete bootstrap around the README's filters and clusters: one
/// listener whose HTTP connection manager runs the filters and answers 200
/// itself once they allow the request.
fn bootstrap_with(readme: &str) -> Result<serde_json::Value, String> {
    let yaml: serde_json::Value =
        serde_yaml_ng::from_str(readme).map_err(|error| format!("the YAML does not parse: {error}"))?;
    let keys: BTreeSet<&str> = yaml.as_object().into_iter().flatten().map(|(key, _)| key.as_str()).collect();
    if keys != BTreeSet::from(["clusters", "http_filters"]) {
        return Err(format!("the block must hold exactly `http_filters` and `clusters`, not {keys:?}"));
    }
    Ok(json!({
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}},
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "ingress",
                            "route_config": {
                                "name": "local",
                                "virtual_hosts": [{
                                    "name": "application",
                                    "domains": ["*"],
                                    "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}],
                                }],
                            },
                            "http_filters": yaml["http_filters"],
                        },
                    }],
                }],
            }],
            "clusters": yaml["clusters"],
        },
    }))
}

/// `json` decoded as a `descriptor` message with protobuf's JSON mapping,
/// refusing unknown fields and enum names; an error names the path to the
/// value at fault.
fn decode(descriptor: MessageDescriptor, json: &serde_json::Value) -> Result<DynamicMessage, String> {
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(json, &mut track);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    DynamicMessage::deserialize_with_options(descriptor, deserializer, &options)
        .map_err(|error| format!("at {}: {error}", track.path()))
}

/// Every `(validate.rules)` and `(validate.required)` annotation of the
/// fields and oneofs that Envoy's configuration could break, checked on
/// `message` and everything in it (the payloads of `Any` too), and every
/// deprecated field or enum value in use (Envoy warns, or refuses them).
fn check_rules(pool: &DescriptorPool, message: &DynamicMessage, path: &str, problems: &mut Vec<String>) {
    let descriptor = message.descriptor();
    if descriptor.full_name() == "google.protobuf.Any" {
        let type_url = message.get_field_by_name("type_url").and_then(|url| url.as_str().map(str::to_owned));
        let bytes = message.get_field_by_name("value").and_then(|value| value.as_bytes().cloned());
        let name = type_url.as_deref().and_then(|url| url.rsplit_once('/')).map(|(_, name)| name);
        if let (Some(payload), Some(bytes)) = (name.and_then(|name| pool.get_message_by_name(name)), bytes) {
            match DynamicMessage::decode(payload, bytes) {
                Ok(payload) => check_rules(pool, &payload, path, problems),
                Err(error) => problems.push(format!("at {path}: {error}")),
            }
        }
        return;
    }
    for oneof in descriptor.oneofs() {
        let required = oneof.options().get_extension(&extension(pool, "validate.required")).as_bool() == Some(true);
        if required && !oneof.fields().any(|field| message.has_field(&field)) {
            problems.push(format!("at {path}: one of `{}` is required", oneof.name()));
        }
    }
    for field in descriptor.fields() {
        let field_path = if path.is_empty() {
            field.name().to_owned()
        } else {
            format!("{path}.{}", field.name())
        };
        let present = message.has_field(&field);
        if present
            && field.field_descriptor_proto().options.as_ref().and_then(|options| options.deprecated) == Some(true)
        {
            problems.push(format!("at {field_path}: deprecated"));
        }
        check_field_rules(pool, message, &field, &field_path, problems);
        if !present {
            continue;
        }
        match &*message.get_field(&field) {
            Value::Message(inner) => check_rules(pool, inner, &field_path, problems),
            Value::List(values) => {
                for (index, value) in values.iter().enumerate() {
                    check_value(pool, &field, value, &format!("{field_path}[{index}]"), problems);
                }
            }
            Value::Map(entries) => {
                for (key, value) in entries {
                    let key = match key {
                        MapKey::String(key) => key.clone(),
                        other => format!("{other:?}"),
                    };
                    if let Value::Message(inner) = value {
                        check_rules(pool, inner, &format!("{field_path}[{key}]"), problems);
                    }
                }
            }
            value => check_value(pool, &field, value, &field_path, problems),
        }
    }
}

/// A deprecated enum value, or what is inside a message, in one value.
fn check_value(pool: &DescriptorPool, field: &FieldDescriptor, value: &Value, path: &str, problems: &mut Vec<String>) {
    match (value, field.kind()) {
        (Value::Message(inner), _) => check_rules(pool, inner, path, problems),
        (Value::EnumNumber(number), Kind::Enum(enumeration)) => {
            let value = enumeration.get_value(*number);
            let deprecated =
                value.as_ref().and_then(|value| value.enum_value_descriptor_proto().options.as_ref()?.deprecated);
            if let (Some(value), Some(true)) = (value, deprecated) {
                problems.push(format!("at {path}: {} is deprecated", value.name()));
            }
        }
        _ => {}
    }
}

/// The field's own `(validate.rules)`: the kinds of rule this configuration
/// could break. Rules Envoy's protos put on fields it does not use (string
/// patterns, `in` lists, ...) are not looked at.
fn check_field_rules(
    pool: &DescriptorPool,
    message: &DynamicMessage,
    field: &FieldDescriptor,
    path: &str,
    problems: &mut Vec<String>,
) {
    let options = field.options();
    let rules = options.get_extension(&extension(pool, "validate.rules"));
    let Some(rules) = rules.as_message() else { return };
    let present = message.has_field(field);
    // As protoc-gen-validate: a oneof's fields are checked only when set.
    if !present && field.containing_oneof().is_some() {
        return;
    }
    let value = message.get_field(field);
    for (rule_kind, rule) in rules.fields() {
        let Some(rule) = rule.as_message() else { continue };
        let get = |name: &str| {
            rule.get_field_by_name(name)
                .filter(|_| rule.has_field_by_name(name))
                .map(|value| value.into_owned())
        };
        if get("ignore_empty").and_then(|value| value.as_bool()) == Some(true) && !present {
            continue;
        }
        if get("required").and_then(|value| value.as_bool()) == Some(true) && !present {
            problems.push(format!("at {path}: required"));
        }
        match rule_kind.name() {
            "string" => {
                let length = value.as_str().map_or(0, |value| value.chars().count()) as u64;
                if let Some(minimum) = get("min_len").and_then(|value| value.as_u64())
                    && length < minimum
                {
                    problems.push(format!("at {path}: at least {minimum} characters, got {length}"));
                }
            }
            "repeated" => {
                let count = value.as_list().map_or(0, <[Value]>::len) as u64;
                if let Some(minimum) = get("min_items").and_then(|value| value.as_u64())
                    && count < minimum
                {
                    problems.push(format!("at {path}: at least {minimum} items, got {count}"));
                }
            }
            "uint32" | "uint64" | "int32" | "int64" => {
                let number = match &*value {
                    Value::U32(number) => i128::from(*number),
                    Value::U64(number) => i128::from(*number),
                    Value::I32(number) => i128::from(*number),
                    Value::I64(number) => i128::from(*number),
                    _ => continue,
                };
                let bound = |name: &str| {
                    get(name).and_then(|value| match value {
                        Value::U32(bound) => Some(i128::from(bound)),
                        Value::U64(bound) => Some(i128::from(bound)),
                        Value::I32(bound) => Some(i128::from(bound)),
                        Value::I64(bound) => Some(i128::from(bound)),
                        _ => None,
                    })
                };
                let broken = [
                    ("lt", bound("lt").filter(|bound| number >= *bound)),
                    ("lte", bound("lte").filter(|bound| number > *bound)),
                    ("gt", bound("gt").filter(|bound| number <= *bound)),
                    ("gte", bound("gte").filter(|bound| number < *bound)),
                ];
                for (name, bound) in broken {
                    if let Some(bound) = bound {
                        problems.push(format!("at {path}: {number} breaks `{name}: {bound}`"));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Every gRPC service's `envoy_grpc.cluster_name` names a cluster of the
/// bootstrap: Envoy refuses to start otherwise.
fn check_grpc_clusters(bootstrap: &serde_json::Value, problems: &mut Vec<String>) {
    let clusters = &bootstrap["static_resources"]["clusters"];
    let defined: BTreeSet<&str> =
        clusters.as_array().into_iter().flatten().filter_map(|cluster| cluster["name"].as_str()).collect();
    let mut called = Vec::new();
    cluster_names(bootstrap, &mut called);
    for name in called {
        if !defined.contains(name) {
            problems.push(format!("envoy_grpc calls cluster {name:?}, which is not among the clusters {defined:?}"));
        }
    }
}

/// The router, the one terminal filter here, ends the HTTP filter chain and
/// appears once: Envoy refuses a chain that does otherwise.
fn check_router_last(bootstrap: &serde_json::Value, problems: &mut Vec<String>) {
    const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
    let manager = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let types: Vec<&str> = manager["http_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|filter| filter["typed_config"]["@type"].as_str().unwrap_or_default())
        .collect();
    if types.last() != Some(&ROUTER) || types.iter().filter(|&&filter| filter == ROUTER).count() != 1 {
        problems.push(format!("http_filters must end with the router, once: {types:?}"));
    }
}

/// The `cluster_name` of every `envoy_grpc` in `value`.
fn cluster_names<'a>(value: &'a serde_json::Value, names: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, inner) in object {
                if key == "envoy_grpc" || key == "envoyGrpc" {
                    let name = &inner["cluster_name"];
                    names.extend(name.as_str().or_else(|| inner["clusterName"].as_str()));
                }
                cluster_names(inner, names);
            }
        }
        serde_json::Value::Array(values) => values.iter().for_each(|inner| cluster_names(inner, names)),
        _ => {}
    }
}

/// The message `name` of Envoy's protos.
fn message(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
    pool.get_message_by_name(name).unwrap_or_else(|| panic!("{name} is not among the compiled protos"))
}

/// The extension `name` (protoc-gen-validate's annotations).
fn extension(pool: &DescriptorPool, name: &str) -> prost_reflect::ExtensionDescriptor {
    pool.get_extension_by_name(name)
        .unwrap_or_else(|| panic!("{name} is not among the compiled protos"))
}

/// The body of the first ```yaml block after `anchor` in README.md.
fn readme_yaml_after(anchor: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {path:?}: {error}"));
    let (_, after) = readme.split_once(anchor).unwrap_or_else(|| panic!("README.md no longer says {anchor:?}"));
    let (_, block) = after
        .split_once("```yaml\n")
        .unwrap_or_else(|| panic!("README.md has no ```yaml block after {anchor:?}"));
    let (yaml, _) = block
        .split_once("\n```")
        .unwrap_or_else(|| panic!("the ```yaml block after {anchor:?} is not closed"));
    yaml.to_owned()
}

/// envoy-types' `proto/` directory: in Cargo's registry under `CARGO_HOME`
/// for the version Cargo.lock names, or else wherever `cargo metadata` says
/// the crate is (a vendored or patched copy).
fn envoy_types_protos() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock"))
        .unwrap_or_else(|error| panic!("reading Cargo.lock: {error}"));
    let version = lock
        .split("[[package]]")
        .find(|package| package.contains("\nname = \"envoy-types\"\n"))
        .and_then(|package| package.lines().find_map(|line| line.strip_prefix("version = \"")))
        .and_then(|version| version.strip_suffix('"'))
        .unwrap_or_else(|| panic!("Cargo.lock names no version of envoy-types"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let in_registry = cargo_home
        .and_then(|home| std::fs::read_dir(home.join("registry/src")).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(format!("envoy-types-{version}/proto")))
        .find(|protos| protos.is_dir());
    in_registry.unwrap_or_else(|| envoy_types_from_cargo_metadata(workspace))
}

/// envoy-types' `proto/` directory, where `cargo metadata` finds the crate.
fn envoy_types_from_cargo_metadata(workspace: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .output()
        .unwrap_or_else(|error| panic!("running cargo metadata: {error}"));
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("cargo metadata's output: {error}"));
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "envoy-types")
        .and_then(|package| package["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("cargo metadata lists no envoy-types"));
    let protos = Path::new(manifest).with_file_name("proto");
    assert!(protos.is_dir(), "envoy-types has no proto/ directory at {protos:?}");
    protos
}
