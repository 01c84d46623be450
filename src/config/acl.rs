//! The ACL's CONFIG parameters: `aclfile` (set at start) and `acllog-max-len` (live). The
//! users themselves live in `commands::acl`; this module only shows and parses the values.

use super::params::{in_range, optional_path_shown, parse_optional_path, Mutability, Param};

pub const PARAMS: &[Param] = &[
    Param {
        name: "aclfile",
        mutability: Mutability::Immutable,
        get: |c| optional_path_shown(&c.security.aclfile),
        set: |c, v| {
            c.security.aclfile = parse_optional_path(v);
            Ok(())
        },
    },
    Param {
        name: "acllog-max-len",
        mutability: Mutability::Live,
        get: |c| c.security.acllog_max_len.to_string(),
        set: |c, v| {
            c.security.acllog_max_len = in_range(v, 0, i64::from(i32::MAX))? as usize;
            Ok(())
        },
    },
];
