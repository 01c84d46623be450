//! Access control lists (Redis 6+ ACL): who a client is and what it may run. This module
//! owns the users (`user`), the catalog of commands their rules name (`catalog`), the log
//! of denials (`log`), the ACL command (`command`), the ACL file, and the one check the
//! dispatcher makes before every command, inside MULTI and at EXEC too (CONVENTIONS 2).
//! It must never keep a password in clear, nor apply half of a rule change: a SETUSER or
//! LOAD that fails changes nothing.

mod catalog;
pub(super) mod command;
mod log;
mod user;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use super::dispatch::Resolved;
use super::table::{self, key};
use super::{ClientState, CommandError, ErrorCode, Shared};
use crate::config::SecurityConfig;
pub use log::{AclLog, Denial, DenialContext, DenialReason};
pub use user::User;
use user::{words, KeyAccess};

/// Every user, by name, and a generation that moves on every change, so a connection can
/// tell cheaply that the user it holds may be out of date.
pub struct Acl {
    users: RwLock<BTreeMap<String, Arc<User>>>,
    generation: AtomicU64,
    pub log: AclLog,
    /// ACL LOAD and ACL SAVE read and write it; None = users come from the configuration.
    file: Option<PathBuf>,
}

/// Redis's answer to ACL LOAD / SAVE without an ACL file.
/// (CONFIG REWRITE does store the users in the configuration file, as this advises.)
const NO_ACL_FILE: &str = "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

impl Acl {
    /// The users a server starts with: `default` (with `requirepass` as its password),
    /// then `security.users` or the users of `security.aclfile` (at most one of the two).
    pub fn from_config(security: &SecurityConfig) -> Result<Acl, String> {
        let mut default = User::new_default();
        if let Some(password) = &security.requirepass {
            apply_requirepass(&mut default, Some(password));
        }
        let users = match (&security.aclfile, security.users.is_empty()) {
            (Some(_), false) => {
                return Err(
                    "security.users and security.aclfile cannot both be set (Redis refuses users in the configuration together with an ACL file)"
                        .into(),
                )
            }
            (Some(path), true) => read_acl_file(path, default)?,
            (None, _) => parse_users(
                security
                    .users
                    .iter()
                    .enumerate()
                    .map(|(index, line)| (index + 1, line.as_str())),
                "security.users",
                default,
            )?,
        };
        Ok(Acl {
            users: RwLock::new(users),
            generation: AtomicU64::new(0),
            log: AclLog::default(),
            file: security.aclfile.clone(),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    pub fn default_user(&self) -> Arc<User> {
        self.user("default")
            .expect("the default user cannot be removed")
    }

    /// The user `password` logs in as, if it does (the user exists, is on, and the
    /// password is one of its own or it has `nopass`).
    pub fn authenticate(&self, name: &[u8], password: &[u8]) -> Option<Arc<User>> {
        let name = std::str::from_utf8(name).ok()?;
        self.user(name).filter(|user| user.accepts(password))
    }

    /// ACL SETUSER: creates the user if needed and applies every rule, or none.
    pub fn set_user(&self, name: &[u8], rules: &[Bytes]) -> Result<(), String> {
        if !user::valid_name(name) {
            return Err("Usernames can't contain spaces or null characters".into());
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let mut users = self.users.write();
        let mut updated = users
            .get(&name)
            .map_or_else(|| User::new(&name), |user| User::clone(user));
        updated
            .apply_all(rules.iter().map(|rule| &rule[..]))
            .map_err(|err| err.to_string())?;
        users.insert(name, Arc::new(updated));
        drop(users);
        self.changed();
        Ok(())
    }

    /// ACL DELUSER: how many of `names` existed. Their clients are closed by the caller.
    pub fn delete_users(&self, names: &[Bytes]) -> Result<usize, String> {
        if names.iter().any(|name| &name[..] == b"default") {
            return Err("The 'default' user cannot be removed".into());
        }
        let mut users = self.users.write();
        let removed = names
            .iter()
            .filter(|name| users.remove(&*String::from_utf8_lossy(name)).is_some())
            .count();
        drop(users);
        self.changed();
        Ok(removed)
    }

    /// CONFIG SET requirepass: the default user's only password, or `nopass` when empty.
    pub fn set_requirepass(&self, password: Option<&str>) {
        let mut users = self.users.write();
        if let Some(default) = users.get_mut("default") {
            apply_requirepass(Arc::make_mut(default), password);
        }
        drop(users);
        self.changed();
    }

    pub fn usernames(&self) -> Vec<String> {
        self.users.read().keys().cloned().collect()
    }

    /// Every user as an ACL file line, by name.
    pub fn describe_all(&self) -> Vec<String> {
        self.users
            .read()
            .values()
            .map(|user| user.describe())
            .collect()
    }

    /// ACL LOAD: replaces every user with the file's, or changes nothing. The names of the
    /// users that are gone (their clients must be closed).
    pub fn load(&self) -> Result<Vec<String>, String> {
        let path = self.file.as_ref().ok_or(NO_ACL_FILE)?;
        // A file without a `default` line keeps the default user as it is (its password
        // from requirepass or SETUSER), never falling back to one without a password.
        let loaded = read_acl_file(path, User::clone(&self.default_user())).map_err(|err| {
            format!(
                "{err}. WARNING: ACL errors detected, no change to the previously active ACL rules was performed"
            )
        })?;
        let mut users = self.users.write();
        let gone = users
            .keys()
            .filter(|name| !loaded.contains_key(*name))
            .cloned()
            .collect();
        *users = loaded;
        drop(users);
        self.changed();
        Ok(gone)
    }

    /// ACL SAVE: writes every user to the ACL file (a new file renamed over the old one,
    /// so a crash leaves the old file or the new one, never half of one).
    pub fn save(&self) -> Result<(), String> {
        let path = self.file.as_ref().ok_or(NO_ACL_FILE)?;
        let mut text = self.describe_all().join("\n");
        text.push('\n');
        let temporary = path.with_extension("acl-saving");
        let written = std::fs::write(&temporary, text)
            .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, path));
        written.map_err(|err| format!("There was an error trying to save the ACLs. Please check the server logs for more information ({err})"))
    }
}

fn apply_requirepass(default: &mut User, password: Option<&str>) {
    let mut rules: Vec<Vec<u8>> = vec![b"resetpass".to_vec()];
    match password {
        Some(password) => rules.push(format!(">{password}").into_bytes()),
        None => rules.push(b"nopass".to_vec()),
    }
    default
        .apply_all(rules.iter().map(Vec::as_slice))
        .expect("password rules are always valid");
}

fn read_acl_file(path: &Path, default: User) -> Result<BTreeMap<String, Arc<User>>, String> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        format!(
            "Error loading ACLs, opening file '{}': {err}",
            path.display()
        )
    })?;
    parse_users(
        text.lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line)),
        &path.display().to_string(),
        default,
    )
}

