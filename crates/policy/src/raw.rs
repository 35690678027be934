//! The policy file exactly as written: serde structs mirroring the TOML
//! schema, with unknown keys refused and the source span kept on every value
//! that is validated later. Nothing outside `policy` sees these types.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

/// A list of strings with each entry's location.
pub(crate) type SpannedList = Vec<Spanned<String>>;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a policy document")]
pub(crate) struct RawPolicy {
    pub(crate) agent: Option<Spanned<Table<RawAgent>>>,
    pub(crate) limits: Option<Table<RawLimits>>,
    pub(crate) fs: Option<Table<RawFs>>,
    pub(crate) net: Option<Table<RawNet>>,
    pub(crate) tools: Option<Table<RawTools>>,
    pub(crate) model: Option<Table<crate::model::RawModel>>,
    pub(crate) agents: Option<Table<crate::agents::RawAgents>>,
    pub(crate) memory: Option<Table<crate::agents::RawMemory>>,
    pub(crate) clocks: Option<Table<RawClocks>>,
    pub(crate) random: Option<Table<RawRandom>>,
    pub(crate) human: Option<Table<RawHuman>>,
    pub(crate) trust: Option<Table<RawTrust>>,
}

/// A section, accepted only as a TOML table. serde's derived struct
/// deserializer would also take an array (`[[fs]]`) as fields-by-position and
/// then report a baffling "found map, expected a sequence".
pub(crate) struct Table<T>(pub(crate) T);

/// What a section looks like, for type errors.
pub(crate) trait Section {
    const EXPECTING: &'static str;
}

impl<'de, T: Deserialize<'de> + Section> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TableVisitor(PhantomData))
    }
}

struct TableVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Section> Visitor<'de> for TableVisitor<T> {
    type Value = Table<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Table<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Table)
    }
}

/// `[agent]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) strict: Option<bool>,
    pub(crate) publishers: Option<Vec<Spanned<String>>>,
}

impl Section for RawAgent {
    const EXPECTING: &'static str = "the [agent] table (keys `name`, `strict`, `publishers`)";
}

/// `[limits]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) memory: Option<Spanned<SizeText>>,
    pub(crate) tables: Option<Spanned<Integer>>,
    pub(crate) cpu: Option<Spanned<DurationText>>,
    pub(crate) wall: Option<Spanned<DurationText>>,
    pub(crate) output: Option<Spanned<SizeText>>,
}

impl Section for RawLimits {
    const EXPECTING: &'static str =
        "the [limits] table (keys `memory`, `tables`, `cpu`, `wall`, `output`)";
}

/// `[fs]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFs {
    pub(crate) read: Option<SpannedList>,
    pub(crate) write: Option<SpannedList>,
    pub(crate) sensitive: Option<SpannedList>,
}

impl Section for RawFs {
    const EXPECTING: &'static str = "the [fs] table (keys `read`, `write`, `sensitive`)";
}

/// `[net]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNet {
    pub(crate) allow: Option<SpannedList>,
}

impl Section for RawNet {
    const EXPECTING: &'static str = "the [net] table (key `allow`)";
}

/// `[tools]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTools {
    pub(crate) allow: Option<SpannedList>,
    pub(crate) sensitive: Option<SpannedList>,
}

impl Section for RawTools {
    const EXPECTING: &'static str = "the [tools] table (keys `allow`, `sensitive`)";
}

/// `[clocks]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClocks {
    pub(crate) wall: Option<bool>,
    pub(crate) monotonic: Option<bool>,
}

impl Section for RawClocks {
    const EXPECTING: &'static str = "the [clocks] table (keys `wall`, `monotonic`)";
}

/// `[random]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRandom {
    pub(crate) secure: Option<bool>,
}

impl Section for RawRandom {
    const EXPECTING: &'static str = "the [random] table (key `secure`)";
}

/// `[human]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHuman {
    pub(crate) ask: Option<bool>,
}

impl Section for RawHuman {
    const EXPECTING: &'static str = "the [human] table (key `ask`)";
}

/// `[trust]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrust {
    pub(crate) promote_after: Option<Spanned<Integer>>,
    pub(crate) inherit: Option<bool>,
    pub(crate) require: Option<std::collections::BTreeMap<String, Spanned<Integer>>>,
}

impl Section for RawTrust {
    const EXPECTING: &'static str =
        "the [trust] table (keys `promote_after`, `inherit`, `require`)";
}

/// A size string such as `"64 MiB"`, not yet parsed. A distinct type only so
/// that writing `memory = 67108864` is answered with what a size looks like.
pub(crate) struct SizeText(pub(crate) String);

/// A duration string such as `"500 ms"`, not yet parsed (see [`SizeText`]).
pub(crate) struct DurationText(pub(crate) String);

/// A TOML integer, range-checked later with its span (serde's own `u32`
/// error would say "expected u32"). Wide enough for any integer the TOML
/// parser hands over, so an oversized one is reported as out of range.
pub(crate) struct Integer(pub(crate) i128);

struct StringVisitor(&'static str);

impl Visitor<'_> for StringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = StringVisitor("a size string with a unit, such as \"64 MiB\"");
        deserializer.deserialize_str(visitor).map(SizeText)
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = StringVisitor("a duration string with a unit, such as \"500 ms\"");
        deserializer.deserialize_str(visitor).map(DurationText)
    }
}

struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = i128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<i128, E> {
        Ok(value.into())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<i128, E> {
        Ok(value.into())
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<i128, E> {
        Ok(value)
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<i128, E> {
        Ok(i128::try_from(value).unwrap_or(i128::MAX))
    }
}

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i128(IntegerVisitor).map(Integer)
    }
}
