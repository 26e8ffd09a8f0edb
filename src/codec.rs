//! The only module that calls bincode.
//!
//! Values are bincode 2 (standard configuration) through serde. Decoding is
//! bounded, so corrupt length prefixes cannot make it allocate without limit,
//! and it must consume every byte, so most values read as the wrong type fail
//! instead of decoding to nonsense.
//!
//! The metadata record is one version byte followed by the bincode encoding
//! of [`Meta`]; see ARCHITECTURE.md.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::meta::Meta;

/// The most bytes one decode may claim; also the ceiling of `max_value_size`.
pub(crate) const DECODE_LIMIT: usize = 64 << 20;
/// The version byte that starts every metadata record this version writes.
const META_VERSION: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes a value that will be stored under `key`.
pub(crate) fn encode_value<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| Error::Encode {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

/// Decodes a stored value; `what` names it in the error.
pub(crate) fn decode_value<T: DeserializeOwned>(
    what: impl FnOnce() -> String,
    bytes: &[u8],
) -> Result<T> {
    match bincode::serde::decode_from_slice::<T, _>(bytes, config()) {
        Ok((value, used)) if used == bytes.len() => Ok(value),
        Ok((_, used)) => Err(Error::Decode {
            what: what(),
            message: format!(
                "{} trailing bytes after the value; it was stored as another type",
                bytes.len() - used
            ),
        }),
        Err(e) => Err(Error::Decode {
            what: what(),
            message: e.to_string(),
        }),
    }
}

/// Encodes a metadata record: the version byte, then the record.
pub(crate) fn encode_meta(meta: &Meta) -> Vec<u8> {
    let mut out = vec![META_VERSION];
    // Meta is a struct of integers and options of integers: encoding it into a Vec cannot fail.
    if let Err(e) = bincode::serde::encode_into_std_write(meta, &mut out, config()) {
        unreachable!("encoding a metadata record failed: {e}");
    }
    out
}

/// Decodes a metadata record of session `sid`.
pub(crate) fn decode_meta(sid: &str, bytes: &[u8]) -> Result<Meta> {
    let what = || format!("the metadata record of session {sid:?}");
    match bytes.split_first() {
        Some((&META_VERSION, rest)) => decode_value(what, rest),
        Some((v, _)) => Err(Error::Decode {
            what: what(),
            message: format!("unknown format version {v}"),
        }),
        None => Err(Error::Decode {
            what: what(),
            message: "the record is empty".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what() -> String {
        "test".into()
    }

    #[test]
    fn values_round_trip() {
        let b = encode_value("k", &("hi", 7u32)).unwrap();
        let v: (String, u32) = decode_value(what, &b).unwrap();
        assert_eq!(v, ("hi".to_string(), 7));
    }

    #[test]
    fn wrong_type_is_a_decode_error() {
        let b = encode_value("k", "a string").unwrap();
        assert!(matches!(
            decode_value::<u8>(what, &b),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            decode_value::<bool>(what, &[7]),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A varint claiming u64::MAX bytes of string.
        let bytes = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(decode_value::<Vec<u8>>(what, &bytes).is_err());
        assert!(decode_value::<String>(what, &bytes).is_err());
    }

    #[test]
    fn meta_round_trips_and_rejects_garbage() {
        let m = Meta {
            created: 1,
            last_access: 2,
            idle: Some(3),
            absolute_deadline: None,
            incarnation: 9,
        };
        assert_eq!(decode_meta("s", &encode_meta(&m)).unwrap(), m);
        assert!(decode_meta("s", &[]).is_err());
        assert!(decode_meta("s", &[2, 0]).is_err());
        assert!(decode_meta("s", &[1, 0xFF]).is_err());
    }
}
