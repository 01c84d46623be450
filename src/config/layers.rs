//! Builds a [`Config`] from its layers: defaults < YAML file < `HYPERCACHE_<SECTION>__<KEY>`
//! environment variables < command-line flags. Every error names the key path it is about.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::{ByteSize, Config, EvictionPolicy, SyncPolicy};

/// Command-line flags that override the other layers (Redis's names, so redis-server
/// scripts carry over).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bind: Option<String>,
    pub port: Option<u16>,
    pub dir: Option<PathBuf>,
    pub maxmemory: Option<ByteSize>,
    pub maxdisk: Option<ByteSize>,
    pub maxmemory_policy: Option<EvictionPolicy>,
    pub databases: Option<u16>,
    pub appendonly: Option<bool>,
    pub appendfsync: Option<SyncPolicy>,
    pub requirepass: Option<String>,
    pub protected_mode: Option<bool>,
    pub loglevel: Option<String>,
    /// `--replicaof HOST PORT`.
    pub replicaof: Option<String>,
}

/// Every problem found, one per line, each starting with its key path or source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

const ENV_PREFIX: &str = "HYPERCACHE_";

/// Loads the configuration. `env` is normally `std::env::vars()`; tests pass their own.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut merged = serde_yaml::to_value(Config::default()).expect("defaults serialize");

    if let Some(path) = file {
        match std::fs::read_to_string(path) {
            Err(err) => problems.push(format!("{}: cannot read: {err}", path.display())),
            Ok(text) => match serde_yaml::from_str::<Value>(&text) {
                Err(err) => problems.push(format!("{}: not valid YAML: {err}", path.display())),
                Ok(Value::Null) => {}
                Ok(layer) => merge(&mut merged, layer, "", &mut problems),
            },
        }
    }

    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest
            .split("__")
            .map(|part| part.to_ascii_lowercase())
            .collect();
        set_path(&mut merged, &path, &raw, &name, &mut problems);
    }

    if !problems.is_empty() {
        return Err(ConfigError(problems));
    }
    let mut config: Config = serde_path_to_error::deserialize(merged)
        .map_err(|err| ConfigError(vec![format!("{}: {}", err.path(), err.inner())]))?;
    apply_overrides(&mut config, overrides);
    config.validate().map_err(|err| ConfigError(vec![err]))?;
    Ok(config)
}

/// Overlays `layer` on `base`, reporting keys the configuration does not have.
fn merge(base: &mut Value, layer: Value, path: &str, problems: &mut Vec<String>) {
    match (base, layer) {
        (Value::Mapping(base), Value::Mapping(layer)) => {
            for (key, value) in layer {
                let name = match &key {
                    Value::String(name) => name.clone(),
                    other => format!("{other:?}"),
                };
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value, &child_path, problems),
                    None => problems.push(format!("{child_path}: unknown key")),
                }
            }
        }
        (Value::Mapping(_), other) => problems.push(format!(
            "{path}: expected a section (mapping), got {other:?}"
        )),
        (slot, value) => *slot = value,
    }
}

/// Sets one environment variable's value at `path`. Text stays text where the default is
/// text or unset (passwords such as "123" must not turn into numbers); elsewhere it is
/// read as a YAML scalar so numbers and booleans work.
fn set_path(root: &mut Value, path: &[String], raw: &str, var: &str, problems: &mut Vec<String>) {
    let mut node = root;
    for (depth, part) in path.iter().enumerate() {
        let Value::Mapping(map) = node else {
            problems.push(format!(
                "{var}: {} is not a section",
                path[..depth].join(".")
            ));
            return;
        };
        let key = Value::String(part.clone());
        if !map.contains_key(&key) {
            problems.push(format!("{var}: unknown key {}", path.join(".")));
            return;
        }
        node = map.get_mut(&key).expect("checked above");
    }
    *node = match node {
        Value::Mapping(_) => {
            problems.push(format!(
                "{var}: {} is a section, not a value",
                path.join(".")
            ));
            return;
        }
        Value::String(_) | Value::Null => Value::String(raw.to_string()),
        _ => serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string())),
    };
}