/// Users from ACL file lines (`user <name> <rules...>`; blank lines and `#` comments
/// skipped). The default user keeps `default`'s settings unless a line names it.
fn parse_users<'a>(
    lines: impl Iterator<Item = (usize, &'a str)>,
    source: &str,
    default: User,
) -> Result<BTreeMap<String, Arc<User>>, String> {
    let mut users = BTreeMap::new();
    let mut named_default = false;
    for (number, line) in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = words(line);
        let at = |reason: &str| format!("{source}:{number}: {reason}");
        if !words[0].eq_ignore_ascii_case(b"user") || words.len() < 2 {
            return Err(at("line should start with user keyword"));
        }
        if !user::valid_name(&words[1]) {
            return Err(at("Usernames can't contain spaces or null characters"));
        }
        let name = String::from_utf8_lossy(&words[1]).into_owned();
        if users.contains_key(&name) {
            return Err(at(&format!("Duplicate user '{name}' found")));
        }
        named_default |= name == "default";
        let mut user = User::new(&name);
        user.apply_all(words[2..].iter().map(|word| &word[..]))
            .map_err(|err| at(&err.to_string()))?;
        users.insert(name, Arc::new(user));
    }
    if !named_default {
        users.insert("default".into(), Arc::new(default));
    }
    Ok(users)
}

/// Why a user may not run a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Command(String),
    Key(Bytes),
}

impl Refusal {
    /// Redis's -NOPERM error.
    pub fn error(&self) -> CommandError {
        CommandError::new(ErrorCode::NoPerm, self.message())
    }

    /// The text after `NOPERM`.
    pub fn message(&self) -> String {
        match self {
            Refusal::Command(name) => {
                format!("this user has no permissions to run the '{name}' command")
            }
            Refusal::Key(_) => {
                "this user has no permissions to access one of the keys used as arguments".into()
            }
        }
    }

    /// ACL DRYRUN's text.
    pub fn dry_run_text(&self) -> String {
        match self {
            Refusal::Command(name) => {
                format!("This user has no permissions to run the '{name}' command")
            }
            Refusal::Key(key) => format!(
                "This user has no permissions to access the '{}' key",
                String::from_utf8_lossy(key)
            ),
        }
    }
}

