//! Checks a value against its budget when it is set, counting elements and
//! depth exactly as `bounded` does when it is read: a serde `Serializer` that
//! writes nothing and only walks the value.

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Serializer};

use super::limits::Limits;

/// Why a value is over its budget.
#[derive(Debug)]
pub(super) struct Over(pub(super) String);

impl fmt::Display for Over {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Over {}

impl ser::Error for Over {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Over(msg.to_string())
    }
}

/// Walks one level of a value.
#[derive(Clone, Copy)]
pub(super) struct Shape<'a> {
    pub(super) limits: Limits<'a>,
}

impl Shape<'_> {
    fn deeper(self) -> Result<Self, Over> {
        Ok(Shape {
            limits: self.limits.deeper().map_err(Over)?,
        })
    }

    /// Charges one element and walks it one level down from this one.
    fn element<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Over> {
        self.limits.charge().map_err(Over)?;
        value.serialize(self)
    }
}

macro_rules! leaves {
    ($($method:ident($ty:ty))*) => {$(
        fn $method(self, _: $ty) -> Result<(), Over> {
            Ok(())
        }
    )*};
}

impl<'a> Serializer for Shape<'a> {
    type Ok = ();
    type Error = Over;
    type SerializeSeq = Shape<'a>;
    type SerializeTuple = Shape<'a>;
    type SerializeTupleStruct = Shape<'a>;
    type SerializeTupleVariant = Shape<'a>;
    type SerializeMap = Shape<'a>;
    type SerializeStruct = Shape<'a>;
    type SerializeStructVariant = Shape<'a>;

    leaves! {
        serialize_bool(bool) serialize_i8(i8) serialize_i16(i16) serialize_i32(i32)
        serialize_i64(i64) serialize_i128(i128) serialize_u8(u8) serialize_u16(u16)
        serialize_u32(u32) serialize_u64(u64) serialize_u128(u128) serialize_f32(f32)
        serialize_f64(f64) serialize_char(char) serialize_str(&str) serialize_bytes(&[u8])
        serialize_unit_struct(&'static str)
    }

    fn serialize_unit(self) -> Result<(), Over> {
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Over> {
        self.deeper().map(drop)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Over> {
        value.serialize(self.deeper()?)
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Over> {
        self.deeper().map(drop)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Over> {
        value.serialize(self.deeper()?)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Over> {
        value.serialize(self.deeper()?)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Over> {
        self.deeper()
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, Over> {
        self.deeper()
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Over> {
        self.deeper()
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Over> {
        self.deeper()
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, Over> {
        self.deeper()
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Over> {
        self.deeper()
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Over> {
        self.deeper()
    }

    fn is_human_readable(&self) -> bool {
        // bincode is not; a type that serializes differently for the two must
        // be walked the way bincode sees it.
        false
    }
}

macro_rules! compound {
    ($($trait:ident::$method:ident($($name:ty),*))*) => {$(
        impl ser::$trait for Shape<'_> {
            type Ok = ();
            type Error = Over;

            fn $method<T: Serialize + ?Sized>(&mut self, $(_: $name,)* value: &T) -> Result<(), Over> {
                self.element(value)
            }

            fn end(self) -> Result<(), Over> {
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq::serialize_element()
    SerializeTuple::serialize_element()
    SerializeTupleStruct::serialize_field()
    SerializeTupleVariant::serialize_field()
    SerializeStruct::serialize_field(&'static str)
    SerializeStructVariant::serialize_field(&'static str)
}

impl ser::SerializeMap for Shape<'_> {
    type Ok = ();
    type Error = Over;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Over> {
        self.element(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Over> {
        value.serialize(*self)
    }

    fn end(self) -> Result<(), Over> {
        Ok(())
    }
}
