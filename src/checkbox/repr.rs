//! The parts of a plainbox/Checkbox checkpoint that a summary needs, read
//! from a JSON stream with hand-written serde visitors.
//!
//! Why not derived structs: a derived struct also accepts a JSON array
//! (positionally), and it fails the whole document on one field of the
//! wrong type. Here an object is only ever read from a JSON object, and a
//! field of an unexpected type is kept as what it is ([`Leaf`], or
//! [`Obj::Wrong`]) so that the summary can say which field is wrong and
//! still show the rest.
//!
//! Invariants:
//! - only known keys are kept; everything else (job checksums,
//!   `system_information`, inline io-logs, keys of a newer format) is
//!   skipped as it streams past, without building a tree;
//! - a kept list or map holds at most [`MAX_ITEMS`] entries, and no nested
//!   container is kept inside a leaf, so memory stays proportional to the
//!   text kept (titles, ids, flags), itself bounded by the decoded size;
//! - duplicate keys: the last one wins, as in Python's `json.loads`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Most entries kept in one list or map: far more than any real session
/// (a few thousand jobs), few enough that a hostile one cannot make the
/// summary big.
pub(crate) const MAX_ITEMS: usize = 1 << 20;

/// A leaf field's value. Containers nested inside are not kept.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    /// A JSON number with a fraction or exponent (Python's `float`), or an
    /// integer too large for `i64`.
    Float(f64),
    Str(String),
    /// A list: its string items in order, and how many items were not
    /// strings.
    List {
        strings: Vec<String>,
        others: usize,
    },
    Object,
}

impl Leaf {
    /// The JSON type name, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Leaf::Null => "null",
            Leaf::Bool(_) => "a boolean",
            Leaf::Int(_) => "an integer",
            Leaf::Float(_) => "a float",
            Leaf::Str(_) => "a string",
            Leaf::List { .. } => "a list",
            Leaf::Object => "an object",
        }
    }
}

struct LeafVisitor;

