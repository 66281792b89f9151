//! Pieces of lenient serde visitors shared by the store parsers: a value of an unexpected JSON
//! type is read as "nothing here" and skipped unbuilt, so that one odd field never fails a line
//! (agents' formats change under us) and the bytes a fold does not use are not allocated.

use serde::de::{IgnoredAny, MapAccess, SeqAccess};

/// Visitor methods that read any scalar (boolean, number, null) as `Self::Value::default()`.
macro_rules! scalars_are_empty {
    () => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}
pub(crate) use scalars_are_empty;

/// Skips the rest of a sequence unbuilt.
pub(crate) fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skips the rest of a map unbuilt.
pub(crate) fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}
