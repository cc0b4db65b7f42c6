//! Building [`Settings`] from its layers, and printing the result.
//!
//! The defaults, serialized to a TOML table, are the schema: a key exists if and only if the
//! defaults have it, and its type is the type of its default. Each layer is merged into that table
//! key by key, and each key remembers the layer it came from ([`Source`]), so that an error and
//! `routegate config` can say where a value was set. Only then is the table deserialized into
//! [`Settings`] and validated.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{ConfigError, Settings, is_secret};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    DotEnv(String),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::DotEnv(var) => write!(f, ".env {var}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Everything outside the defaults, gathered by the caller so that loading stays testable.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The `--config` file.
    pub config_file: Option<PathBuf>,
    /// The `.env` file to read if it exists (the CLI passes `./.env`).
    pub dotenv_file: Option<PathBuf>,
    /// The process environment (the CLI passes `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// Command-line overrides: `(key, value, flag)`, e.g. `("http.bind", "0.0.0.0:4000", "--bind")`.
    pub flags: Vec<(String, String, String)>,
}

/// The effective configuration and the origin of every key.
#[derive(Debug, Clone)]
pub struct Layered {
    pub settings: Settings,
    pub origins: BTreeMap<String, Source>,
    table: Table,
}

/// Values that are strings in TOML but enums in [`Settings`]: checked early to name what is allowed.
const CHOICES: &[(&str, &[&str])] = &[
    ("storage.durability", &["strict", "interval"]),
    (
        "kafka.compression",
        &["none", "gzip", "lz4", "snappy", "zstd"],
    ),
    (
        "kafka.sasl.mechanism",
        &["none", "plain", "scram-sha-256", "scram-sha-512"],
    ),
    ("log.format", &["text", "json"]),
];

/// Environment aliases operators already use; the `ROUTEGATE_*` name wins when both are set.
const ALIASES: &[(&str, &str)] = &[
    ("kafka.brokers", "KAFKA_BROKERS"),
    ("kafka.client_id", "KAFKA_CLIENT_ID"),
];

/// The environment variable for a key: `storage.max_queue_bytes` → `ROUTEGATE_STORAGE_MAX_QUEUE_BYTES`.
pub fn env_name(key: &str) -> String {
    format!("ROUTEGATE_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every key with its default value, in the order `routegate config` prints them.
pub fn keys() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    flatten("", &defaults_table(), &mut out);
    out
}

/// Merge all layers, deserialize and validate.
pub fn load(overrides: &Overrides) -> Result<Layered, ConfigError> {
    let mut table = defaults_table();
    let mut origins: BTreeMap<String, Source> = keys()
        .into_iter()
        .map(|(k, _)| (k, Source::Default))
        .collect();

    if let Some(path) = &overrides.config_file {
        merge_file(path, &mut table, &mut origins)?;
    }
    let dotenv = match &overrides.dotenv_file {
        Some(path) if path.exists() => read_dotenv(path)?,
        _ => Vec::new(),
    };
    for key in origins.keys().cloned().collect::<Vec<_>>() {
        if let Some((raw, source)) = env_value(&key, &overrides.env, &dotenv) {
            set_from_str(&mut table, &mut origins, &key, &raw, source)?;
        }
    }
    for (key, raw, flag) in &overrides.flags {
        if !origins.contains_key(key) {
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                origin: format!("flag {flag}"),
            });
        }
        set_from_str(
            &mut table,
            &mut origins,
            key,
            raw,
            Source::Flag(flag.clone()),
        )?;
    }

    let settings: Settings =
        Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                ConfigError::invalid("(configuration)", "", "merged layers", e.message())
            })?;
    settings.validate().map_err(|(key, allowed)| {
        let value = lookup(&table, &key).map(display_value).unwrap_or_default();
        let origin = origins.get(&key).unwrap_or(&Source::Default).to_string();
        ConfigError::invalid(key, value, origin, allowed)
    })?;
    Ok(Layered {
        settings,
        origins,
        table,
    })
}

