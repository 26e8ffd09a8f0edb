//! The key shapes and metadata value the raw contenders (raw sled, raw redb)
//! write: the store's key shapes (see ARCHITECTURE.md), built here for the
//! benches only, and a metadata value of three big-endian u64s (created, last
//! access, deadline) instead of the store's bincode record.

/// The metadata key of `sid`: `{sid}/`.
pub fn meta_key(sid: &str) -> Vec<u8> {
    let mut k = sid.as_bytes().to_vec();
    k.push(b'/');
    k
}

/// The prefix of one scope: `{sid}/{component}/`, `{sid}//` for the global one.
pub fn scope_prefix(sid: &str, component: Option<&str>) -> Vec<u8> {
    let mut k = meta_key(sid);
    k.extend_from_slice(component.unwrap_or("").as_bytes());
    k.push(b'/');
    k
}

/// The expiry index entry: `!`, the deadline big-endian, the id.
pub fn index_key(deadline: u64, sid: &str) -> Vec<u8> {
    let mut k = vec![b'!'];
    k.extend_from_slice(&deadline.to_be_bytes());
    k.extend_from_slice(sid.as_bytes());
    k
}

/// The metadata value: created, last access, deadline.
pub fn meta_value(created: u64, last_access: u64, deadline: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&created.to_be_bytes());
    v.extend_from_slice(&last_access.to_be_bytes());
    v.extend_from_slice(&deadline.to_be_bytes());
    v
}

/// (created, deadline) of a metadata value.
pub fn parse_meta(v: &[u8]) -> (u64, u64) {
    let word = |i: usize| {
        let bytes: [u8; 8] = v[i * 8..i * 8 + 8].try_into().expect("a u64");
        u64::from_be_bytes(bytes)
    };
    (word(0), word(2))
}
