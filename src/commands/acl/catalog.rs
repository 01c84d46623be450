//! The commands an ACL rule can name: every command and subcommand of the table with a
//! small number (its bit in a user's command set) and its categories. Built once from the
//! table, so a rule and the dispatcher's check agree on what "+@read" or "+config|get" is.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::super::table::{self, acl, CommandSpec};

/// One command or subcommand.
pub struct Entry {
    /// "get", or "config|get" for a subcommand.
    pub name: String,
    pub categories: u64,
    /// For a container (CONFIG), the ids of its subcommands.
    pub subcommands: Vec<usize>,
}

pub struct Catalog {
    /// Sorted by name, so descriptions list commands in a stable order.
    pub entries: Vec<Entry>,
    /// (command, subcommand or "") to id, without allocating on lookup.
    by_spec: HashMap<(&'static str, &'static str), usize>,
    by_name: HashMap<String, usize>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let mut specs: Vec<(&'static CommandSpec, Option<&'static CommandSpec>)> = Vec::new();
    for spec in table::all() {
        specs.push((spec, None));
        specs.extend(spec.subcommands.iter().map(|sub| (sub, Some(spec))));
    }
    specs.sort_by_key(|(spec, parent)| spec.full_name(*parent));
    let mut catalog = Catalog {
        entries: Vec::with_capacity(specs.len()),
        by_spec: HashMap::new(),
        by_name: HashMap::new(),
    };
    for (id, (spec, parent)) in specs.iter().enumerate() {
        let name = spec.full_name(*parent);
        let key = match parent {
            Some(parent) => (parent.name, spec.name),
            None => (spec.name, ""),
        };
        catalog.by_spec.insert(key, id);
        catalog.by_name.insert(name.clone(), id);
        catalog.entries.push(Entry {
            name,
            categories: spec.acl_categories(),
            subcommands: Vec::new(),
        });
    }
    for (spec, parent) in &specs {
        if let Some(parent) = parent {
            let parent_id = catalog.by_spec[&(parent.name, "")];
            let id = catalog.by_spec[&(parent.name, spec.name)];
            catalog.entries[parent_id].subcommands.push(id);
        }
    }
    catalog
});

pub fn catalog() -> &'static Catalog {
    &CATALOG
}

impl Catalog {
    /// The id of a command as the dispatcher resolved it.
    pub fn id_of(&self, spec: &CommandSpec, parent: Option<&CommandSpec>) -> Option<usize> {
        let key = match parent {
            Some(parent) => (parent.name, spec.name),
            None => (spec.name, ""),
        };
        self.by_spec.get(&key).copied()
    }

    /// The id of "get" or "config|get", case-insensitively.
    pub fn id_by_name(&self, name: &str) -> Option<usize> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The ids of the commands in a category.
    pub fn in_category(&self, category: u64) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, entry)| entry.categories & category != 0)
            .map(|(id, _)| id)
    }
}

/// A category by its name without the `@` ("read"), case-insensitively; `all` is every
/// command.
pub fn category_by_name(name: &str) -> Option<u64> {
    if name.eq_ignore_ascii_case("all") {
        return Some(u64::MAX);
    }
    acl::NAMES
        .iter()
        .find(|(_, category)| category[1..].eq_ignore_ascii_case(name))
        .map(|(bits, _)| *bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_subcommand_has_an_id() {
        let catalog = catalog();
        let get = catalog.id_by_name("GET").unwrap();
        assert_eq!(catalog.entries[get].name, "get");
        let config = catalog.id_by_name("config").unwrap();
        let config_get = catalog.id_by_name("config|get").unwrap();
        assert!(catalog.entries[config].subcommands.contains(&config_get));
        assert!(catalog.id_by_name("nosuch").is_none());
        let read: Vec<usize> = catalog.in_category(acl::READ).collect();
        assert!(read.contains(&get));
        assert_eq!(category_by_name("Read"), Some(acl::READ));
        assert_eq!(category_by_name("nosuch"), None);
    }
}
