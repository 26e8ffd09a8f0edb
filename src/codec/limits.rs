//! The budget one value is encoded and decoded under: how many elements it
//! may hold for its size in bytes, and how deep it may nest. `shape` checks
//! it when a value is set and `bounded` when one is read, counting alike.

use std::cell::Cell;

/// How deep a value may nest: sequences, tuples, structs, maps, enums,
/// options and newtypes each add a level.
pub(crate) const MAX_DEPTH: u32 = 128;

/// How many elements (sequence items, tuple and struct fields, map entries)
/// a value of `len` encoded bytes may hold. An element of a type that is not
/// zero-sized takes at least one byte, so only values dense in zero-sized
/// fields or items come near it.
pub(crate) fn element_budget(len: usize) -> u64 {
    (len as u64).saturating_mul(8).saturating_add(4096)
}

/// What is left of one value's budget. Depth travels by value down the
/// nesting; the element count is shared by the whole value.
#[derive(Clone, Copy)]
pub(super) struct Limits<'a> {
    elements_left: &'a Cell<u64>,
    depth: u32,
}

impl<'a> Limits<'a> {
    pub(super) fn new(elements_left: &'a Cell<u64>) -> Self {
        Limits {
            elements_left,
            depth: 0,
        }
    }

    /// One level deeper, or why not.
    pub(super) fn deeper(self) -> Result<Self, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!("the value nests deeper than {MAX_DEPTH} levels"));
        }
        Ok(Limits {
            depth: self.depth + 1,
            ..self
        })
    }

    /// Charges one element, or says that the budget is spent.
    pub(super) fn charge(self) -> Result<(), String> {
        match self.elements_left.get().checked_sub(1) {
            Some(left) => {
                self.elements_left.set(left);
                Ok(())
            }
            None => Err("the value holds more elements than its size allows \
                 (zero-sized items or fields count too)"
                .into()),
        }
    }

    /// `hint`, capped at the elements left.
    pub(super) fn cap(self, hint: Option<usize>) -> Option<usize> {
        let left = usize::try_from(self.elements_left.get()).unwrap_or(usize::MAX);
        hint.map(|h| h.min(left))
    }
}