/// What a key spec's flags ask of the user, as Redis reads them: reading the value
/// (ACCESS) and changing it (any write role or modifier).
fn key_access(flags: u16, command: Resolved, args: &[Bytes]) -> KeyAccess {
    let mut read = flags & key::ACCESS != 0;
    if flags & key::VARIABLE_FLAGS != 0 && command.spec.name == "set" {
        // Only SET ... GET returns the old value (Redis's setGetKeys).
        read = args[3..].iter().any(|arg| arg.eq_ignore_ascii_case(b"get"));
    }
    let write = flags & (key::WRITES | key::INSERT | key::DELETE | key::UPDATE) != 0;
    KeyAccess { read, write }
}

/// Whether `user` may run `command` with `args`; the first reason it may not.
pub fn refusal(user: &User, command: Resolved, args: &[Bytes]) -> Option<Refusal> {
    // AUTH, HELLO, QUIT, RESET: what a client needs to become another user (Redis exempts
    // them too).
    if user.unrestricted() || command.spec.has(table::NO_AUTH) {
        return None;
    }
    let id = catalog::catalog().id_of(command.spec, command.parent);
    if !id.is_some_and(|id| user.may_run(id)) {
        return Some(Refusal::Command(command.full_name()));
    }
    for spec in command.spec.keys {
        let access = key_access(spec.flags, command, args);
        for position in spec.positions(args.len()) {
            if !user.may_access(&args[position], access) {
                return Some(Refusal::Key(args[position].clone()));
            }
        }
    }
    None
}

/// The dispatcher's check: the client's user (brought up to date if the users changed)
/// may run this command. A refusal is logged (ACL LOG, the audit log) and returned as
/// Redis's -NOPERM error.
pub fn check(
    shared: &Shared,
    client: &mut ClientState,
    command: Resolved,
    args: &[Bytes],
    context: DenialContext,
) -> Result<(), Refusal> {
    let generation = shared.acl.generation();
    if client.acl_generation != generation {
        client.acl_generation = generation;
        match shared.acl.user(&client.user.name) {
            Some(user) => client.user = user,
            None => {
                // The user was deleted: Redis closes its connections. Until this one is
                // closed, it runs nothing more (the rest of an EXEC queue included).
                client.user = Arc::new(User::new(&client.user.name));
                client.handle.kill();
                client.close_after_reply = true;
                return Err(Refusal::Command(command.full_name()));
            }
        }
    }
    let Some(refusal) = refusal(&client.user, command, args) else {
        return Ok(());
    };
    let (reason, object) = match &refusal {
        Refusal::Command(name) => (DenialReason::Command, name.clone()),
        Refusal::Key(key) => (DenialReason::Key, String::from_utf8_lossy(key).into_owned()),
    };
    let handle = &client.handle;
    shared.audit.record(
        "acl_denied",
        Some((handle.id, handle.addr)),
        serde_json::json!({
            "user": client.user.name,
            "reason": format!("{reason:?}").to_ascii_lowercase(),
            "object": object,
        }),
    );
    let username = client.user.name.clone();
    record_denial(shared, client, reason, context, object, &username);
    Err(refusal)
}

/// Adds a denial to ACL LOG.
pub fn record_denial(
    shared: &Shared,
    client: &ClientState,
    reason: DenialReason,
    context: DenialContext,
    object: String,
    username: &str,
) {
    let max_len = shared.config.read().security.acllog_max_len;
    shared.acl.log.record(
        Denial {
            reason,
            context,
            object,
            username: username.to_string(),
            client_info: client.handle.info_line(),
        },
        max_len,
    );
}

/// `args` with every secret replaced by `(redacted)`: AUTH's arguments, HELLO's AUTH user
/// and password, ACL SETUSER's rules, and CONFIG SET's values of password parameters. What
/// the slow log keeps; borrowed unchanged for every other command.
pub fn without_secrets(command: Resolved, args: &[Bytes]) -> Cow<'_, [Bytes]> {
    let redacted = Bytes::from_static(b"(redacted)");
    let secret: Box<dyn Fn(usize) -> bool> =
        match (command.parent.map(|p| p.name), command.spec.name) {
            (None, "auth") => Box::new(|index| index >= 1),
            (None, "hello") => {
                let auth = args
                    .iter()
                    .position(|arg| arg.eq_ignore_ascii_case(b"auth"));
                Box::new(move |index| auth.is_some_and(|at| index == at + 1 || index == at + 2))
            }
            (Some("acl"), "setuser") => Box::new(|index| index >= 3),
            (Some("config"), "set") => Box::new(|index| {
                index >= 3
                    && index % 2 == 1
                    && ["requirepass", "masterauth"]
                        .iter()
                        .any(|name| args[index - 1].eq_ignore_ascii_case(name.as_bytes()))
            }),
            _ => return Cow::Borrowed(args),
        };
    Cow::Owned(
        args.iter()
            .enumerate()
            .map(|(index, arg)| match secret(index) {
                true => redacted.clone(),
                false => arg.clone(),
            })
            .collect(),
    )
}
