//! Basic auth: the header's parser, bcrypt, and remembered credentials.

use super::*;
use proptest::prelude::*;

fn basic(user_password: &str) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
    format!("Basic {encoded}").into_bytes()
}

fn auth() -> BasicAuth {
    let users = BTreeMap::from([
        (
            "prometheus".to_owned(),
            bcrypt::hash("s3cret:x", 4).unwrap(),
        ),
        ("other".to_owned(), bcrypt::hash("pw", 4).unwrap()),
    ]);
    BasicAuth::new(users)
}

#[test]
fn parses_basic_credentials() {
    assert_eq!(
        parse_basic(&basic("prometheus:s3cret:x")),
        Some(Credentials {
            user: "prometheus".into(),
            password: "s3cret:x".into()
        })
    );
    let lower = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode("a:")
    );
    assert_eq!(
        parse_basic(lower.as_bytes()),
        Some(Credentials {
            user: "a".into(),
            password: "".into()
        })
    );
    assert_eq!(parse_basic(b"Bearer abc"), None);
    assert_eq!(parse_basic(b"Basic !!!"), None);
    assert_eq!(parse_basic(&basic("no-colon")), None);
    assert_eq!(parse_basic(b"Basic"), None);
    assert_eq!(parse_basic(b"\xff\xfe"), None);
}

#[tokio::test]
async fn right_credentials_pass_and_are_remembered() {
    let auth = auth();
    assert!(auth.allows(Some(&basic("prometheus:s3cret:x"))).await);
    assert_eq!(auth.passed.lock().unwrap().len(), 1);
    // The second time needs no bcrypt: the remembered tag answers.
    assert!(auth.allows(Some(&basic("prometheus:s3cret:x"))).await);
    assert_eq!(auth.passed.lock().unwrap().len(), 1);
    assert!(auth.allows(Some(&basic("other:pw"))).await);
}

#[tokio::test]
async fn wrong_or_missing_credentials_fail_and_are_not_remembered() {
    let auth = auth();
    for header in [
        None,
        Some(basic("prometheus:wrong")),
        Some(basic("prometheus:pw")),
        Some(basic("nobody:pw")),
        Some(basic("other:s3cret:x")),
        Some(b"Basic".to_vec()),
    ] {
        assert!(!auth.allows(header.as_deref()).await, "{header:?}");
    }
    assert!(auth.passed.lock().unwrap().is_empty());
}

#[tokio::test]
async fn no_users_allow_nobody() {
    let auth = BasicAuth::new(BTreeMap::new());
    assert!(!auth.allows(Some(&basic("a:b"))).await);
}

#[tokio::test]
async fn remembers_at_most_a_bounded_number() {
    let auth = auth();
    for i in 0..(REMEMBERED + 5) {
        auth.remember(auth.tag(&Credentials {
            user: format!("u{i}"),
            password: String::new(),
        }));
    }
    assert_eq!(auth.passed.lock().unwrap().len(), REMEMBERED);
}

proptest! {
    #[test]
    fn any_header_parses_or_is_refused(header in prop::collection::vec(any::<u8>(), 0..100)) {
        let _ = parse_basic(&header);
    }

    #[test]
    fn encoded_credentials_round_trip(user in "[^:\\x00]{0,20}", password in "\\PC{0,40}") {
        let header = basic(&format!("{user}:{password}"));
        prop_assert_eq!(parse_basic(&header), Some(Credentials { user, password }));
    }
}
