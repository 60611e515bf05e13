//! The table layout options: where lynk's locks sit in a table whose keys
//! the user chose. Each setting comes from a flag, else an environment
//! variable, else the layout file (`--layout-file` / `LYNK_LAYOUT_FILE`),
//! else the default (the original's `lockKey` table). The settings are
//! turned into lynk-dynamo's [`TableLayout`], which does the mapping;
//! nothing here maps a name onto keys.

use std::fmt;
use std::path::{Path, PathBuf};

use lynk_dynamo::{LynkAttribute, TableLayout};

use crate::cli::LayoutArgs;
use crate::exit::{self, Failure};
use crate::output::shell_quote;

/// Where a setting came from, for messages (`--sort-key`, `LYNK_SORT_KEY`,
/// `layout file f.toml, line 3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// A line of the layout file.
    File {
        /// The file as given.
        path: PathBuf,
        /// 1-based.
        line: usize,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "{flag}"),
            Origin::Env(var) => write!(f, "{var}"),
            Origin::File { path, line } => {
                write!(f, "layout file {}, line {line}", path.display())
            }
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Its origin.
    pub origin: Origin,
}

/// How a lock name maps onto the sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortMapping {
    /// The whole name in the partition key, this value in the sort key.
    Fixed(String),
    /// `group/rest`: the group in the partition key, the rest in the sort key.
    Grouped,
}

/// One source's settings (the flags, the environment, or the file), each
/// with its origin. Merged flag > env > file by [`LayoutSettings::merge`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutSettings {
    /// The partition key's attribute name.
    pub partition_key: Option<Setting<String>>,
    /// Written before the lock name (or group) in the partition key.
    pub key_prefix: Option<Setting<String>>,
    /// The sort key's attribute name.
    pub sort_key: Option<Setting<String>>,
    /// How names map onto the sort key.
    pub mapping: Option<Setting<SortMapping>>,
    /// The group separator of a grouped layout.
    pub group_separator: Option<Setting<String>>,
    /// Renamed lynk attributes: (lynk's name, the table's name).
    pub attributes: Vec<Setting<(String, String)>>,
}

/// The keys a layout file may set, in the order the docs list them.
pub const FILE_KEYS: [&str; 6] = [
    "partition_key",
    "key_prefix",
    "sort_key",
    "sort_key_value",
    "grouped",
    "group_separator",
];

fn usage(message: String) -> Failure {
    Failure::new(exit::USAGE, message)
}

impl LayoutSettings {
    /// `self` (higher precedence) over `lower`, setting by setting; the
    /// sort-key mapping (fixed value or grouped) is one setting, and each
    /// renamed attribute is one setting.
    pub fn merge(mut self, lower: LayoutSettings) -> LayoutSettings {
        self.partition_key = self.partition_key.or(lower.partition_key);
        self.key_prefix = self.key_prefix.or(lower.key_prefix);
        self.sort_key = self.sort_key.or(lower.sort_key);
        self.mapping = self.mapping.or(lower.mapping);
        self.group_separator = self.group_separator.or(lower.group_separator);
        for a in lower.attributes {
            if !self.attributes.iter().any(|s| s.value.0 == a.value.0) {
                self.attributes.push(a);
            }
        }
        self
    }