fn apply_overrides(config: &mut Config, flags: &Overrides) {
    if let Some(bind) = &flags.bind {
        config.server.bind = bind.clone();
    }
    if let Some(port) = flags.port {
        config.server.port = port;
    }
    if let Some(dir) = &flags.dir {
        config.storage.dir = dir.clone();
    }
    if let Some(maxmemory) = flags.maxmemory {
        config.storage.maxmemory = maxmemory;
    }
    if let Some(maxdisk) = flags.maxdisk {
        config.storage.maxdisk = (maxdisk.0 != 0).then_some(maxdisk);
    }
    if let Some(policy) = flags.maxmemory_policy {
        config.storage.maxmemory_policy = policy;
    }
    if let Some(databases) = flags.databases {
        config.storage.databases = databases;
    }
    if let Some(appendonly) = flags.appendonly {
        config.persistence.wal = appendonly;
    }
    if let Some(sync) = flags.appendfsync {
        config.persistence.sync = sync;
    }
    if let Some(protected) = flags.protected_mode {
        config.security.protected_mode = protected;
    }
    if let Some(password) = &flags.requirepass {
        config.security.requirepass = Some(password.clone());
    }
    if let Some(level) = &flags.loglevel {
        config.logging.level = level.clone();
    }
    if let Some(primary) = &flags.replicaof {
        config.replication.replicaof = Some(primary.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml::Mapping;

    fn mapping_keys(value: &Value) -> Vec<String> {
        match value {
            Value::Mapping(map) => map
                .keys()
                .filter_map(|key| key.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_load_with_nothing_set() {
        let config = load(None, Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(
            mapping_keys(&serde_yaml::to_value(Config::default()).unwrap()),
            vec![
                "server",
                "storage",
                "persistence",
                "replication",
                "limits",
                "security",
                "tls",
                "logging",
                "slowlog"
            ]
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let file = write("server:\n  port: 7000\n  maxclients: 50\nstorage:\n  maxmemory: 64mb\n");
        let env = vec![
            ("HYPERCACHE_SERVER__PORT".to_string(), "7100".to_string()),
            (
                "HYPERCACHE_SECURITY__REQUIREPASS".to_string(),
                "123".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let flags = Overrides {
            maxmemory: Some(ByteSize(128 << 20)),
            ..Overrides::default()
        };
        let config = load(Some(file.path()), env, &flags).unwrap();
        assert_eq!(config.server.maxclients, 50, "file beats defaults");
        assert_eq!(config.server.port, 7100, "env beats file");
        assert_eq!(
            config.storage.maxmemory,
            ByteSize(128 << 20),
            "flags beat file"
        );
        assert_eq!(config.security.requirepass.as_deref(), Some("123"));
    }

    #[test]
    fn errors_name_the_key_path() {
        let file = write("server:\n  prot: 1\nstorage:\n  maxmemory: lots\n  bogus: 2\n");
        let err = load(Some(file.path()), Vec::new(), &Overrides::default()).unwrap_err();
        assert!(
            err.0.contains(&"server.prot: unknown key".to_string()),
            "{err}"
        );
        assert!(
            err.0.contains(&"storage.bogus: unknown key".to_string()),
            "{err}"
        );

        let file = write("storage:\n  maxmemory: lots\n");
        let err = load(Some(file.path()), Vec::new(), &Overrides::default()).unwrap_err();
        assert!(err.to_string().starts_with("storage.maxmemory: "), "{err}");

        let file = write("server:\n  port: 99999\n");
        let err = load(Some(file.path()), Vec::new(), &Overrides::default()).unwrap_err();
        assert!(err.to_string().starts_with("server.port: "), "{err}");

        let env = vec![("HYPERCACHE_SERVER__NOPE".to_string(), "1".to_string())];
        let err = load(None, env, &Overrides::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "HYPERCACHE_SERVER__NOPE: unknown key server.nope"
        );

        let file = write("logging:\n  level: loud\n");
        let err = load(Some(file.path()), Vec::new(), &Overrides::default()).unwrap_err();
        assert!(err.to_string().starts_with("logging.level: "), "{err}");
    }

    #[test]
    fn shipped_config_file_is_the_defaults() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/hypercache.yaml");
        let config = load(Some(&shipped), Vec::new(), &Overrides::default()).unwrap();
        assert_eq!(config, Config::default());
        // Every key is spelled out in the shipped file.
        let text = std::fs::read_to_string(&shipped).unwrap();
        let value: Value = serde_yaml::from_str(&text).unwrap();
        let defaults = serde_yaml::to_value(Config::default()).unwrap();
        let Value::Mapping(defaults) = defaults else {
            panic!()
        };
        for (section, fields) in defaults {
            let Value::Mapping(fields) = fields else {
                continue;
            };
            for (field, _) in fields {
                let present = value
                    .get(&section)
                    .and_then(|s| s.as_mapping())
                    .is_some_and(|s: &Mapping| s.contains_key(&field));
                assert!(
                    present,
                    "configs/hypercache.yaml lacks {section:?}.{field:?}"
                );
            }
        }
    }
}
