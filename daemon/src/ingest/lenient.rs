//! Pieces of lenient serde visitors shared by the store parsers: a value of an unexpected JSON
//! type is read as "nothing here" and skipped unbuilt, so that one odd field never fails a line
//! (agents' formats change under us) and the bytes a fold does not use are not allocated.

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

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

/// Decodes one JSON record, as `serde_json::from_slice` does but faster on valid UTF-8: the
/// bytes are checked once, whole, with SIMD (`simdutf8`; the standard library's check runs a
/// word at a time and was 3 % of a backfill's CPU), and parsed as text, so the parser skips its
/// own check of every string it keeps. That check was a sixth of a transcript line's decoding.
///
/// Bytes that are not UTF-8 are decoded as before (the parser then checks only the strings it
/// keeps), so a line with a stray byte in a field no fold reads still counts.
pub fn from_json_bytes<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    from_json_bytes_seed(bytes, std::marker::PhantomData)
}

/// [`from_json_bytes`] through a seed: to decode into a value the caller holds rather than
/// build one and move it out (a record type of a few hundred bytes is copied at each move).
pub fn from_json_bytes_seed<'a, S: de::DeserializeSeed<'a>>(
    bytes: &'a [u8],
    seed: S,
) -> serde_json::Result<S::Value> {
    /// The whole input is one value (what `serde_json::from_str` checks after it).
    fn whole<'a, R: serde_json::de::Read<'a>, S: de::DeserializeSeed<'a>>(
        mut de: serde_json::Deserializer<R>,
        seed: S,
    ) -> serde_json::Result<S::Value> {
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => whole(serde_json::Deserializer::from_str(text), seed),
        Err(_) => whole(serde_json::Deserializer::from_slice(bytes), seed),
    }
}

/// A string, borrowed from the record when it holds no escapes (see [`opt_str`]).
pub(crate) struct BorrowedStr<'de>(pub(crate) Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for BorrowedStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An optional string field, borrowed from the record when it holds no escapes:
/// `#[serde(borrow, deserialize_with = "lenient::opt_str")]`. `#[serde(borrow)]` alone does not
/// reach through `Option`: serde builds an `Option<Cow<str>>` owned, always, which was a heap
/// copy of every such field of every line. Anything but a string or null is an error, as
/// for a plain `Option<String>`.
pub(crate) fn opt_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(<Option<BorrowedStr<'de>> as serde::Deserialize>::deserialize(d)?.map(|s| s.0))
}

/// A string, or `None` for any other value (skipped unbuilt). The string borrows from the
/// line unless it has escapes: most of a rollout's strings are copied nowhere.
#[derive(Default)]
pub(crate) struct MaybeString<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for MaybeString<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MaybeString<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeString<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeString(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeString(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MaybeString(Some(Cow::Owned(v))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|()| MaybeString(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| MaybeString(None))
            }
            scalars_are_empty!();
        }
        d.deserialize_any(V)
    }
}

/// A value kept only if it is a string.
pub(crate) fn string<'de, A: MapAccess<'de>>(
    map: &mut A,
) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(map.next_value::<MaybeString>()?.0)
}

/// A string value kept as its JSON literal (quotes and escapes as written) and decoded only when
/// read: [`LazyStr::get`]. A fold reads most long texts only sometimes (an answer's text only when
/// it reports an API error, a Codex agent message only when rendered); decoding each one
/// unescaped it into the parser's scratch buffer, grown from empty for every line, and copied it
/// again into the fold's own string. A string is checked as the parser checks every string
/// (control characters, UTF-8) either way, so the same lines fail. Anything but a string is
/// "no string", skipped unbuilt, as [`MaybeString`] does.
#[derive(Default, Clone, Copy)]
pub(crate) struct LazyStr<'a>(Option<&'a str>);