    /// Reads the settings of the environment: `LYNK_PARTITION_KEY`,
    /// `LYNK_KEY_PREFIX`, `LYNK_SORT_KEY`, `LYNK_SORT_KEY_VALUE`,
    /// `LYNK_GROUPED` (`true`/`false`), `LYNK_GROUP_SEPARATOR` and `LYNK_ATTRIBUTES`
    /// (`lynkName=theirName,...`). Empty variables count as unset.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<LayoutSettings, Failure> {
        let var = |name: &'static str| {
            get(name).filter(|v| !v.is_empty()).map(|value| Setting {
                value,
                origin: Origin::Env(name),
            })
        };
        let mut s = LayoutSettings {
            partition_key: var("LYNK_PARTITION_KEY"),
            key_prefix: var("LYNK_KEY_PREFIX"),
            sort_key: var("LYNK_SORT_KEY"),
            group_separator: var("LYNK_GROUP_SEPARATOR"),
            ..LayoutSettings::default()
        };
        let fixed = var("LYNK_SORT_KEY_VALUE");
        let grouped = match var("LYNK_GROUPED") {
            None => None,
            Some(g) => match parse_bool(&g.value) {
                Some(true) => Some(g.origin),
                Some(false) => None,
                None => {
                    return Err(usage(format!(
                        "LYNK_GROUPED is {:?}; set it to true or false (or unset it)",
                        g.value
                    )))
                }
            },
        };
        s.mapping = mapping_of(fixed, grouped)?;
        if let Some(list) = var("LYNK_ATTRIBUTES") {
            for pair in list.value.split(',').filter(|p| !p.trim().is_empty()) {
                let value = parse_rename(pair).map_err(|m| {
                    usage(format!(
                        "LYNK_ATTRIBUTES: {m}; write it as lynkName=theirName pairs joined by commas, e.g. fencingToken=lockFencingToken,payload=lockPayload"
                    ))
                })?;
                push_rename(&mut s.attributes, value, list.origin.clone())?;
            }
        }
        Ok(s)
    }

    /// Reads a layout file: `key = value` lines (TOML: values may be quoted
    /// with `"`), `#` comments, blank lines, and an `[attributes]` section of
    /// `lynkName = "theirName"` lines. Any other line is exit 2 naming it.
    pub fn from_file(path: &Path) -> Result<LayoutSettings, Failure> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(format!(
                "cannot read the layout file {}: {e}; check the path given with --layout-file or LYNK_LAYOUT_FILE",
                path.display()
            ))
        })?;
        Self::parse_file(path, &text)
    }

    /// [`Self::from_file`] on `text`.
    pub fn parse_file(path: &Path, text: &str) -> Result<LayoutSettings, Failure> {
        let mut s = LayoutSettings::default();
        let mut section: Option<String> = None;
        let mut fixed: Option<Setting<String>> = None;
        let mut grouped: Option<Setting<bool>> = None;
        for (i, raw) in text.lines().enumerate() {
            let origin = Origin::File {
                path: path.to_owned(),
                line: i + 1,
            };
            let bad = |what: String| usage(format!("{origin}: {what}"));
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let Some(name) = name.strip_suffix(']') else {
                    return Err(bad(format!(
                        "{line:?} is not a section header; write [attributes]"
                    )));
                };
                let name = name.trim();
                if name != "attributes" {
                    return Err(bad(format!(
                        "unknown section [{name}]; the only section is [attributes] (renamed lynk attributes)"
                    )));
                }
                section = Some(name.to_owned());
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(format!(
                    "{line:?} is not `key = value`; e.g. partition_key = \"pk\""
                )));
            };
            let key = key.trim();
            let value = unquote(value.trim()).map_err(&bad)?;
            if section.is_some() {
                let pair = parse_rename(&format!("{}={value}", unquote(key).map_err(&bad)?))
                    .map_err(&bad)?;
                push_rename(&mut s.attributes, pair, origin)?;
                continue;
            }
            let duplicate = |previous: &Origin| {
                bad(format!(
                    "`{key}` is set twice (first at line {}); keep one",
                    match previous {
                        Origin::File { line, .. } => *line,
                        _ => 0,
                    }
                ))
            };
            let setting = Setting {
                value: value.clone(),
                origin: origin.clone(),
            };
            let slot = match key {
                "partition_key" => &mut s.partition_key,
                "key_prefix" => &mut s.key_prefix,
                "sort_key" => &mut s.sort_key,
                "sort_key_value" => &mut fixed,
                "group_separator" => &mut s.group_separator,
                "grouped" => {
                    let Some(b) = parse_bool(&value) else {
                        return Err(bad(format!("grouped is {value:?}; write true or false")));
                    };
                    if let Some(p) = &grouped {
                        return Err(duplicate(&p.origin));
                    }
                    grouped = Some(Setting { value: b, origin });
                    continue;
                }
                other => {
                    return Err(bad(format!(
                    "unknown setting `{other}`; the settings are {} and an [attributes] section",
                    FILE_KEYS.join(", ")
                )))
                }
            };
            if let Some(p) = slot {
                return Err(duplicate(&p.origin));
            }
            *slot = Some(setting);
        }
        let grouped = grouped.and_then(|g| g.value.then_some(g.origin));
        s.mapping = mapping_of(fixed, grouped)?;
        Ok(s)
    }
}