impl<'de> Visitor<'de> for LeafVisitor {
    type Value = Leaf;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Leaf, E> {
        Ok(Leaf::Null)
    }
    fn visit_none<E>(self) -> Result<Leaf, E> {
        Ok(Leaf::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Leaf, E> {
        Ok(Leaf::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Leaf, E> {
        Ok(Leaf::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Leaf, E> {
        Ok(i64::try_from(v).map_or(Leaf::Float(v as f64), Leaf::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Leaf, E> {
        Ok(Leaf::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Leaf, E> {
        Ok(Leaf::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Leaf, E> {
        Ok(Leaf::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leaf, A::Error> {
        let mut strings = Vec::new();
        let mut others = 0usize;
        while let Some(item) = seq.next_element::<Item>()? {
            if strings.len() + others >= MAX_ITEMS {
                return Err(de::Error::custom(format!(
                    "a list of more than {MAX_ITEMS} items"
                )));
            }
            match item {
                Item::Str(s) => strings.push(s),
                Item::Other => others += 1,
            }
        }
        Ok(Leaf::List { strings, others })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Leaf, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Leaf::Object)
    }
}

impl<'de> Deserialize<'de> for Leaf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Leaf, D::Error> {
        d.deserialize_any(LeafVisitor)
    }
}

/// An item of a leaf list: a string is kept, anything else skipped.
enum Item {
    Str(String),
    Other,
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Item, E> {
                Ok(Item::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Item, E> {
                Ok(Item::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Item, E> {
                Ok(Item::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Item::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Item::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A type read from the entries of a JSON object.
pub(crate) trait FromMap: Sized {
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// A field that should hold a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Obj<T> {
    Map(T),
    /// Something else: its JSON type, for messages.
    Wrong(&'static str),
}

impl<'de, T: FromMap> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Obj<T>, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: FromMap> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::from_map(map).map(Obj::Map)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Obj<T>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Obj::Wrong("a list"))
            }
            fn visit_unit<E>(self) -> Result<Obj<T>, E> {
                Ok(Obj::Wrong("null"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Obj<T>, E> {
                Ok(Obj::Wrong("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Obj<T>, E> {
                Ok(Obj::Wrong("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Obj<T>, E> {
                Ok(Obj::Wrong("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Obj<T>, E> {
                Ok(Obj::Wrong("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Obj<T>, E> {
                Ok(Obj::Wrong("a string"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The whole document: `{"version": N, "session": {...}}`.
#[derive(Debug, Default)]
pub(crate) struct DocRepr {
    pub version: Option<Leaf>,
    pub session: Option<Obj<SessionRepr>>,
}

impl FromMap for DocRepr {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut doc = DocRepr::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => doc.version = Some(map.next_value()?),
                "session" => doc.session = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(doc)
    }
}

/// `session`: what `_repr_SessionState` writes.
#[derive(Debug, Default)]
pub(crate) struct SessionRepr {
    pub metadata: Option<Obj<MetaRepr>>,
    pub results: Option<Obj<ResultsRepr>>,
    pub desired_job_list: Option<Leaf>,
    pub mandatory_job_list: Option<Leaf>,
    /// Whether `jobs` (the id -> checksum map) is there; its content is
    /// not needed.
    pub has_jobs: bool,
}

impl FromMap for SessionRepr {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut s = SessionRepr::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metadata" => s.metadata = Some(map.next_value()?),
                "results" => s.results = Some(map.next_value()?),
                "desired_job_list" => s.desired_job_list = Some(map.next_value()?),
                "mandatory_job_list" => s.mandatory_job_list = Some(map.next_value()?),
                "jobs" => {
                    map.next_value::<IgnoredAny>()?;
                    s.has_jobs = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(s)
    }
}

/// `session.metadata`: what `_repr_SessionMetaData` writes.
#[derive(Debug, Default)]
pub(crate) struct MetaRepr {
    pub title: Option<Leaf>,
    pub flags: Option<Leaf>,
    pub running_job_name: Option<Leaf>,
    pub app_blob: Option<Leaf>,
    pub app_id: Option<Leaf>,
    pub custom_joblist: Option<Leaf>,
    pub rejected_jobs: Option<Leaf>,
    pub last_job_start_time: Option<Leaf>,
    pub remaining_todo_jobs: Option<Leaf>,
}

impl FromMap for MetaRepr {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut m = MetaRepr::default();
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "title" => &mut m.title,
                "flags" => &mut m.flags,
                "running_job_name" => &mut m.running_job_name,
                "app_blob" => &mut m.app_blob,
                "app_id" => &mut m.app_id,
                "custom_joblist" => &mut m.custom_joblist,
                "rejected_jobs" => &mut m.rejected_jobs,
                "last_job_start_time" => &mut m.last_job_start_time,
                "remaining_todo_jobs" => &mut m.remaining_todo_jobs,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(m)
    }
}

/// `session.results`: job id -> list of results, in the file's order
/// (plainbox sorts the keys).
#[derive(Debug, Default)]
pub(crate) struct ResultsRepr(pub Vec<(String, ResultList)>);

impl FromMap for ResultsRepr {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut entries: Vec<(String, ResultList)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: ResultList = map.next_value()?;
            if let Some(slot) = entries.iter_mut().rev().find(|(k, _)| *k == key) {
                // Duplicate key: the last one wins. Only hostile input has
                // them, so the linear search costs nothing in practice; it
                // is bounded by MAX_ITEMS below.
                slot.1 = value;
                continue;
            }
            if entries.len() >= MAX_ITEMS {
                return Err(de::Error::custom(format!(
                    "results for more than {MAX_ITEMS} jobs"
                )));
            }
            entries.push((key, value));
        }
        Ok(ResultsRepr(entries))
    }
}

/// The list of results of one job.
#[derive(Debug)]
pub(crate) enum ResultList {
    /// `null` (plainbox reads it as no result).
    Null,
    Items(Vec<Obj<ResultRepr>>),
    Wrong(&'static str),
}

impl<'de> Deserialize<'de> for ResultList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ResultList, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ResultList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of results")
            }
            fn visit_unit<E>(self) -> Result<ResultList, E> {
                Ok(ResultList::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ResultList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Obj<ResultRepr>>()? {
                    if items.len() >= MAX_ITEMS {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_ITEMS} results for one job"
                        )));
                    }
                    items.push(item);
                }
                Ok(ResultList::Items(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResultList, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ResultList::Wrong("an object"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<ResultList, E> {
                Ok(ResultList::Wrong("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<ResultList, E> {
                Ok(ResultList::Wrong("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<ResultList, E> {
                Ok(ResultList::Wrong("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<ResultList, E> {
                Ok(ResultList::Wrong("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<ResultList, E> {
                Ok(ResultList::Wrong("a string"))
            }
        }
        d.deserialize_any(V)
    }
}

/// One result: what `_repr_JobResultBase` and `_repr_DiskJobResult` /
/// `_repr_MemoryJobResult` write.
#[derive(Debug, Default)]
pub(crate) struct ResultRepr {
    pub outcome: Option<Leaf>,
    pub return_code: Option<Leaf>,
    pub comments: Option<Leaf>,
    pub execution_duration: Option<Leaf>,
    pub io_log_filename: Option<Leaf>,
    /// How many records an in-memory result (`io_log`) holds inline; the
    /// records themselves are not kept.
    pub inline_io_log: Option<usize>,
}

/// Counts the items of a list without keeping them; anything else is
/// counted as zero items.
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(0))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count(0))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(0))
            }
        }
        d.deserialize_any(V)
    }
}

impl FromMap for ResultRepr {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut r = ResultRepr::default();
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "outcome" => &mut r.outcome,
                "return_code" => &mut r.return_code,
                "comments" => &mut r.comments,
                "execution_duration" => &mut r.execution_duration,
                "io_log_filename" => &mut r.io_log_filename,
                "io_log" => {
                    r.inline_io_log = Some(map.next_value::<Count>()?.0);
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = Some(map.next_value()?);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Obj<DocRepr> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn an_object_is_only_read_from_an_object() {
        // A derived struct would read `[6, {}]` as version 6 and a session.
        assert!(matches!(doc("[6, {}]"), Obj::Wrong("a list")));
        assert!(matches!(doc("\"x\""), Obj::Wrong("a string")));
        let Obj::Map(d) = doc(r#"{"version": 6, "session": [1, 2]}"#) else {
            panic!("not read as an object");
        };
        assert_eq!(d.version, Some(Leaf::Int(6)));
        assert!(matches!(d.session, Some(Obj::Wrong("a list"))));
    }

    #[test]
    fn leaves_keep_their_type_and_skip_nested_containers() {
        let Obj::Map(d) = doc(
            r#"{"version": 7.0, "session": {"metadata": {"title": {"a": [1]},
            "flags": ["x", 3, ["y"], "z"], "last_job_start_time": 12,
            "app_id": null}, "jobs": {"a": "b"}, "other": [[[]]]}}"#,
        ) else {
            panic!("not read as an object");
        };
        assert_eq!(d.version, Some(Leaf::Float(7.0)));
        let Some(Obj::Map(s)) = d.session else {
            panic!("no session")
        };
        assert!(s.has_jobs);
        let Some(Obj::Map(m)) = s.metadata else {
            panic!("no metadata")
        };
        assert_eq!(m.title, Some(Leaf::Object));
        assert_eq!(
            m.flags,
            Some(Leaf::List {
                strings: vec!["x".into(), "z".into()],
                others: 2
            })
        );
        assert_eq!(m.last_job_start_time, Some(Leaf::Int(12)));
        assert_eq!(m.app_id, Some(Leaf::Null));
        assert_eq!(m.running_job_name, None);
    }

    #[test]
    fn results_keep_order_and_the_last_duplicate() {
        let r: Obj<ResultsRepr> = serde_json::from_str(
            r#"{"b": [{"outcome": "pass", "io_log": [[0, "stdout", ""], 1]}],
                "a": null, "b": [{"outcome": "fail"}], "c": 5}"#,
        )
        .unwrap();
        let Obj::Map(ResultsRepr(entries)) = r else {
            panic!("not read as an object")
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        let ResultList::Items(items) = &entries[0].1 else {
            panic!("b has no results")
        };
        let Obj::Map(first) = &items[0] else {
            panic!("not a result")
        };
        assert_eq!(first.outcome, Some(Leaf::Str("fail".into())));
        assert!(matches!(entries[1].1, ResultList::Null));
        assert!(matches!(entries[2].1, ResultList::Wrong("a number")));

        let r: ResultRepr = match serde_json::from_str::<Obj<ResultRepr>>(
            r#"{"outcome": null, "io_log": [[0, "stdout", ""], [1, "stderr", ""]]}"#,
        )
        .unwrap()
        {
            Obj::Map(r) => r,
            Obj::Wrong(w) => panic!("{w}"),
        };
        assert_eq!(r.inline_io_log, Some(2));
        assert_eq!(r.outcome, Some(Leaf::Null));
    }
}
