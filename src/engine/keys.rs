//! The cold tier's key layout, and the one mapping from a key to its hot shard.
//!
//! A data key is `[db: u16 BE][slot: u16 BE][user key]`, so the store's key order is
//! database, then hash slot, then key: the order SCAN's cursor walks and the cluster layer
//! counts and migrates by. An expiry-index key is `[db][expire_at: u64 BE][slot][user key]`,
//! so one database's deadlines sort by time. Database `META_DB` holds the engine's own records.
//!
//! Everything that builds or takes apart a cold key goes through here; this module must never
//! change the layout of keys already on disk. The hot shard of a key is derived from its slot
//! here and only here: the engine locks shards by it and `ColdTier` counts writes by it, and
//! batched cold reads are sound only while the two agree.

use super::entry::ExpireAt;
use super::slot::{key_slot, SLOT_COUNT};

/// The database index right after the last one a user may configure (0xFFFF) is reserved
/// for the engine's own metadata records.
pub const META_DB: u16 = crate::config::MAX_DATABASES + 1;
const DB_LEN: usize = 2;
const SLOT_LEN: usize = 2;
/// Length of the `[db][slot]` prefix of an encoded key.
pub const KEY_PREFIX_LEN: usize = DB_LEN + SLOT_LEN;

/// Encodes `[db: u16 BE][slot: u16 BE][user key]`.
pub fn encode_key(db: u16, user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(KEY_PREFIX_LEN + user_key.len());
    out.extend_from_slice(&db.to_be_bytes());
    out.extend_from_slice(&key_slot(user_key).to_be_bytes());
    out.extend_from_slice(user_key);
    out
}

/// An encoded key built on the stack when it is short: read paths (every GET) encode a key
/// only to look it up, and a heap allocation would cost as much as the lookup.
pub enum EncodedKey {
    Inline {
        bytes: [u8; INLINE_KEY_BYTES],
        len: usize,
    },
    Heap(Vec<u8>),
}

const INLINE_KEY_BYTES: usize = 96;

impl EncodedKey {
    pub fn new(db: u16, user_key: &[u8]) -> Self {
        let len = KEY_PREFIX_LEN + user_key.len();
        if len > INLINE_KEY_BYTES {
            return EncodedKey::Heap(encode_key(db, user_key));
        }
        let mut bytes = [0u8; INLINE_KEY_BYTES];
        bytes[..DB_LEN].copy_from_slice(&db.to_be_bytes());
        bytes[DB_LEN..KEY_PREFIX_LEN].copy_from_slice(&key_slot(user_key).to_be_bytes());
        bytes[KEY_PREFIX_LEN..len].copy_from_slice(user_key);
        EncodedKey::Inline { bytes, len }
    }
}

impl std::ops::Deref for EncodedKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            EncodedKey::Inline { bytes, len } => &bytes[..*len],
            EncodedKey::Heap(bytes) => bytes,
        }
    }
}

/// The first encoded key of `slot` in `db` (inclusive bound). `slot` may be `SLOT_COUNT`,
/// which gives the end of the database.
pub fn slot_start(db: u16, slot: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(KEY_PREFIX_LEN);
    if slot >= u32::from(SLOT_COUNT) {
        out.extend_from_slice(&(u32::from(db) + 1).to_be_bytes()[2..]);
        out.extend_from_slice(&[0, 0]);
        if db == u16::MAX - 1 {
            // The next "database" is META_DB itself; stop right before its first key.
            out = vec![0xFF, 0xFF];
        }
        return out;
    }
    out.extend_from_slice(&db.to_be_bytes());
    out.extend_from_slice(&(slot as u16).to_be_bytes());
    out
}

pub fn db_of(encoded: &[u8]) -> u16 {
    u16::from_be_bytes([encoded[0], encoded[1]])
}

pub fn slot_of(encoded: &[u8]) -> u16 {
    u16::from_be_bytes([encoded[2], encoded[3]])
}

/// The hot shard, of `shards` (a power of two), that holds `encoded`.
pub fn hot_shard_of(encoded: &[u8], shards: usize) -> usize {
    shard_of_slot(slot_of(encoded), shards)
}

/// The hot shard, of `shards` (a power of two), that holds `user_key` in any database: the
/// shard [`hot_shard_of`] gives for its encoded key, without encoding it.
pub fn hot_shard_of_user_key(user_key: &[u8], shards: usize) -> usize {
    shard_of_slot(key_slot(user_key), shards)
}

fn shard_of_slot(slot: u16, shards: usize) -> usize {
    usize::from(slot) & (shards - 1)
}

pub fn user_key(encoded: &[u8]) -> &[u8] {
    &encoded[KEY_PREFIX_LEN..]
}

/// Key of the expiry index entry for an encoded key: `[db][expire_at: u64 BE][slot][user key]`,
/// so the expirer walks one database's deadlines in time order.
pub fn expiry_index_key(encoded: &[u8], expire_at: ExpireAt) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + 8);
    out.extend_from_slice(&encoded[..DB_LEN]);
    out.extend_from_slice(&expire_at.to_be_bytes());
    out.extend_from_slice(&encoded[DB_LEN..]);
    out
}

/// Splits an expiry index key back into (expire_at, encoded data key).
pub fn parse_expiry_index_key(index_key: &[u8]) -> Option<(ExpireAt, Vec<u8>)> {
    if index_key.len() < DB_LEN + 8 + SLOT_LEN {
        return None;
    }
    let expire_at = u64::from_be_bytes(index_key[DB_LEN..DB_LEN + 8].try_into().ok()?);
    let mut encoded = Vec::with_capacity(index_key.len() - 8);
    encoded.extend_from_slice(&index_key[..DB_LEN]);
    encoded.extend_from_slice(&index_key[DB_LEN + 8..]);
    Some((expire_at, encoded))
}

