//! How durations are written in configuration: a number of milliseconds, or a string with a
//! unit (`"250ms"`, `"5s"`, `"2m"`, `"1h"`); single values and lists (in the environment, a
//! comma-separated string).

use std::time::Duration;

/// Durations in config are milliseconds (`batch_wait = 5`), or strings like `"5s"`, `"250ms"`, `"2m"`.
pub(super) mod humantime_ms {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Ms(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(t) => super::parse_duration(&t).map_err(D::Error::custom),
        }
    }
}

/// An optional duration: absent or `null` is off, otherwise as [`humantime_ms`].
pub(super) mod humantime_ms_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::humantime_ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::humantime_ms")] Duration);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

pub(super) mod humantime_ms_vec {
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for d in v {
            seq.serialize_element(&(d.as_millis() as u64))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Ms(u64),
            Text(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum List {
            Items(Vec<Raw>),
            // From the environment: "5s,30s,2m".
            Joined(String),
        }
        let items = match List::deserialize(d)? {
            List::Items(items) => items,
            List::Joined(s) => s
                .split(',')
                .map(|p| Raw::Text(p.trim().to_owned()))
                .collect(),
        };
        items
            .into_iter()
            .map(|r| match r {
                Raw::Ms(ms) => Ok(Duration::from_millis(ms)),
                Raw::Text(t) => super::parse_duration(&t).map_err(D::Error::custom),
            })
            .collect()
    }
}

/// Parses `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"90d"` or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("not a duration: {text:?}"))?;
    let ms = match unit {
        "" | "ms" => n,
        "s" => n * 1_000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => {
            return Err(format!(
                "unknown duration unit in {text:?} (use ms, s, m, h or d)"
            ));
        }
    };
    Ok(Duration::from_millis(ms))
}
