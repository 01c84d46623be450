//! One ACL user: on or off, its passwords (kept only as SHA-256), the commands it may run
//! (a bit per command and subcommand of the catalog), the key patterns it may read and
//! write, and the channel patterns Redis ACL files carry. It applies Redis's rule words
//! (`on`, `>pw`, `+@read`, `-flushall`, `~app:*`, `%R~ro:*`, `reset`, ...) and describes
//! itself back in the same words, as ACL LIST and ACL SAVE write it.

use bytes::Bytes;

use super::catalog::{catalog, category_by_name};
use crate::engine::glob::glob_match;

/// A SHA-256 digest of a password.
pub type PasswordHash = [u8; 32];

pub fn hash_password(password: &[u8]) -> PasswordHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, password);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Redis accepts only 64 lower-case hex digits after `#` and `!`.
fn parse_hash(text: &[u8]) -> Option<PasswordHash> {
    if text.len() != 64 || !text.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut hash = [0u8; 32];
    for (slot, pair) in hash.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| {
            if c.is_ascii_digit() {
                c - b'0'
            } else {
                c - b'a' + 10
            }
        };
        *slot = digit(pair[0]) << 4 | digit(pair[1]);
    }
    Some(hash)
}

/// Compares two digests without an early exit.
fn same_hash(a: &PasswordHash, b: &PasswordHash) -> bool {
    a.iter().zip(b).fold(0u8, |difference, (x, y)| {
        difference | std::hint::black_box(x ^ y)
    }) == 0
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyPattern {
    pattern: Vec<u8>,
    read: bool,
    write: bool,
}

impl KeyPattern {
    fn describe(&self) -> String {
        let prefix = match (self.read, self.write) {
            (true, false) => "%R~",
            (false, true) => "%W~",
            _ => "~",
        };
        format!("{prefix}{}", String::from_utf8_lossy(&self.pattern))
    }
}

/// What a key argument needs: reading its value, changing it, or neither (EXISTS, TYPE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyAccess {
    pub read: bool,
    pub write: bool,
}

/// A rule word SETUSER refused, with Redis's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub rule: String,
    pub reason: &'static str,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Error in ACL SETUSER modifier '{}': {}",
            self.rule, self.reason
        )
    }
}

const SYNTAX: &str = "Syntax error";
const UNKNOWN_COMMAND: &str = "Unknown command or category name in ACL";
const BAD_HASH: &str = "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters";
const NO_SUCH_PASSWORD: &str = "The password you are trying to remove from the user does not exist";
const KEY_AFTER_ALL: &str = "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns";
const CHANNEL_AFTER_ALL: &str = "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels";
const NO_SELECTORS: &str =
    "selectors are not supported by HyperCache (docs/security.md); use one user per role";
const NO_FIRST_ARGS: &str =
    "first-argument rules (such as +select|0) are not supported by HyperCache; allow or deny the whole command";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    enabled: bool,
    nopass: bool,
    /// `sanitize-payload` (true) or `skip-sanitize-payload` (false), kept for ACL files;
    /// there is no RESTORE here to sanitize.
    sanitize_payload: Option<bool>,
    passwords: Vec<PasswordHash>,
    /// By catalog id.
    allowed: Vec<bool>,
    /// The command rules start from `+@all` (future commands allowed) rather than `-@all`.
    from_all_commands: bool,
    /// The command rules since the last `+@all` / `-@all`, as ACL LIST shows them.
    command_rules: Vec<String>,
    all_keys: bool,
    keys: Vec<KeyPattern>,
    all_channels: bool,
    channels: Vec<Vec<u8>>,
    /// Every command and every key (kept up to date by `apply`): the dispatcher's fast path.
    unrestricted: bool,
}

