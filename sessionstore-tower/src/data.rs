//! A record's data as keys of the session's global scope.
//!
//! Each value is stored as its JSON text, a `String` under the key of the
//! same name. JSON text round-trips a `serde_json::Value` exactly (numbers
//! keep their `i64`/`u64`/`f64` kind and every bit of an `f64`), and any
//! program that reads the store can read it back as a `String`.

use std::collections::HashMap;

use serde_json::Value;
use sessionstore::{Error, Result, Session};

/// Every key of `scope`, each value parsed from its JSON text.
///
/// # Errors
///
/// [`Error::Decode`] naming the key whose value is not a `String` of JSON text.
pub(crate) fn read_scope(scope: &Session) -> Result<HashMap<String, Value>> {
    let mut data = HashMap::with_capacity(scope.len());
    for key in scope.keys() {
        let value = read_key(scope, key)?.ok_or_else(|| Error::Decode {
            what: format!("key {key:?}"),
            message: "listed by the scope but not readable".into(),
        })?;
        data.insert(key.to_owned(), value);
    }
    Ok(data)
}

/// One key's value, parsed from its JSON text; `None` if the key is not set.
///
/// # Errors
///
/// [`Error::Decode`] naming the key if it holds no `String` of JSON text.
pub(crate) fn read_key(scope: &Session, key: &str) -> Result<Option<Value>> {
    let Some(text) = scope.get::<String>(key)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Decode {
            what: format!("key {key:?}"),
            message: format!("not JSON text, as sessionstore-tower writes: {e}"),
        })
}

/// Sets `key` to `value`'s JSON text.
///
/// # Errors
///
/// [`Error::InvalidKey`], [`Error::ValueTooLarge`] or [`Error::Encode`], naming the key.
pub(crate) fn write_key(scope: &mut Session, key: &str, value: &Value) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|e| Error::Encode {
        key: key.to_owned(),
        message: e.to_string(),
    })?;
    scope.set(key, &text)
}

/// Makes `scope` hold exactly `data`: sets each key whose value differs from
/// the one `scope` holds and removes each key `data` lacks. Keys whose value
/// is already the same stay clean, so a save writes only what changed.
/// Returns how many keys were set or removed.
///
/// # Errors
///
/// As [`write_key`], for the first key that fails; `scope` may then hold
/// some of the changes, and must not be saved.
pub(crate) fn apply(scope: &mut Session, data: &HashMap<String, Value>) -> Result<usize> {
    let mut changed = 0;
    for (key, value) in data {
        // A stored value that does not decode is replaced, not an error: the
        // record being saved is what the application wants there now.
        let same = matches!(read_key(scope, key), Ok(Some(ref old)) if old == value);
        if !same {
            write_key(scope, key, value)?;
            changed += 1;
        }
    }
    let gone: Vec<String> = scope
        .keys()
        .filter(|k| !data.contains_key(*k))
        .map(str::to_owned)
        .collect();
    for key in gone {
        scope.remove(&key);
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sessionstore::{SessionStore, Store};

    fn data(pairs: &[(&str, Value)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn values_round_trip_exactly() -> Result<()> {
        let store = Store::temporary()?;
        let mut s = SessionStore::create(&store)?;
        let d = data(&[
            ("int", json!(-9_007_199_254_740_993_i64)),
            ("big", json!(u64::MAX)),
            ("float", json!(0.1_f64 + 0.2_f64)),
            ("tiny", json!(f64::MIN_POSITIVE)),
            ("text", json!("ü \"quoted\" \n")),
            ("nested", json!({"a": [1, null, true, {"b": "c"}]})),
            ("null", Value::Null),
        ]);
        apply(&mut s, &d)?;
        store.save(&mut s)?;
        let back = read_scope(&store.get(s.id(), None)?.expect("live"))?;
        assert_eq!(back, d);
        // Every bit of the float, not only equality after parsing.
        assert_eq!(
            back["float"].as_f64().map(f64::to_bits),
            Some((0.1_f64 + 0.2_f64).to_bits())
        );
        assert!(back["big"].is_u64() && back["int"].is_i64());
        Ok(())
    }

    #[test]
    fn apply_marks_only_what_differs() -> Result<()> {
        let store = Store::temporary()?;
        let mut s = SessionStore::create(&store)?;
        apply(&mut s, &data(&[("a", json!(1)), ("b", json!(2))]))?;
        store.save(&mut s)?;
        let mut s = store.get(s.id(), None)?.expect("live");
        let n = apply(&mut s, &data(&[("a", json!(1)), ("c", json!(3))]))?;
        assert_eq!(n, 2, "c set and b removed; a unchanged");
        Ok(())
    }

    #[test]
    fn a_value_that_is_not_json_text_is_a_decode_error_naming_the_key() -> Result<()> {
        let store = Store::temporary()?;
        let mut s = SessionStore::create(&store)?;
        s.set("raw", "not json {")?;
        s.set("num", &7u32)?;
        store.save(&mut s)?;
        let s = store.get(s.id(), None)?.expect("live");
        let err = read_key(&s, "raw").expect_err("not JSON");
        assert!(
            matches!(&err, Error::Decode { what, .. } if what.contains("raw")),
            "{err}"
        );
        assert!(matches!(read_key(&s, "num"), Err(Error::Decode { .. })));
        Ok(())
    }

    #[test]
    fn a_key_the_store_refuses_is_an_error_naming_it() -> Result<()> {
        let store = Store::temporary()?;
        let mut s = SessionStore::create(&store)?;
        let err = apply(&mut s, &data(&[("", json!(1))])).expect_err("empty key");
        assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
        let err = apply(&mut s, &data(&[("bell\u{7}", json!(1))])).expect_err("control");
        assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
        Ok(())
    }
}
