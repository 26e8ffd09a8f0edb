//! sessionstore's errors as tower-sessions' error kinds, each with our message kept.

use tower_sessions_core::session_store::Error as TowerError;

/// Maps one of our errors to tower-sessions' kinds: a value that does not
/// encode or is too large, or a key the store refuses, is `Encode`; stored
/// bytes that do not decode are `Decode`; everything else (storage, I/O, a
/// stalled or read-only store) is `Backend`. The message is ours, unchanged.
pub(crate) fn to_tower(e: sessionstore::Error) -> TowerError {
    use sessionstore::Error as E;
    let message = e.to_string();
    match e {
        E::Encode { .. } | E::ValueTooLarge { .. } | E::InvalidKey { .. } => {
            TowerError::Encode(message)
        }
        E::Decode { .. } => TowerError::Decode(message),
        _ => TowerError::Backend(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_keeps_our_message() {
        let enc = sessionstore::Error::Encode {
            key: "k".into(),
            message: "bad".into(),
        };
        let text = enc.to_string();
        assert!(matches!(to_tower(enc), TowerError::Encode(m) if m == text));

        let dec = sessionstore::Error::Decode {
            what: "key \"k\"".into(),
            message: "short".into(),
        };
        let text = dec.to_string();
        assert!(matches!(to_tower(dec), TowerError::Decode(m) if m == text));

        let too_large = sessionstore::Error::ValueTooLarge {
            key: "k".into(),
            size: 10,
            max: 1,
        };
        assert!(
            matches!(to_tower(too_large), TowerError::Encode(m) if m.contains("over the limit"))
        );

        let other = sessionstore::Error::InvalidConfig("write_timeout 0".into());
        assert!(matches!(to_tower(other), TowerError::Backend(m) if m.contains("write_timeout 0")));
    }
}
