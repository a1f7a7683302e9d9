//! Where in the file `networks[i].<field>` is.
//!
//! serde_yaml_ng keeps no positions once a document is deserialized; it
//! only stamps errors with the line and path of the value being read when
//! they happen. A check made after parsing (a CIDR listed twice) reads the
//! text again, walks to the one value it is about and fails there, so its
//! error carries the same kind of line and path as every other error.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The error serde_yaml_ng gives for `message` at `networks[index].<field>`,
/// or None when the text holds no such value.
pub(super) fn error_at(
    text: &str,
    index: usize,
    field: &'static str,
    message: String,
) -> Option<serde_yaml_ng::Error> {
    let target = Target {
        index,
        field,
        message,
    };
    Document(&target)
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .err()
}

struct Target {
    index: usize,
    field: &'static str,
    message: String,
}

/// The top-level mapping; walks into `networks`.
struct Document<'a>(&'a Target);

/// The `networks` list; walks into entry `index`.
struct List<'a>(&'a Target);

/// One entry; fails at `field`.
struct Entry<'a>(&'a Target);

/// The value that fails.
struct Fail<'a>(&'a Target);

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "networks" {
                map.next_value_seed(List(self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut position = 0;
        loop {
            let more = if position == self.0.index {
                seq.next_element_seed(Entry(self.0))?.is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            position += 1;
        }
    }
}

impl<'de> DeserializeSeed<'de> for Entry<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == self.0.field {
                map.next_value_seed(Fail(self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Fail<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        // Going through the deserializer, not returning an error directly,
        // is what gets the error its line and path.
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Fail<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(&self.0.message))
    }
}
