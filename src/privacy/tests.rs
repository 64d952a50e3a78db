//! Unit tests of `privacy`: key names, sealing and opening, plaintext from
//! before encryption.

use super::*;

fn on() -> Privacy {
    Privacy::new(Some(&[9u8; 32]), vec![("k1".into(), [1u8; 32])])
}

#[test]
fn hashed_keys_hide_the_id_and_stay_apart() {
    let p = on();
    let key = ConvKey::new("wa", "263774227441");
    let stored = p.stored_key(&key);
    assert_eq!(stored.namespace(), "wa#");
    assert_eq!(stored.id().len(), 22);
    assert!(!stored.as_str().contains("263774227441"));
    assert_eq!(stored, p.stored_key(&key), "stable");
    // (namespace, id) pairs that concatenate alike hash apart.
    assert_ne!(
        p.stored_key(&ConvKey::new("wa", "1:2")),
        p.stored_key(&ConvKey::new("wa:1", "2"))
    );
    let other = Privacy::new(Some(&[8u8; 32]), vec![]);
    assert_ne!(other.stored_key(&key), stored, "the secret matters");
    let dedupe = p.stored_dedupe(&key, "wamid.HBgMMjYzNzc0MjI3NDQx");
    assert!(!dedupe.contains("wamid"));
    assert_ne!(
        dedupe,
        p.stored_dedupe(&ConvKey::new("wa", "1"), "wamid.HBgMMjYzNzc0MjI3NDQx")
    );
    assert_eq!(Privacy::off().stored_key(&key), key);
}

#[test]
fn values_are_bound_to_their_conversation_and_kind() {
    let p = on();
    let a = p.stored_key(&ConvKey::new("wa", "1"));
    let b = p.stored_key(&ConvKey::new("wa", "2"));
    let json = Bytes::from_static(br#"{"pin":"4321"}"#);
    let sealed = p.seal_state(&a, json.clone()).unwrap();
    assert_eq!(p.open_state(&a, sealed.clone()).unwrap(), json);
    assert_eq!(p.open_state(&b, sealed.clone()), Err(OpenError::Forged));
    assert_eq!(
        p.open_recorded(&a, "x", sealed.clone()),
        Err(OpenError::Forged)
    );
    // Plaintext from before encryption still reads; without keys a sealed
    // value is refused, never returned as is.
    assert_eq!(p.open_state(&a, json.clone()).unwrap(), json);
    let hashing_only = Privacy::new(Some(&[9u8; 32]), vec![]);
    assert_eq!(hashing_only.open_state(&a, sealed), Err(OpenError::NoKeys));
}
