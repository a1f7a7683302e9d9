//! Basic authentication against the web config's bcrypt hashes.
//!
//! bcrypt costs 50-100 ms of CPU at the usual cost of 10, on purpose; a
//! scrape every 15 s must not pay it each time. Credentials that passed are
//! remembered as an HMAC of the user and password under a key made at
//! start, so neither is kept in memory, and compared in constant time.
//! Credentials that failed are not remembered; their bcrypt runs on the
//! blocking pool, one at a time, so guessing costs the guesser time and
//! cannot take the CPU from scrapes that already passed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine;
use ring::hmac;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// How many passed credentials are remembered (a few users, a few
/// Prometheus replicas); the oldest goes first.
const REMEMBERED: usize = 32;

#[derive(Debug)]
pub struct BasicAuth {
    /// User → bcrypt hash.
    users: BTreeMap<String, String>,
    key: hmac::Key,
    passed: Mutex<Vec<hmac::Tag>>,
    /// One bcrypt at a time.
    bcrypt: Semaphore,
}

/// The user and password of an `Authorization: Basic` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl BasicAuth {
    /// `users` maps names to bcrypt hashes, checked by the config loader.
    pub fn new(users: BTreeMap<String, String>) -> BasicAuth {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system's random source");
        BasicAuth {
            users,
            key,
            passed: Mutex::new(Vec::new()),
            bcrypt: Semaphore::new(1),
        }
    }

    /// Whether the `Authorization` header's credentials are a user's.
    pub async fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some(credentials) = authorization.and_then(parse_basic) else {
            return false;
        };
        let tag = self.tag(&credentials);
        if self.remembered(&tag) {
            return true;
        }
        // An unknown user costs a bcrypt too, against some user's hash, so
        // that the answer's time does not tell which users exist.
        let (known, hash) = match self.users.get(&credentials.user) {
            Some(hash) => (true, hash.clone()),
            None => match self.users.values().next() {
                Some(hash) => (false, hash.clone()),
                None => return false,
            },
        };
        let Ok(_turn) = self.bcrypt.acquire().await else {
            return false;
        };
        let password = credentials.password;
        let matched = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .is_ok_and(|r| r.unwrap_or(false));
        if known && matched {
            self.remember(tag);
        }
        known && matched
    }

    fn tag(&self, c: &Credentials) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        // The user's length first: "ab"+"c" and "a"+"bc" differ.
        context.update(&(c.user.len() as u64).to_le_bytes());
        context.update(c.user.as_bytes());
        context.update(c.password.as_bytes());
        context.sign()
    }

    fn remembered(&self, tag: &hmac::Tag) -> bool {
        let passed = crate::lock::unpoisoned(&self.passed);
        // Every entry is compared, in constant time, whatever matches.
        passed
            .iter()
            .fold(subtle::Choice::from(0), |found, p| {
                found | p.as_ref().ct_eq(tag.as_ref())
            })
            .into()
    }

    fn remember(&self, tag: hmac::Tag) {
        let mut passed = crate::lock::unpoisoned(&self.passed);
        if passed.len() >= REMEMBERED {
            passed.remove(0);
        }
        passed.push(tag);
    }
}

/// `Basic base64(user:password)`, the scheme's name in any case (RFC 7617).
/// None for anything else.
pub fn parse_basic(header: &[u8]) -> Option<Credentials> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests;