/// The first bytes of every member record (`cold::Space::Members`) of one version of a
/// collection: `[db][slot][user key length: u32 BE][user key][version: u64 BE]`. The length
/// keeps a key's members apart from those of a longer key that starts with it; the slot
/// keeps them in their key's slot, so a slot (and a database) is one range in every space.
pub fn member_prefix(encoded: &[u8], version: u64) -> Vec<u8> {
    let user = user_key(encoded);
    let mut out = Vec::with_capacity(KEY_PREFIX_LEN + 4 + user.len() + 8);
    out.extend_from_slice(&encoded[..KEY_PREFIX_LEN]);
    out.extend_from_slice(&(user.len() as u32).to_be_bytes());
    out.extend_from_slice(user);
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// The record key of one field or member of a collection version.
pub fn member_key(encoded: &[u8], version: u64, member: &[u8]) -> Vec<u8> {
    let mut out = member_prefix(encoded, version);
    out.extend_from_slice(member);
    out
}

/// `[from, to)` holding every member record of a collection version, in member order.
pub fn member_range(encoded: &[u8], version: u64) -> (Vec<u8>, Vec<u8>) {
    let from = member_prefix(encoded, version);
    let to = prefix_end(&from);
    (from, to)
}

/// The first byte string after every string that starts with `prefix`. Only a prefix of
/// 0xFF bytes alone has none (it then gets one 0xFF more, bounding its shorter extensions);
/// a member prefix starts with a user database, below `META_DB`, so never is one.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collections_members_are_one_range_in_its_slot_and_database() {
        let key = encode_key(3, b"user:{42}");
        let other = encode_key(3, b"user:{42}x");
        let (from, to) = member_range(&key, 7);
        let inside = [
            member_key(&key, 7, b""),
            member_key(&key, 7, b"name"),
            member_key(&key, 7, &[0xFF; 20]),
        ];
        let outside = [
            member_key(&key, 6, b"name"),
            member_key(&key, 8, b""),
            member_key(&other, 7, b"name"),
            member_key(&encode_key(4, b"user:{42}"), 7, b"name"),
        ];
        for member in &inside {
            assert!(from <= *member && *member < to, "{member:?} is inside");
        }
        for member in &outside {
            assert!(!(from <= *member && *member < to), "{member:?} is outside");
        }
        // Same slot and database as the key, so FLUSHDB's and a slot's ranges cover them.
        for member in inside.iter().chain(&outside[..3]) {
            assert_eq!(db_of(member), 3);
            assert_eq!(slot_of(member), slot_of(&key));
        }
        let (from, to) = member_range(&key, u64::MAX);
        assert!(from < member_key(&key, u64::MAX, &[0xFF; 64]));
        assert!(member_key(&key, u64::MAX, &[0xFF; 64]) < to);
        assert!(member_key(&other, 0, b"") > to || member_key(&other, 0, b"") < from);
    }

    #[test]
    fn stack_and_heap_encodings_match_encode_key() {
        for key in [
            &b"k"[..],
            &[b'x'; 92][..],
            &[b'y'; 93][..],
            &[b'z'; 500][..],
        ] {
            assert_eq!(&*EncodedKey::new(7, key), &encode_key(7, key)[..]);
        }
    }

    #[test]
    fn encoded_keys_sort_by_db_then_slot_then_key() {
        let a = encode_key(0, b"foo"); // slot 12182
        let b = encode_key(0, b"bar"); // slot 5061
        let c = encode_key(1, b"bar");
        assert!(b < a, "slot order comes before key order");
        assert!(a < c, "database order comes first");
        assert_eq!(user_key(&a), b"foo");
        assert_eq!(slot_of(&a), 12182);
        assert_eq!(db_of(&c), 1);
        assert!(slot_start(0, 12182) <= a && a < slot_start(0, 12183));
        assert!(c >= slot_start(0, 16384) && c < slot_start(1, 16384));
        assert!(slot_start(u16::MAX - 1, 16384) <= vec![0xFF, 0xFF, 0, 0]);
    }

    #[test]
    fn expiry_index_keys_round_trip_and_sort_by_time() {
        let key = encode_key(3, b"user:1");
        let early = expiry_index_key(&key, 1000);
        let late = expiry_index_key(&encode_key(3, b"a"), 2000);
        assert!(early < late);
        assert_eq!(parse_expiry_index_key(&early), Some((1000, key)));
        assert_eq!(parse_expiry_index_key(&[1, 2]), None);
    }

    #[test]
    fn a_user_key_maps_to_the_hot_shard_of_its_encoded_key() {
        let keys: [&[u8]; 7] = [
            b"",
            b"foo",
            b"bar",
            b"{user1000}.following",
            b"user1000",
            &[0xFF; 40],
            &[b'z'; 500],
        ];
        for shards in [1, 2, 4, 16, 256, 16384, 65536] {
            for key in keys {
                for db in [0, 7, META_DB] {
                    assert_eq!(
                        hot_shard_of_user_key(key, shards),
                        hot_shard_of(&encode_key(db, key), shards),
                        "key {key:?}, {shards} shards, db {db}"
                    );
                    assert_eq!(
                        hot_shard_of_user_key(key, shards),
                        hot_shard_of(&EncodedKey::new(db, key), shards)
                    );
                }
            }
        }
        // Hash tags keep related keys in one shard.
        assert_eq!(
            hot_shard_of_user_key(b"{user1000}.following", 64),
            hot_shard_of_user_key(b"{user1000}.followers", 64)
        );
    }
}
