//! connection commands.

use super::table::CommandSpec;

pub const COMMANDS: &[CommandSpec] = &[];
