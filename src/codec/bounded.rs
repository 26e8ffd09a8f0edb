//! A serde `Deserializer` adapter that bounds what hostile bytes can cost.
//!
//! bincode is not self-describing: a value's bytes can claim any length. The
//! adapter keeps decoding linear in the input and its stack shallow:
//!
//! - **Elements.** Every sequence element, tuple or struct field and map entry
//!   is charged against one budget for the whole value (see
//!   [`super::element_budget`]). Elements of zero-sized types consume no
//!   input, so without it nine bytes claiming 2^40 unit values would loop for
//!   minutes. The size hint a visitor sees is capped by what is left, so no
//!   visitor preallocates for elements that cannot come.
//! - **Depth.** Every nested sequence, tuple, struct, map, enum, option and
//!   newtype adds a level; past [`super::MAX_DEPTH`] decoding fails instead of
//!   overflowing the stack.
//! - **Owned strings and byte buffers** are read as borrowed ones, which the
//!   decoder takes from the input slice; bincode's owned path would allocate
//!   the claimed length before finding the input too short.
//!
//! `shape` counts elements and depth the same way when a value is set, so a
//! value that was accepted always decodes.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

use super::limits::Limits;

/// The adapter around a deserializer.
pub(super) struct Bounded<'a, D> {
    pub(super) inner: D,
    pub(super) limits: Limits<'a>,
}

/// The adapter around a visitor, so that what it is handed is bounded too.
struct Wrap<'a, V> {
    inner: V,
    limits: Limits<'a>,
}

macro_rules! forward_leaf {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    forward_leaf! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_bytes deserialize_unit deserialize_identifier
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // Same bytes on the wire; the borrowed path allocates only what it
        // read, and the visitor still gets the owned value it asked for.
        self.inner.deserialize_str(Owned(visitor))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_bytes(Owned(visitor))
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_any(Wrap {
            inner: visitor,
            limits,
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_ignored_any(Wrap {
            inner: visitor,
            limits,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_option(Wrap {
            inner: visitor,
            limits,
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_newtype_struct(
            name,
            Wrap {
                inner: visitor,
                limits,
            },
        )
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_seq(Wrap {
            inner: visitor,
            limits,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_tuple(
            len,
            Wrap {
                inner: visitor,
                limits,
            },
        )
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_tuple_struct(
            name,
            len,
            Wrap {
                inner: visitor,
                limits,
            },
        )
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_map(Wrap {
            inner: visitor,
            limits,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_struct(
            name,
            fields,
            Wrap {
                inner: visitor,
                limits,
            },
        )
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits.deeper().map_err(de::Error::custom)?;
        self.inner.deserialize_enum(
            name,
            variants,
            Wrap {
                inner: visitor,
                limits,
            },
        )
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char)
        visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Bounded {
            inner: d,
            limits: self.limits,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Bounded {
            inner: d,
            limits: self.limits,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Wrap {
            inner: seq,
            limits: self.limits,
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Wrap {
            inner: map,
            limits: self.limits,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Wrap {
            inner: data,
            limits: self.limits,
        })
    }
}

/// Hands a visitor that asked for an owned string or byte buffer the owned
/// copy of what the decoder lent, as bincode's owned path would have.
struct Owned<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Owned<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.0.visit_string(v.to_owned())
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.0.visit_byte_buf(v.to_vec())
    }
}

/// A seed whose value is charged as one element before it is decoded.
struct Charged<'a, S> {
    inner: S,
    limits: Limits<'a>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Charged<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.limits.charge().map_err(de::Error::custom)?;
        self.inner.deserialize(Bounded {
            inner: d,
            limits: self.limits,
        })
    }
}

/// A seed decoded through the adapter without a charge.
struct Free<'a, S> {
    inner: S,
    limits: Limits<'a>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Free<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Bounded {
            inner: d,
            limits: self.limits,
        })
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.inner.next_element_seed(Charged {
            inner: seed,
            limits: self.limits,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.limits.cap(self.inner.size_hint())
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Charged {
            inner: seed,
            limits: self.limits,
        })
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(Free {
            inner: seed,
            limits: self.limits,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.limits.cap(self.inner.size_hint())
    }
}

impl<'a, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Wrap<'a, A> {
    type Error = A::Error;
    type Variant = Wrap<'a, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let limits = self.limits;
        let (value, variant) = self.inner.variant_seed(Free {
            inner: seed,
            limits,
        })?;
        Ok((
            value,
            Wrap {
                inner: variant,
                limits,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Free {
            inner: seed,
            limits: self.limits,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Wrap {
                inner: visitor,
                limits: self.limits,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Wrap {
                inner: visitor,
                limits: self.limits,
            },
        )
    }
}