impl User {
    /// A new user as ACL SETUSER creates it: off, no password, no commands, no keys.
    pub fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            sanitize_payload: None,
            passwords: Vec::new(),
            allowed: vec![false; catalog().len()],
            from_all_commands: false,
            command_rules: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
            unrestricted: false,
        }
    }

    /// The `default` user of a fresh server: `on nopass ~* &* +@all`.
    pub fn new_default() -> User {
        let mut user = User::new("default");
        for rule in ["on", "nopass", "~*", "&*", "+@all"] {
            user.apply(rule.as_bytes())
                .expect("the default user's rules are valid");
        }
        user
    }

    /// Applies rule words in order; on an error the user is left as it was.
    pub fn apply_all<'a>(
        &mut self,
        rules: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), RuleError> {
        let mut updated = self.clone();
        for rule in rules {
            updated.apply(rule)?;
        }
        *self = updated;
        Ok(())
    }

    /// Applies one rule word.
    pub fn apply(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        let applied = self.apply_rule(rule);
        self.unrestricted = self.all_keys && self.allowed.iter().all(|allowed| *allowed);
        applied
    }

    fn apply_rule(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        let text = String::from_utf8_lossy(rule).into_owned();
        // A password rule is never echoed back (errors reach logs).
        let shown = match rule.first() {
            Some(b'>' | b'<') => format!("{}(redacted)", rule[0] as char),
            _ => text.clone(),
        };
        let error = |reason| RuleError {
            rule: shown.clone(),
            reason,
        };
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "allkeys" => self.allow_all_keys(),
            "resetkeys" => {
                self.all_keys = false;
                self.keys.clear();
            }
            "allchannels" => {
                self.all_channels = true;
                self.channels.clear();
            }
            "resetchannels" => {
                self.all_channels = false;
                self.channels.clear();
            }
            "allcommands" => self.set_all_commands(true),
            "nocommands" => self.set_all_commands(false),
            "sanitize-payload" => self.sanitize_payload = Some(true),
            "skip-sanitize-payload" => self.sanitize_payload = Some(false),
            "clearselectors" => {}
            "reset" => {
                *self = User {
                    sanitize_payload: Some(true),
                    ..User::new(&self.name)
                };
            }
            _ => match rule.first() {
                Some(b'>') => self.add_password(hash_password(&rule[1..])),
                Some(b'<') => {
                    if !self.remove_password(&hash_password(&rule[1..])) {
                        return Err(error(NO_SUCH_PASSWORD));
                    }
                }
                Some(b'#') => self.add_password(parse_hash(&rule[1..]).ok_or(error(BAD_HASH))?),
                Some(b'!') => {
                    let hash = parse_hash(&rule[1..]).ok_or(error(BAD_HASH))?;
                    if !self.remove_password(&hash) {
                        return Err(error(NO_SUCH_PASSWORD));
                    }
                }
                Some(b'~' | b'%' | b'&') if has_spaces(rule) => return Err(error(SYNTAX)),
                Some(b'~') => self
                    .add_key_pattern(&rule[1..], true, true)
                    .map_err(error)?,
                Some(b'%') => {
                    let tilde = rule.iter().position(|byte| *byte == b'~');
                    let tilde = tilde.ok_or(error(SYNTAX))?;
                    let flags = rule[1..tilde].to_ascii_uppercase();
                    if flags.is_empty() || !flags.iter().all(|c| *c == b'R' || *c == b'W') {
                        return Err(error(SYNTAX));
                    }
                    let (read, write) = (flags.contains(&b'R'), flags.contains(&b'W'));
                    self.add_key_pattern(&rule[tilde + 1..], read, write)
                        .map_err(error)?;
                }
                Some(b'&') => self.add_channel(&rule[1..]).map_err(error)?,
                Some(b'(') => return Err(error(NO_SELECTORS)),
                Some(b'+' | b'-') => self.apply_command_rule(&lower).map_err(error)?,
                _ => return Err(error(SYNTAX)),
            },
        }
        Ok(())
    }

    fn add_password(&mut self, hash: PasswordHash) {
        self.nopass = false;
        if !self.passwords.contains(&hash) {
            self.passwords.push(hash);
        }
    }

    fn remove_password(&mut self, hash: &PasswordHash) -> bool {
        let before = self.passwords.len();
        self.passwords.retain(|kept| kept != hash);
        self.passwords.len() != before
    }

    fn allow_all_keys(&mut self) {
        self.all_keys = true;
        self.keys.clear();
    }

    fn add_key_pattern(
        &mut self,
        pattern: &[u8],
        read: bool,
        write: bool,
    ) -> Result<(), &'static str> {
        if self.all_keys {
            return Err(KEY_AFTER_ALL);
        }
        if pattern == b"*" && read && write {
            self.allow_all_keys();
            return Ok(());
        }
        let pattern = KeyPattern {
            pattern: pattern.to_vec(),
            read,
            write,
        };
        if !self.keys.contains(&pattern) {
            self.keys.push(pattern);
        }
        Ok(())
    }

    fn add_channel(&mut self, pattern: &[u8]) -> Result<(), &'static str> {
        if self.all_channels {
            return Err(CHANNEL_AFTER_ALL);
        }
        if pattern == b"*" {
            self.all_channels = true;
            self.channels.clear();
        } else if !self.channels.iter().any(|kept| kept == pattern) {
            self.channels.push(pattern.to_vec());
        }
        Ok(())
    }

    fn set_all_commands(&mut self, allowed: bool) {
        self.allowed.fill(allowed);
        self.from_all_commands = allowed;
        self.command_rules.clear();
    }

    /// `+name`, `-name`, `+@category`, `-@category` (`lower` is lower case).
    fn apply_command_rule(&mut self, lower: &str) -> Result<(), &'static str> {
        let allow = lower.starts_with('+');
        let name = &lower[1..];
        let catalog = catalog();
        if let Some(category) = name.strip_prefix('@') {
            let category = category_by_name(category).ok_or(UNKNOWN_COMMAND)?;
            if category == u64::MAX {
                self.set_all_commands(allow);
                return Ok(());
            }
            let ids: Vec<usize> = catalog.in_category(category).collect();
            if allow {
                for &id in &ids {
                    self.allowed[id] = true;
                    self.forget_rules_for(&catalog.entries[id].name);
                }
                self.command_rules.push(lower.to_string());
            } else {
                // Described command by command, as Redis does: "-@all +@read -keys" says
                // exactly what was taken away from what had been given.
                for id in ids {
                    if self.allowed[id] {
                        self.allowed[id] = false;
                        let name = &catalog.entries[id].name;
                        self.forget_rules_for(name);
                        self.command_rules.push(format!("-{name}"));
                    }
                }
            }
            return Ok(());
        }
        let Some(id) = catalog.id_by_name(name) else {
            let known_container = name
                .split_once('|')
                .is_some_and(|(command, _)| catalog.id_by_name(command).is_some());
            let takes_first_args = known_container
                && name.split_once('|').is_some_and(|(command, _)| {
                    let id = catalog.id_by_name(command).unwrap_or(0);
                    catalog.entries[id].subcommands.is_empty()
                });
            return Err(if takes_first_args {
                NO_FIRST_ARGS
            } else {
                UNKNOWN_COMMAND
            });
        };
        self.allowed[id] = allow;
        for &sub in &catalog.entries[id].subcommands {
            self.allowed[sub] = allow;
        }
        self.forget_rules_for(name);
        self.command_rules.push(lower.to_string());
        Ok(())
    }

    /// Drops earlier `+name` / `-name` rules (and those of its subcommands) that a new rule
    /// for `name` supersedes.
    fn forget_rules_for(&mut self, name: &str) {
        self.command_rules.retain(|rule| {
            let named = &rule[1..];
            let sub_of = named
                .split_once('|')
                .is_some_and(|(command, _)| command == name);
            named != name && !sub_of
        });
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Connections start authenticated as this user (Redis: the default user, on and
    /// nopass).
    pub fn needs_no_password(&self) -> bool {
        self.enabled && self.nopass
    }

    /// `nopass`: any password logs in (protected mode looks at the default user's).
    pub fn has_nopass(&self) -> bool {
        self.nopass
    }

    /// Whether `password` logs in as this user.
    pub fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let given = hash_password(password);
        // Every stored hash is compared, so the time says nothing of which matched.
        self.passwords
            .iter()
            .fold(false, |found, hash| found | same_hash(hash, &given))
    }

    /// Every command and every key: the dispatcher skips the checks.
    pub fn unrestricted(&self) -> bool {
        self.unrestricted
    }

    pub fn may_run(&self, command_id: usize) -> bool {
        self.allowed.get(command_id).copied().unwrap_or(false)
    }

    pub fn may_access(&self, key: &[u8], access: KeyAccess) -> bool {
        if self.all_keys {
            return true;
        }
        self.keys.iter().any(|pattern| {
            (pattern.read || !access.read)
                && (pattern.write || !access.write)
                && glob_match(&pattern.pattern, key)
        })
    }

    /// ACL GETUSER's flags.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        match self.sanitize_payload {
            Some(true) => flags.push("sanitize-payload"),
            Some(false) => flags.push("skip-sanitize-payload"),
            None => {}
        }
        flags
    }

    pub fn password_hashes(&self) -> Vec<String> {
        self.passwords.iter().map(|hash| hex(hash)).collect()
    }

    pub fn describe_commands(&self) -> String {
        let mut rules = vec![if self.from_all_commands {
            "+@all"
        } else {
            "-@all"
        }
        .to_string()];
        rules.extend(self.command_rules.iter().cloned());
        rules.join(" ")
    }

    pub fn describe_keys(&self) -> String {
        if self.all_keys {
            return "~*".into();
        }
        let patterns: Vec<String> = self.keys.iter().map(KeyPattern::describe).collect();
        patterns.join(" ")
    }

    pub fn describe_channels(&self) -> String {
        if self.all_channels {
            return "&*".into();
        }
        let patterns: Vec<String> = self
            .channels
            .iter()
            .map(|pattern| format!("&{}", String::from_utf8_lossy(pattern)))
            .collect();
        patterns.join(" ")
    }

    /// The user as one ACL LIST / ACL file line: applying its words after `user <name>`
    /// to a new user gives this user back.
    pub fn describe(&self) -> String {
        let mut words = vec!["user".to_string(), self.name.clone()];
        words.extend(self.flags().iter().map(|flag| flag.to_string()));
        words.extend(self.passwords.iter().map(|hash| format!("#{}", hex(hash))));
        let keys = self.describe_keys();
        if !keys.is_empty() {
            words.push(keys);
        }
        if self.all_channels {
            words.push("&*".into());
        } else {
            words.push("resetchannels".into());
            let channels = self.describe_channels();
            if !channels.is_empty() {
                words.push(channels);
            }
        }
        words.push(self.describe_commands());
        words.join(" ")
    }
}