impl<'a> LazyStr<'a> {
    /// The decoded string: borrowed from the record unless it has escapes.
    pub(crate) fn get(&self) -> Option<Cow<'a, str>> {
        let literal = self.0?;
        let inner = literal.get(1..literal.len().saturating_sub(1))?;
        if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
            return Some(Cow::Borrowed(inner));
        }
        // The parser has already checked the literal; decoding it again cannot fail.
        serde_json::from_str::<String>(literal).ok().map(Cow::Owned)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LazyStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LazyStr<'a>, D::Error> {
        let raw = <&'de serde_json::value::RawValue as Deserialize>::deserialize(d)?.get();
        Ok(LazyStr(raw.starts_with('"').then_some(raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Record<'a> {
        #[serde(borrow, deserialize_with = "opt_str", default)]
        field: Option<Cow<'a, str>>,
    }

    fn field(json: &str) -> Result<Option<Cow<'_, str>>, String> {
        from_json_bytes::<Record>(json.as_bytes())
            .map(|r| r.field)
            .map_err(|e| e.to_string())
    }

    /// The reason for `opt_str`: a plain string is not copied; one with escapes is decoded.
    #[test]
    fn an_optional_string_is_borrowed_unless_it_has_escapes() {
        assert!(matches!(
            field(r#"{"field":"plain"}"#),
            Ok(Some(Cow::Borrowed("plain")))
        ));
        assert!(matches!(field(r#"{"field":"a\nb"}"#), Ok(Some(Cow::Owned(s))) if s == "a\nb"));
        assert!(matches!(field(r#"{"field":null}"#), Ok(None)));
        assert!(matches!(field(r#"{}"#), Ok(None)));
        let err = field(r#"{"field":5}"#).unwrap_err();
        assert!(err.contains("expected a string"), "{err}");
    }

    #[derive(serde::Deserialize)]
    struct Lazy<'a> {
        #[serde(borrow, default)]
        text: LazyStr<'a>,
        #[serde(default)]
        after: Option<u32>,
    }

    fn lazy(json: &[u8]) -> Result<(Option<String>, Option<u32>), String> {
        from_json_bytes::<Lazy>(json)
            .map(|r| (r.text.get().map(Cow::into_owned), r.after))
            .map_err(|e| e.to_string())
    }

    /// A string kept as its literal reads as the parser would have decoded it; any other value
    /// is no string; and a string the parser would reject fails the line as before.
    #[test]
    fn a_lazy_string_decodes_as_the_parser_does_and_fails_the_same_lines() {
        // A line, and what it reads as: the text and the field after it, or a failed line.
        type Case<'s> = (&'s [u8], Result<(Option<&'s str>, Option<u32>), ()>);
        let cases: &[Case] = &[
            (
                br#"{"text":"plain","after":1}"#,
                Ok((Some("plain"), Some(1))),
            ),
            (br#"{"text":"","after":1}"#, Ok((Some(""), Some(1)))),
            (
                br#"{"text":"a\nb \"q\" \u00e9 \ud83d\ude00 \\","after":2}"#,
                Ok((Some("a\nb \"q\" \u{e9} \u{1f600} \\"), Some(2))),
            ),
            (
                "{\"text\":\"caf\u{e9}\",\"after\":3}".as_bytes(),
                Ok((Some("caf\u{e9}"), Some(3))),
            ),
            (br#"{"text":null,"after":4}"#, Ok((None, Some(4)))),
            (
                br#"{"text":{"message":"x","n":[1,"]"]},"after":5}"#,
                Ok((None, Some(5))),
            ),
            (
                br#"{"text":["a",{"b":"c"}],"after":6}"#,
                Ok((None, Some(6))),
            ),
            (br#"{"text":12.5,"after":7}"#, Ok((None, Some(7)))),
            (br#"{"after":8}"#, Ok((None, Some(8)))),
            // A raw control character, a bad escape, an unclosed string: the line fails.
            (b"{\"text\":\"a\x01b\",\"after\":9}", Err(())),
            (br#"{"text":"a\qb","after":9}"#, Err(())),
            (br#"{"text":"abc"#, Err(())),
        ];
        for (json, want) in cases {
            let got = lazy(json);
            let want = want.map(|(t, a)| (t.map(str::to_owned), a));
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{}", String::from_utf8_lossy(json)),
                (Err(_), Err(())) => {}
                _ => panic!("{}: got {got:?}", String::from_utf8_lossy(json)),
            }
        }
        // Not UTF-8 elsewhere in the line: still read (the parser checks the strings it keeps).
        let mut line = br#"{"other":"x","text":"kept","after":10}"#.to_vec();
        line[10] = 0xff;
        assert_eq!(lazy(&line).unwrap(), (Some("kept".into()), Some(10)));
    }
}