impl Layered {
    /// The effective configuration as TOML, secrets redacted, each key commented with its origin.
    pub fn render(&self) -> String {
        let mut sections: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
        let mut leaves = Vec::new();
        flatten("", &self.table, &mut leaves);
        for (key, value) in leaves {
            let (section, name) = key.rsplit_once('.').unwrap_or(("", &key));
            let value = if is_secret(&key) {
                redact(value)
            } else {
                value
            };
            sections
                .entry(section.to_string())
                .or_default()
                .push((name.to_string(), value));
        }
        let mut out = String::new();
        for (section, entries) in sections {
            out.push_str(&format!("[{section}]\n"));
            for (name, value) in entries {
                let origin = &self.origins[&format!("{section}.{name}")];
                out.push_str(&format!("{name} = {value}  # {origin}\n"));
            }
            out.push('\n');
        }
        out
    }
}

/// Replace a secret with `***`, keeping emptiness visible (an empty list stays empty).
fn redact(value: Value) -> Value {
    match value {
        Value::String(s) if s.is_empty() => Value::String(s),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        _ => Value::String("***".into()),
    }
}

fn defaults_table() -> Table {
    match Value::try_from(Settings::default()) {
        Ok(Value::Table(t)) => t,
        other => unreachable!("Settings always serializes to a table, got {other:?}"),
    }
}

fn flatten(prefix: &str, table: &Table, out: &mut Vec<(String, Value)>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            Value::Table(t) => flatten(&key, t, out),
            leaf => out.push((key, leaf.clone())),
        }
    }
}

fn lookup<'a>(table: &'a Table, key: &str) -> Option<&'a Value> {
    let (head, rest) = key
        .split_once('.')
        .map_or((key, None), |(h, r)| (h, Some(r)));
    match (table.get(head)?, rest) {
        (Value::Table(t), Some(rest)) => lookup(t, rest),
        (v, None) => Some(v),
        _ => None,
    }
}

fn lookup_mut<'a>(table: &'a mut Table, key: &str) -> Option<&'a mut Value> {
    let (head, rest) = key
        .split_once('.')
        .map_or((key, None), |(h, r)| (h, Some(r)));
    match (table.get_mut(head)?, rest) {
        (Value::Table(t), Some(rest)) => lookup_mut(t, rest),
        (v, None) => Some(v),
        _ => None,
    }
}

fn merge_file(
    path: &Path,
    table: &mut Table,
    origins: &mut BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let file: Table = toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_path_buf(),
        at: e
            .span()
            .map_or("an unknown place".into(), |s| place(&text, s.start)),
        message: e.message().trim().replace('\n', "; "),
    })?;
    let mut leaves = Vec::new();
    flatten("", &file, &mut leaves);
    for (key, value) in leaves {
        let source = Source::File(path.to_path_buf());
        let Some(default) = lookup(table, &key) else {
            return Err(ConfigError::UnknownKey {
                key,
                origin: source.to_string(),
            });
        };
        let shown = display_value(&value);
        let value = coerce(default, value)
            .map_err(|allowed| ConfigError::invalid(&key, shown, source.to_string(), allowed))?;
        set(table, origins, &key, value, source)?;
    }
    Ok(())
}

/// `line L, column C (key K)` for a byte offset into a TOML text; the key is the left-hand side
/// of that line under the last `[table]` header, when the line has one.
fn place(text: &str, offset: usize) -> String {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let mut table = String::new();
    let mut key = None;
    for (i, line) in text.lines().enumerate().take(line_no) {
        let line = line.trim();
        if i + 1 == line_no {
            key = line
                .split_once('=')
                .map(|(k, _)| k.trim())
                .filter(|k| is_bare_key(k));
        } else if let Some(header) = line.strip_prefix('[').and_then(|l| l.split_once(']')) {
            table = header.0.trim().to_string();
        }
    }
    match key {
        Some(k) if table.is_empty() => format!("line {line_no}, column {column} (key `{k}`)"),
        Some(k) => format!("line {line_no}, column {column} (key `{table}.{k}`)"),
        None => format!("line {line_no}, column {column}"),
    }
}