/// Whitespace or NUL, which would split the name or pattern when an ACL file line is read
/// back (Redis's `ACLStringHasSpaces`).
fn has_spaces(text: &[u8]) -> bool {
    text.iter()
        .any(|byte| byte.is_ascii_whitespace() || *byte == 0)
}

/// Redis's rule for user names: no whitespace or NUL bytes.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && !has_spaces(name)
}

/// Splits an ACL file line or YAML `users` entry into words (`user` first).
pub fn words(line: &str) -> Vec<Bytes> {
    line.split_ascii_whitespace()
        .map(|word| Bytes::copy_from_slice(word.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> User {
        let mut user = User::new("alice");
        user.apply_all(rules.iter().map(|rule| rule.as_bytes()))
            .unwrap();
        user
    }

    fn id(name: &str) -> usize {
        catalog().id_by_name(name).unwrap()
    }

    #[test]
    fn the_default_user_may_do_everything_without_a_password() {
        let default = User::new_default();
        assert!(default.unrestricted());
        assert!(default.needs_no_password());
        assert_eq!(default.describe(), "user default on nopass ~* &* +@all");
    }

    #[test]
    fn passwords_are_kept_hashed_and_checked() {
        let alice = user(&["on", ">pw", ">other", "<other"]);
        assert!(alice.accepts(b"pw"));
        assert!(!alice.accepts(b"other"));
        assert!(!alice.accepts(b"wrong"));
        assert_eq!(
            alice.password_hashes(),
            vec!["30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"]
        );
        let off = user(&[">pw"]);
        assert!(!off.accepts(b"pw"), "a user that is off never logs in");
        let by_hash = user(&[
            "on",
            "#30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4",
        ]);
        assert!(by_hash.accepts(b"pw"));
    }

    #[test]
    fn categories_and_commands_combine_in_order() {
        let alice = user(&["+@read", "-@dangerous", "+set"]);
        assert!(alice.may_run(id("get")));
        assert!(alice.may_run(id("set")));
        assert!(!alice.may_run(id("keys")), "keys is @read but @dangerous");
        assert!(!alice.may_run(id("del")));
        assert!(alice.describe_commands().starts_with("-@all +@read "));
        assert!(alice.describe_commands().contains("-keys"));
        assert!(alice.describe_commands().ends_with("+set"));
        let config = user(&["+config|get"]);
        assert!(config.may_run(id("config|get")));
        assert!(!config.may_run(id("config|set")));
        let all_but = user(&["+@all", "-config", "+config|get"]);
        assert!(all_but.may_run(id("config|get")));
        assert!(!all_but.may_run(id("config|set")));
        assert_eq!(all_but.describe_commands(), "+@all -config +config|get");
    }

    #[test]
    fn key_patterns_say_read_and_write() {
        let alice = user(&["~app:*", "%R~ro:*", "%W~wo:*"]);
        let read = KeyAccess {
            read: true,
            write: false,
        };
        let write = KeyAccess {
            read: false,
            write: true,
        };
        let both = KeyAccess {
            read: true,
            write: true,
        };
        assert!(alice.may_access(b"app:1", both));
        assert!(alice.may_access(b"ro:1", read));
        assert!(!alice.may_access(b"ro:1", write));
        assert!(alice.may_access(b"wo:1", write));
        assert!(!alice.may_access(b"wo:1", both));
        assert!(!alice.may_access(b"other", read));
        // EXISTS needs neither reading nor writing, but still a pattern of any kind.
        assert!(alice.may_access(b"wo:1", KeyAccess::default()));
        assert!(!alice.may_access(b"other", KeyAccess::default()));
        assert_eq!(alice.describe_keys(), "~app:* %R~ro:* %W~wo:*");
    }

    #[test]
    fn a_description_applied_again_gives_the_same_user() {
        let alice = user(&[
            "on",
            ">pw",
            "~app:*",
            "%R~ro:*",
            "&news",
            "+@read",
            "-@dangerous",
            "+set",
            "-get",
        ]);
        let line = alice.describe();
        let words = words(&line);
        let mut again = User::new("alice");
        again
            .apply_all(words[2..].iter().map(|word| &word[..]))
            .unwrap();
        assert_eq!(again.describe(), line);
        assert_eq!(again.allowed, alice.allowed);
    }

    #[test]
    fn bad_rules_are_refused_with_redis_reasons_and_change_nothing() {
        let mut alice = user(&["on", "allkeys"]);
        let before = alice.clone();
        let refused = |alice: &mut User, rules: &[&str]| {
            alice
                .apply_all(rules.iter().map(|rule| rule.as_bytes()))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(&mut alice, &["+get", "+nosuch"]),
            "Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"
        );
        assert_eq!(
            refused(&mut alice, &["bogus"]),
            "Error in ACL SETUSER modifier 'bogus': Syntax error"
        );
        assert!(refused(&mut alice, &["~foo"]).contains("after the * pattern"));
        assert!(refused(&mut alice, &["#0000"]).contains("exactly 64 characters"));
        assert_eq!(
            refused(&mut alice, &["<nosuch"]),
            "Error in ACL SETUSER modifier '<(redacted)': The password you are trying to remove from the user does not exist"
        );
        let mut bob = User::new("bob");
        assert!(refused(&mut bob, &["~x\nuser\tevil"]).ends_with("Syntax error"));
        assert!(refused(&mut bob, &["%R~a b"]).ends_with("Syntax error"));
        assert!(!valid_name(b"bad\tname"));
        assert!(refused(&mut alice, &["%X~foo"]).ends_with("Syntax error"));
        assert!(refused(&mut alice, &["+@nosuch"]).contains("Unknown command"));
        assert!(refused(&mut alice, &["(~x +get)"]).contains("selectors"));
        assert!(refused(&mut alice, &["+select|0"]).contains("first-argument"));
        assert_eq!(alice, before);
    }
}