/// The mapping of one source: a fixed value or grouped, not both.
fn mapping_of(
    fixed: Option<Setting<String>>,
    grouped: Option<Origin>,
) -> Result<Option<Setting<SortMapping>>, Failure> {
    match (fixed, grouped) {
        (Some(f), Some(g)) => Err(usage(format!(
            "{} (a fixed sort-key value) and {g} (grouped names) exclude each other: a lock name maps onto the sort key one way; keep one",
            f.origin
        ))),
        (Some(f), None) => Ok(Some(Setting {
            value: SortMapping::Fixed(f.value),
            origin: f.origin,
        })),
        (None, Some(origin)) => Ok(Some(Setting {
            value: SortMapping::Grouped,
            origin,
        })),
        (None, None) => Ok(None),
    }
}

/// Adds a rename, refusing a lynk attribute renamed twice in one source.
fn push_rename(
    list: &mut Vec<Setting<(String, String)>>,
    value: (String, String),
    origin: Origin,
) -> Result<(), Failure> {
    if let Some(p) = list.iter().find(|s| s.value.0 == value.0) {
        return Err(usage(format!(
            "{origin}: attribute {} is renamed twice (also at {}); keep one",
            value.0, p.origin
        )));
    }
    list.push(Setting { value, origin });
    Ok(())
}