fn is_bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The `.env` variables; a parse error names the line and the variable, never the text (dotenvy's
/// own message quotes the whole line, secret included).
fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let err = |e: dotenvy::Error| ConfigError::DotEnv {
        path: path.to_path_buf(),
        message: match e {
            dotenvy::Error::LineParse(line, _) => dotenv_place(&text, &line),
            other => other.to_string(),
        },
    };
    dotenvy::from_path_iter(path)
        .map_err(err)?
        .map(|item| item.map_err(err))
        .collect()
}

/// Where the unparsable (possibly multi-line) entry `entry` starts, and its variable's name.
fn dotenv_place(text: &str, entry: &str) -> String {
    let first = entry.lines().next().unwrap_or_default();
    let line_no = text
        .lines()
        .position(|l| l.trim() == first.trim())
        .map_or_else(|| "?".to_string(), |i| (i + 1).to_string());
    let name = first
        .trim()
        .trim_start_matches("export ")
        .split_once('=')
        .map(|(n, _)| n.trim())
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        });
    match name {
        Some(n) => format!("line {line_no}: cannot parse the value of {n}"),
        None => format!("line {line_no}: cannot parse the line"),
    }
}

/// The environment value of a key: real environment before `.env`, `ROUTEGATE_*` before aliases.
fn env_value(
    key: &str,
    env: &[(String, String)],
    dotenv: &[(String, String)],
) -> Option<(String, Source)> {
    let mut names = vec![env_name(key)];
    names.extend(
        ALIASES
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, a)| a.to_string()),
    );
    let find = |vars: &[(String, String)], name: &str| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    for name in &names {
        if let Some(v) = find(env, name) {
            return Some((v, Source::Env(name.clone())));
        }
    }
    for name in &names {
        if let Some(v) = find(dotenv, name) {
            return Some((v, Source::DotEnv(name.clone())));
        }
    }
    None
}

fn set_from_str(
    table: &mut Table,
    origins: &mut BTreeMap<String, Source>,
    key: &str,
    raw: &str,
    source: Source,
) -> Result<(), ConfigError> {
    let default = lookup(table, key).expect("key exists: checked by the caller");
    let value = parse_as(default, raw)
        .map_err(|allowed| ConfigError::invalid(key, raw, source.to_string(), allowed))?;
    set(table, origins, key, value, source)
}

fn set(
    table: &mut Table,
    origins: &mut BTreeMap<String, Source>,
    key: &str,
    value: Value,
    source: Source,
) -> Result<(), ConfigError> {
    if let Some((_, choices)) = CHOICES.iter().find(|(k, _)| *k == key)
        && !value.as_str().is_some_and(|s| choices.contains(&s))
    {
        return Err(ConfigError::invalid(
            key,
            display_value(&value),
            source.to_string(),
            format!("expected one of: {}", choices.join(", ")),
        ));
    }
    *lookup_mut(table, key).expect("key exists: checked by the caller") = value;
    origins.insert(key.to_string(), source);
    Ok(())
}

/// Parse an environment or flag string as the type of the key's default.
fn parse_as(default: &Value, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    match default {
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Integer(_) => raw
            .replace('_', "")
            .parse::<u64>()
            .ok()
            .and_then(|n| i64::try_from(n).ok())
            .map(Value::Integer)
            .ok_or_else(|| "expected a whole number of at least 0".into()),
        Value::Float(_) => raw
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| "expected a number".into()),
        Value::Boolean(_) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err("expected true or false".into()),
        },
        Value::Array(_) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        other => Err(format!("cannot be set from text (a {})", other.type_str())),
    }
}

