//! The only module that calls bincode.
//!
//! Values are bincode 2 (standard configuration) through serde. Decoding must
//! consume every byte, so most values read as the wrong type fail instead of
//! decoding to nonsense. It is bounded in memory and time by the value's own
//! size (see `limits`): hostile bytes cannot claim more than they hold. A
//! value is checked against the same budget when it is set, so every value
//! that `Session::set` accepts reads back.
//!
//! The metadata record is one version byte followed by the bincode encoding
//! of [`Meta`]; see ARCHITECTURE.md.

mod bounded;
mod limits;
mod shape;

use std::cell::Cell;

use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer};

use crate::error::{Error, Result};
use crate::meta::Meta;
use bounded::Bounded;
use limits::Limits;
use limits::element_budget;
use shape::Shape;

/// The ceiling of `max_value_size`, in bytes.
pub(crate) const MAX_VALUE_SIZE: usize = 64 << 20;
/// The version byte that starts every metadata record this version writes.
const META_VERSION: u8 = 1;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Encodes a value that will be stored under `key`, and checks that it is
/// within the element and depth budget that reading it back will apply.
pub(crate) fn encode_value<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>> {
    let encode_error = |message: String| Error::Encode {
        key: key.to_owned(),
        message,
    };
    let bytes =
        bincode::serde::encode_to_vec(value, config()).map_err(|e| encode_error(e.to_string()))?;
    let left = Cell::new(element_budget(bytes.len()));
    value
        .serialize(Shape {
            limits: Limits::new(&left),
        })
        .map_err(|e| encode_error(e.0))?;
    Ok(bytes)
}

/// Decodes `T` through the bounded adapter.
struct BoundedSeed<'a, T> {
    limits: Limits<'a>,
    ty: std::marker::PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for BoundedSeed<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<T, D::Error> {
        T::deserialize(Bounded {
            inner: d,
            limits: self.limits,
        })
    }
}