/// `lynkName=theirName`.
pub fn parse_rename(text: &str) -> Result<(String, String), String> {
    let Some((from, to)) = text.split_once('=') else {
        return Err(format!("{text:?} is not lynkName=theirName"));
    };
    let (from, to) = (from.trim(), to.trim());
    if from.is_empty() || to.is_empty() {
        return Err(format!(
            "{text:?} has an empty name; write lynkName=theirName"
        ));
    }
    Ok((from.to_owned(), to.to_owned()))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// The line without a `#` comment (a `#` inside quotes is kept).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// A bare value, or a `"quoted"` one with `\"` and `\\` escapes.
fn unquote(value: &str) -> Result<String, String> {
    let Some(inner) = value.strip_prefix('"') else {
        if value.contains('"') {
            return Err(format!("{value:?} has a stray quote; write \"value\""));
        }
        return Ok(value.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                Some('t') => out.push('\t'),
                other => {
                    return Err(format!(
                        "unknown escape \\{} in {value}; only \\\" \\\\ and \\t are understood",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            },
            '"' => {
                let rest = chars.as_str().trim();
                if !rest.is_empty() {
                    return Err(format!("text after the closing quote: {rest:?}"));
                }
                return Ok(out);
            }
            c => out.push(c),
        }
    }
    Err(format!("{value} has no closing quote"))
}

/// The settings given as flags.
pub fn from_flags(args: &LayoutArgs) -> LayoutSettings {
    let flag = |value: &Option<String>, name: &'static str| {
        value.clone().map(|value| Setting {
            value,
            origin: Origin::Flag(name),
        })
    };
    let mapping = match (&args.sort_key_value, args.grouped) {
        // clap refuses both (conflicts_with)
        (Some(v), _) => Some(Setting {
            value: SortMapping::Fixed(v.clone()),
            origin: Origin::Flag("--sort-key-value"),
        }),
        (None, true) => Some(Setting {
            value: SortMapping::Grouped,
            origin: Origin::Flag("--grouped"),
        }),
        (None, false) => None,
    };
    LayoutSettings {
        partition_key: flag(&args.partition_key, "--partition-key"),
        key_prefix: flag(&args.key_prefix, "--key-prefix"),
        sort_key: flag(&args.sort_key, "--sort-key"),
        mapping,
        group_separator: flag(&args.group_separator, "--group-separator"),
        attributes: args
            .attributes
            .iter()
            .map(|(from, to)| Setting {
                value: (from.clone(), to.clone()),
                origin: Origin::Flag("--attribute"),
            })
            .collect(),
    }
}

/// The layout the options, the environment and the layout file give
/// (flag > environment variable > file > default), checked by lynk-dynamo.
/// Any problem is exit 2, naming where the setting came from.
pub fn resolve(args: &LayoutArgs) -> Result<TableLayout, Failure> {
    resolve_with(args, |k| std::env::var(k).ok())
}

/// [`resolve`] with `get` for the environment.
pub fn resolve_with(
    args: &LayoutArgs,
    get: impl Fn(&str) -> Option<String>,
) -> Result<TableLayout, Failure> {
    let file = match (
        &args.layout_file,
        get("LYNK_LAYOUT_FILE").filter(|v| !v.is_empty()),
    ) {
        (Some(path), _) => LayoutSettings::from_file(path)?,
        (None, Some(path)) => LayoutSettings::from_file(Path::new(&path))?,
        (None, None) => LayoutSettings::default(),
    };
    let env = LayoutSettings::from_env(&get)?;
    from_flags(args).merge(env).merge(file).to_layout()
}

impl LayoutSettings {
    /// The [`TableLayout`] of these (merged) settings.
    pub fn to_layout(&self) -> Result<TableLayout, Failure> {
        let mut layout = TableLayout::new();
        if let Some(pk) = &self.partition_key {
            layout = layout.partition_key(pk.value.clone());
        }
        if let Some(prefix) = &self.key_prefix {
            layout = layout.key_prefix(prefix.value.clone());
        }
        match (&self.sort_key, &self.mapping) {
            (None, None) => {}
            (Some(sk), None) => {
                return Err(usage(format!(
                    "{} names a sort key `{}` but not how lock names map onto it; add --sort-key-value VALUE (every lock item's sort key holds VALUE) or --grouped (lock `group/name`: group in the partition key, name in the sort key)",
                    sk.origin, sk.value
                )))
            }
            (None, Some(m)) => {
                let what = match m.value {
                    SortMapping::Fixed(_) => "a fixed sort-key value",
                    SortMapping::Grouped => "grouped lock names",
                };
                return Err(usage(format!(
                    "{} asks for {what}, but no sort key is named; add --sort-key NAME (the table's sort key attribute)",
                    m.origin
                )));
            }
            (Some(sk), Some(m)) => {
                layout = match &m.value {
                    SortMapping::Fixed(v) => layout.sort_key_fixed(sk.value.clone(), v.clone()),
                    SortMapping::Grouped => layout.sort_key_grouped(sk.value.clone()),
                };
            }
        }
        if let Some(sep) = &self.group_separator {
            if !matches!(
                self.mapping,
                Some(Setting {
                    value: SortMapping::Grouped,
                    ..
                })
            ) {
                return Err(usage(format!(
                    "{} sets a group separator, but lock names are not grouped; add --grouped (with --sort-key NAME), or remove the separator",
                    sep.origin
                )));
            }
            layout = layout.group_separator(sep.value.clone());
        }
        for a in &self.attributes {
            let (from, to) = &a.value;
            let Some(attribute) = LynkAttribute::from_default_name(from) else {
                let names: Vec<&str> = LynkAttribute::ALL
                    .iter()
                    .map(|a| a.default_name())
                    .collect();
                return Err(usage(format!(
                    "{}: `{from}` is not one of lynk's attributes; rename one of {}",
                    a.origin,
                    names.join(", ")
                )));
            };
            layout = layout.attribute(attribute, to.clone());
        }
        layout.validate().map_err(|e| {
            let origins = self.origins();
            let mut f = usage(e.to_string());
            if !origins.is_empty() {
                f = f.hint(format!("the layout was set by {}", origins.join(", ")));
            }
            f
        })?;
        Ok(layout)
    }

    /// Where the settings came from (distinct, in order): flags, variables,
    /// the file.
    fn origins(&self) -> Vec<String> {
        let all = [
            self.partition_key.as_ref().map(|s| &s.origin),
            self.key_prefix.as_ref().map(|s| &s.origin),
            self.sort_key.as_ref().map(|s| &s.origin),
            self.mapping.as_ref().map(|s| &s.origin),
            self.group_separator.as_ref().map(|s| &s.origin),
        ]
        .into_iter()
        .flatten()
        .chain(self.attributes.iter().map(|a| &a.origin));
        let mut seen: Vec<String> = Vec::new();
        for o in all {
            let text = match o {
                Origin::File { path, .. } => format!("layout file {}", path.display()),
                o => o.to_string(),
            };
            if !seen.contains(&text) {
                seen.push(text);
            }
        }
        seen
    }
}

/// The layout flags given on the command line, as words to repeat in a
/// printed command (`--partition-key pk --grouped`): a command lynk prints
/// for the user to run (`release with: ...`) must name the same layout.
/// Settings from the environment or a file are not repeated; they apply
/// to the printed command as they did to this one.
pub fn flag_words(args: &LayoutArgs) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut push = |flag: &str, value: Option<&str>| {
        words.push(flag.to_owned());
        if let Some(v) = value {
            words.push(shell_quote(v));
        }
    };
    if let Some(f) = &args.layout_file {
        push("--layout-file", Some(&f.display().to_string()));
    }
    if let Some(v) = &args.partition_key {
        push("--partition-key", Some(v));
    }
    if let Some(v) = &args.key_prefix {
        push("--key-prefix", Some(v));
    }
    if let Some(v) = &args.sort_key {
        push("--sort-key", Some(v));
    }
    if let Some(v) = &args.sort_key_value {
        push("--sort-key-value", Some(v));
    }
    if args.grouped {
        push("--grouped", None);
    }
    if let Some(v) = &args.group_separator {
        push("--group-separator", Some(v));
    }
    for (from, to) in &args.attributes {
        push("--attribute", Some(&format!("{from}={to}")));
    }
    words.iter().map(|w| format!(" {w}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LayoutSettings, Failure> {
        LayoutSettings::parse_file(Path::new("l.toml"), text)
    }

    #[test]
    fn a_file_with_every_setting() {
        let s = parse(
            "# lynk layout\npartition_key = \"pk\"\nkey_prefix = \"LOCK#\" # kept\nsort_key = sk\ngrouped = true\n\n[attributes]\nfencingToken = \"lynkToken\"\n",
        )
        .unwrap();
        assert_eq!(s.partition_key.as_ref().unwrap().value, "pk");
        assert_eq!(s.key_prefix.as_ref().unwrap().value, "LOCK#");
        assert_eq!(s.sort_key.as_ref().unwrap().value, "sk");
        assert_eq!(s.mapping.as_ref().unwrap().value, SortMapping::Grouped);
        assert_eq!(
            s.mapping.as_ref().unwrap().origin,
            Origin::File {
                path: "l.toml".into(),
                line: 5
            }
        );
        assert_eq!(
            s.attributes[0].value,
            ("fencingToken".to_owned(), "lynkToken".to_owned())
        );
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, line, needle) in [
            ("partition_key = pk\nsort key\n", 2, "is not `key = value`"),
            ("partiton_key = pk\n", 1, "unknown setting `partiton_key`"),
            ("partition_key = \"pk\n", 1, "no closing quote"),
            ("a = 1\n", 1, "unknown setting"),
            ("[table]\n", 1, "unknown section"),
            (
                "sort_key_value = x\ngrouped = true\n",
                1,
                "exclude each other",
            ),
            (
                "sort_key = a\nsort_key = b\n",
                2,
                "set twice (first at line 1)",
            ),
            ("grouped = maybe\n", 1, "write true or false"),
            ("[attributes]\npayload\n", 2, "is not `key = value`"),
        ] {
            let f = parse(text).expect_err(text);
            assert_eq!(f.code, exit::USAGE);
            assert!(
                f.message.contains(&format!("line {line}")) && f.message.contains(needle),
                "{text:?}: {}",
                f.message
            );
        }
    }

    #[test]
    fn flags_over_env_over_file() {
        let env = LayoutSettings::from_env(|k| match k {
            "LYNK_PARTITION_KEY" => Some("env-pk".into()),
            "LYNK_SORT_KEY_VALUE" => Some("v".into()),
            "LYNK_ATTRIBUTES" => Some("payload=p1".into()),
            _ => None,
        })
        .unwrap();
        let file = parse("partition_key = f\nsort_key = sk\ngrouped = true\n[attributes]\npayload = p2\nreleased = r\n").unwrap();
        let flags = LayoutSettings {
            key_prefix: Some(Setting {
                value: "X#".into(),
                origin: Origin::Flag("--key-prefix"),
            }),
            ..LayoutSettings::default()
        };
        let s = flags.merge(env).merge(file);
        assert_eq!(s.partition_key.unwrap().value, "env-pk");
        assert_eq!(s.key_prefix.unwrap().value, "X#");
        assert_eq!(s.sort_key.unwrap().value, "sk");
        assert_eq!(s.mapping.unwrap().value, SortMapping::Fixed("v".into()));
        let renames: Vec<_> = s.attributes.iter().map(|a| a.value.clone()).collect();
        assert_eq!(
            renames,
            [
                ("payload".to_owned(), "p1".to_owned()),
                ("released".to_owned(), "r".to_owned())
            ]
        );
    }

    #[test]
    fn env_conflicts_and_bad_values() {
        let f = LayoutSettings::from_env(|k| match k {
            "LYNK_SORT_KEY_VALUE" => Some("v".into()),
            "LYNK_GROUPED" => Some("true".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(f.message.contains("LYNK_SORT_KEY_VALUE"), "{}", f.message);
        assert!(f.message.contains("LYNK_GROUPED"), "{}", f.message);
        let f = LayoutSettings::from_env(|k| (k == "LYNK_ATTRIBUTES").then(|| "payload".into()))
            .unwrap_err();
        assert!(f.message.contains("LYNK_ATTRIBUTES"), "{}", f.message);
    }
}