/// Check a file value against the default's type; integers are accepted where floats are expected.
fn coerce(default: &Value, value: Value) -> Result<Value, String> {
    match (default, value) {
        (Value::Float(_), Value::Integer(i)) => Ok(Value::Float(i as f64)),
        (Value::Integer(_), Value::Integer(i)) if i < 0 => {
            Err("expected a whole number of at least 0".into())
        }
        (Value::Array(_), Value::Array(items)) if items.iter().all(Value::is_str) => {
            Ok(Value::Array(items))
        }
        // `[[kafka.consume]]` entries: their fields are checked when the settings are typed.
        (Value::Array(_), Value::Array(items)) if items.iter().all(Value::is_table) => {
            Ok(Value::Array(items))
        }
        (d, v) if d.same_type(&v) && !d.is_array() => Ok(v),
        (d, v) => Err(format!("expected a {}, got {}", type_name(d), v.type_str())),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list of strings",
        Value::Integer(_) => "whole number",
        other => other.type_str(),
    }
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(display_value)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_without_any_layer() {
        let l = load(&Overrides::default()).unwrap();
        assert_eq!(l.settings, Settings::default());
        assert!(l.origins.values().all(|s| *s == Source::Default));
    }

    #[test]
    fn precedence_is_file_then_dotenv_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        std::fs::write(
            &file,
            "[http]\nbind = \"127.0.0.1:1\"\n[kafka]\nclient_id = \"file\"\nlinger_ms = 7\n[optimize]\ndetour_factor = 2\n",
        )
        .unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            "KAFKA_CLIENT_ID=dotenv\nROUTEGATE_KAFKA_LINGER_MS=8\n",
        )
        .unwrap();
        let l = load(&Overrides {
            config_file: Some(file.clone()),
            dotenv_file: Some(dotenv),
            env: env(&[("ROUTEGATE_KAFKA_LINGER_MS", "9")]),
            flags: vec![("http.bind".into(), "127.0.0.1:2".into(), "--bind".into())],
        })
        .unwrap();
        assert_eq!(l.settings.http.bind, "127.0.0.1:2");
        assert_eq!(l.settings.kafka.client_id, "dotenv");
        assert_eq!(l.settings.kafka.linger_ms, 9);
        assert_eq!(l.settings.optimize.detour_factor, 2.0);
        assert_eq!(l.origins["http.bind"], Source::Flag("--bind".into()));
        assert_eq!(
            l.origins["kafka.linger_ms"],
            Source::Env("ROUTEGATE_KAFKA_LINGER_MS".into())
        );
        assert_eq!(l.origins["optimize.detour_factor"], Source::File(file));
    }

    #[test]
    fn kafka_brokers_alias_splits_on_commas_and_loses_to_the_prefixed_name() {
        let l = load(&Overrides {
            env: env(&[("KAFKA_BROKERS", "a:1, b:2")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.settings.kafka.brokers, vec!["a:1", "b:2"]);
        let l = load(&Overrides {
            env: env(&[("KAFKA_BROKERS", "a:1"), ("ROUTEGATE_KAFKA_BROKERS", "c:3")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.settings.kafka.brokers, vec!["c:3"]);
    }

    #[test]
    fn bad_env_value_names_key_value_origin_and_what_is_allowed() {
        let err = load(&Overrides {
            env: env(&[("ROUTEGATE_STORAGE_MAX_QUEUE_BYTES", "lots")]),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("storage.max_queue_bytes"), "{err}");
        assert!(err.contains("lots"), "{err}");
        assert!(err.contains("ROUTEGATE_STORAGE_MAX_QUEUE_BYTES"), "{err}");
        assert!(err.contains("whole number"), "{err}");
    }

    #[test]
    fn enum_values_list_the_choices() {
        let err = load(&Overrides {
            flags: vec![("storage.durability".into(), "fast".into(), "--set".into())],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("strict, interval"), "{err}");
    }

    #[test]
    fn range_violation_reports_the_effective_value_and_its_origin() {
        let err = load(&Overrides {
            env: env(&[("ROUTEGATE_HTTP_BIND", "localhost")]),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`http.bind`") && err.contains("\"localhost\""),
            "{err}"
        );
        assert!(err.contains("env ROUTEGATE_HTTP_BIND"), "{err}");
    }

    #[test]
    fn unknown_file_key_and_wrong_file_type_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        std::fs::write(&file, "[kafka]\nbrokerz = [\"a:1\"]\n").unwrap();
        let err = load(&Overrides {
            config_file: Some(file.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "kafka.brokerz"));
        std::fs::write(&file, "[kafka]\nlinger_ms = \"5\"\n").unwrap();
        let err = load(&Overrides {
            config_file: Some(file),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("kafka.linger_ms") && err.contains("whole number"),
            "{err}"
        );
    }

    #[test]
    fn render_redacts_secrets_and_round_trips_through_toml() {
        let l = load(&Overrides {
            env: env(&[
                ("ROUTEGATE_KAFKA_SASL_MECHANISM", "plain"),
                ("ROUTEGATE_KAFKA_SASL_USERNAME", "svc"),
                ("ROUTEGATE_KAFKA_SASL_PASSWORD", "hunter2"),
                (
                    "ROUTEGATE_HTTP_API_TOKENS",
                    "token-aaaaaaaaaaaaaaaa,token-bbbbbbbbbbbbbbbb",
                ),
            ]),
            ..Default::default()
        })
        .unwrap();
        let text = l.render();
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("token-aaaa"));
        assert!(text.contains("api_tokens = [\"***\", \"***\"]"), "{text}");
        assert!(text.contains("password = \"***\""));
        let parsed: Table = toml::from_str(&text).unwrap();
        assert_eq!(
            lookup(&parsed, "kafka.sasl.username").unwrap().as_str(),
            Some("svc")
        );
    }

    #[test]
    fn toml_errors_name_line_and_key_but_never_show_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.toml");
        for text in [
            "[kafka.sasl]\npassword = \"s3cr3t-aa\n",
            "[kafka.sasl]\npassword = s3cr3t-aa\n",
            "[kafka.sasl]\npassword = \"s3cr3t-aa\" x\n",
            "[kafka.sasl]\npassword = \"s3cr3t-aa\"\npassword = \"s3cr3t-aa\"\n",
            "[http]\napi_tokens = [\"s3cr3t-aa\"\n",
        ] {
            std::fs::write(&file, text).unwrap();
            let err = load(&Overrides {
                config_file: Some(file.clone()),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
            assert!(!err.contains("s3cr3t"), "{text:?} gave {err}");
            assert!(err.contains("line "), "{text:?} gave {err}");
        }
        assert_eq!(
            place("[kafka.sasl]\npassword = \"x", 24),
            "line 2, column 12 (key `kafka.sasl.password`)"
        );
        assert_eq!(place("a = 1\n= 2", 7), "line 2, column 2");
    }

    #[test]
    fn the_readme_documents_every_key() {
        let readme = include_str!("../../README.md");
        for (key, _) in keys() {
            assert!(
                readme.contains(&format!("| `{key}` |")),
                "README lacks {key}"
            );
        }
    }

    #[test]
    fn the_example_config_file_sets_every_key_to_its_default() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/data/routegate.example.toml");
        let l = load(&Overrides {
            config_file: Some(file.into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.settings, Settings::default());
        let text = std::fs::read_to_string(file).unwrap();
        let parsed: Table = toml::from_str(&text).unwrap();
        for (key, _) in keys() {
            assert!(lookup(&parsed, &key).is_some(), "example lacks {key}");
        }
    }

    #[test]
    fn every_key_has_a_distinct_environment_name() {
        let names: std::collections::HashSet<_> = keys().iter().map(|(k, _)| env_name(k)).collect();
        assert_eq!(names.len(), keys().len());
    }
}