/// Decodes a stored value; `what` names it in the error.
pub(crate) fn decode_value<T: DeserializeOwned>(
    what: impl FnOnce() -> String,
    bytes: &[u8],
) -> Result<T> {
    let left = Cell::new(element_budget(bytes.len()));
    let seed = BoundedSeed::<T> {
        limits: Limits::new(&left),
        ty: std::marker::PhantomData,
    };
    match bincode::serde::seed_decode_from_slice(seed, bytes, config()) {
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

/// Encodes the time floor: microseconds since the epoch, big-endian.
pub(crate) fn encode_time(micros: u64) -> Vec<u8> {
    micros.to_be_bytes().to_vec()
}

/// Decodes the time floor; `None` if it is not 8 bytes.
pub(crate) fn decode_time(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
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

    /// A recursive type, to nest values as deep as the input says.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    fn tree(depth: u32) -> Tree {
        (0..depth).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)))
    }

    #[test]
    fn a_huge_count_of_zero_sized_items_fails_at_once() {
        // A varint claiming 2^40 unit values, in 9 bytes.
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let err = decode_value::<Vec<()>>(what, &bytes).unwrap_err();
        assert!(err.to_string().contains("more elements"), "{err}");
        // The same for a map of unit keys and values.
        assert!(decode_value::<std::collections::BTreeMap<(), ()>>(what, &bytes).is_err());
    }

    #[test]
    fn a_huge_string_length_does_not_allocate_it() {
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        bytes.extend_from_slice(b"short");
        assert!(decode_value::<String>(what, &bytes).is_err());
        assert!(decode_value::<serde_bytes_like::Buf>(what, &bytes).is_err());
    }

    /// A byte buffer that asks serde for `deserialize_byte_buf`.
    mod serde_bytes_like {
        #[derive(Debug)]
        pub struct Buf;
        impl<'de> serde::Deserialize<'de> for Buf {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Buf;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, _: &[u8]) -> Result<Buf, E> {
                        Ok(Buf)
                    }
                }
                d.deserialize_byte_buf(V)
            }
        }
    }

    /// A string type whose visitor takes only owned strings, as bincode's
    /// owned path hands them.
    #[derive(Debug, PartialEq)]
    struct OwnedOnly(String);

    impl Serialize for OwnedOnly {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_str(&self.0)
        }
    }

    impl<'de> serde::Deserialize<'de> for OwnedOnly {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            #[expect(
                clippy::serde_api_misuse,
                reason = "the point of the test: a visitor that takes only owned strings"
            )]
            impl serde::de::Visitor<'_> for V {
                type Value = OwnedOnly;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an owned string")
                }
                fn visit_string<E>(self, v: String) -> std::result::Result<OwnedOnly, E> {
                    Ok(OwnedOnly(v))
                }
            }
            d.deserialize_string(V)
        }
    }

    #[test]
    fn a_visitor_of_owned_strings_still_gets_one() {
        let v = OwnedOnly("héllo".into());
        let bytes = encode_value("k", &v).unwrap();
        assert_eq!(decode_value::<OwnedOnly>(what, &bytes).unwrap(), v);
    }

    #[test]
    fn hostile_nesting_fails_instead_of_overflowing_the_stack() {
        // Variant 1 (Node) a million times: a million levels claimed.
        let bytes = vec![1u8; 1_000_000];
        let err = decode_value::<Tree>(what, &bytes).unwrap_err();
        assert!(err.to_string().contains("nests deeper"), "{err}");
    }

    #[test]
    fn nesting_up_to_the_limit_round_trips_and_beyond_it_is_refused_at_set() {
        // Each Node is an enum level and a newtype (Box is transparent): the
        // deepest value that fits has MAX_DEPTH - 1 nodes above its leaf.
        let max = limits::MAX_DEPTH;
        let ok = tree(max - 1);
        let bytes = encode_value("k", &ok).unwrap();
        assert_eq!(decode_value::<Tree>(what, &bytes).unwrap(), ok);
        let err = encode_value("k", &tree(max)).unwrap_err();
        assert!(
            matches!(err, Error::Encode { ref key, .. } if key == "k"),
            "{err}"
        );
        assert!(err.to_string().contains("nests deeper"), "{err}");
    }

    #[test]
    fn zero_sized_items_are_accepted_only_within_the_budget_and_then_read_back() {
        // vec![(); n] encodes as a varint of n: 3 bytes for these.
        let budget = element_budget(3) as usize;
        let fits = vec![(); budget];
        let bytes = encode_value("k", &fits).unwrap();
        assert_eq!(bytes.len(), 3);
        assert_eq!(decode_value::<Vec<()>>(what, &bytes).unwrap(), fits);
        let err = encode_value("k", &vec![(); budget + 1]).unwrap_err();
        assert!(err.to_string().contains("more elements"), "{err}");
    }

    proptest::proptest! {
        /// Whatever `encode_value` accepts decodes to the same value.
        #[test]
        fn accepted_values_read_back(
            ints in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..300),
            units in 0usize..6000,
            text in ".{0,40}",
            nested in proptest::collection::vec(proptest::collection::vec(proptest::option::of(proptest::prelude::any::<u8>()), 0..20), 0..20),
            depth in 0u32..140,
        ) {
            fn check<T>(v: &T) -> std::result::Result<(), proptest::test_runner::TestCaseError>
            where T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug {
                if let Ok(bytes) = encode_value("k", v) {
                    proptest::prop_assert_eq!(&decode_value::<T>(what, &bytes).unwrap(), v);
                }
                Ok(())
            }
            check(&ints)?;
            check(&vec![(); units])?;
            check(&(text.clone(), vec![Some(()); units], ints.clone()))?;
            check(&nested)?;
            check(&tree(depth))?;
            let map: std::collections::BTreeMap<u64, ()> = ints.iter().map(|i| (*i, ())).collect();
            check(&map)?;
        }
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
