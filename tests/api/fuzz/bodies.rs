//! JSON object bodies built from a route's fields: one field odd, a field holding NUL,
//! unknown keys, required fields missing, keys given twice, and texts that are no object.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use serde_json::Value;

use super::values::{arbitrary_text, deep_nesting, odd_literal, MALFORMED, NUL_JSON, ODD_KEYS};
use super::Gen;

/// A field of a body: its name, values that are valid for it, and its odd values.
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) valid: Vec<String>,
    /// Keys of a nested object, whose values are also fuzzed.
    pub(super) nested: &'static [&'static str],
}

pub(super) fn field(name: &'static str, valid: &[&str]) -> Field {
    Field {
        name,
        valid: valid.iter().map(|v| (*v).to_owned()).collect(),
        nested: &[],
    }
}

pub(super) fn nested(name: &'static str, valid: &[&str], keys: &'static [&'static str]) -> Field {
    Field {
        nested: keys,
        ..field(name, valid)
    }
}

fn odd_value_for(f: &Field) -> BoxedStrategy<String> {
    let mut options: Vec<(u32, BoxedStrategy<String>)> = vec![(6, odd_literal())];
    if !f.nested.is_empty() {
        let keys = f.nested.to_vec();
        options.push((
            4,
            (select(keys), odd_literal())
                .prop_map(|(k, v)| format!("{{\"{k}\":{v}}}"))
                .boxed(),
        ));
        options.push((
            1,
            (select(ODD_KEYS), odd_literal())
                .prop_map(|(k, v)| format!("{{\"{k}\":{v}}}"))
                .boxed(),
        ));
    }
    Union::new_weighted(options).boxed()
}

pub(super) fn object_text(pairs: &[(&str, String)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", inner.join(","))
}

fn valid_pairs(fields: &[Field], only: &[&str]) -> Vec<(&'static str, String)> {
    fields
        .iter()
        .filter(|f| only.contains(&f.name))
        .map(|f| (f.name, f.valid[0].clone()))
        .collect()
}

/// Bodies for a route taking a JSON object with `fields`; most of them invalid.
pub(super) fn object_body(
    fields: Vec<Field>,
    required: &'static [&'static str],
    optional: bool,
) -> BoxedStrategy<Gen> {
    let n = fields.len();
    let mut options: Vec<(u32, BoxedStrategy<Gen>)> = Vec::new();

    // One field odd, the required ones valid.
    let one_odd: Vec<BoxedStrategy<Gen>> = fields
        .iter()
        .map(|f| {
            let fields = fields.clone();
            let name = f.name;
            odd_value_for(f)
                .prop_map(move |v| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.retain(|(k, _)| *k != name);
                    pairs.push((name, v));
                    Gen::new(object_text(&pairs), false)
                })
                .boxed()
        })
        .collect();
    options.push((8, Union::new(one_odd).boxed()));

    // One field holding NUL, which no database text can store.
    {
        let fields = fields.clone();
        options.push((
            2,
            (0..n, select(NUL_JSON))
                .prop_map(move |(i, v)| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.retain(|(k, _)| *k != fields[i].name);
                    pairs.push((fields[i].name, v.to_owned()));
                    Gen::new(object_text(&pairs), false)
                })
                .boxed(),
        ));
    }

    // Every field omitted, valid or odd.
    let each: Vec<BoxedStrategy<Option<(&'static str, String)>>> = fields
        .iter()
        .map(|f| {
            let name = f.name;
            prop_oneof![
                2 => Just(None),
                2 => select(f.valid.clone()).prop_map(move |v| Some((name, v))),
                1 => odd_value_for(f).prop_map(move |v| Some((name, v))),
            ]
            .boxed()
        })
        .collect();
    options.push((
        3,
        each.prop_map(|pairs| {
            let pairs: Vec<(&str, String)> = pairs.into_iter().flatten().collect();
            Gen::new(object_text(&pairs), false)
        })
        .boxed(),
    ));

    // An unknown key.
    {
        let fields = fields.clone();
        options.push((
            3,
            (select(ODD_KEYS), odd_literal())
                .prop_map(move |(k, v)| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.push((k, v));
                    Gen::new(object_text(&pairs), true)
                })
                .boxed(),
        ));
    }

    // A required field missing.
    if !required.is_empty() {
        let fields = fields.clone();
        options.push((
            2,
            select(required.to_vec())
                .prop_map(move |missing| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.retain(|(k, _)| *k != missing);
                    Gen::new(object_text(&pairs), true)
                })
                .boxed(),
        ));
    }

    // A key given twice: a valid value, then an odd one.
    {
        let fields = fields.clone();
        options.push((
            1,
            (0..n, odd_literal())
                .prop_map(move |(i, v)| {
                    let mut pairs = valid_pairs(&fields, required);
                    pairs.push((fields[i].name, fields[i].valid[0].clone()));
                    pairs.push((fields[i].name, v));
                    Gen::new(object_text(&pairs), false)
                })
                .boxed(),
        ));
    }

    // Not a JSON object.
    options.push((3, select(MALFORMED).prop_map(|t| Gen::new(t, true)).boxed()));
    options.push((1, deep_nesting().prop_map(|t| Gen::new(t, true)).boxed()));
    options.push((
        1,
        arbitrary_text()
            .prop_map(move |t| {
                let blank = t.trim().is_empty() || t.bytes().all(|b| b.is_ascii_whitespace());
                let object = serde_json::from_str::<Value>(&t).is_ok_and(|v| v.is_object());
                let invalid = !(object || (optional && blank));
                Gen::new(t, invalid)
            })
            .boxed(),
    ));
    // Empty or absent.
    options.push((
        1,
        select(vec!["", " ", "\r\n\t "])
            .prop_map(move |t| Gen::new(t, !optional))
            .boxed(),
    ));
    options.push((
        1,
        Just(Gen {
            text: None,
            surely_invalid: !optional,
        })
        .boxed(),
    ));
    // All valid.
    {
        let fields = fields.clone();
        options.push((
            1,
            Just(())
                .prop_map(move |()| {
                    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                    Gen::new(object_text(&valid_pairs(&fields, &names)), false)
                })
                .boxed(),
        ));
    }
    Union::new_weighted(options).boxed()
}

/// Bodies for a list route: its own fields, then the paging ones; the body is optional.
pub(super) fn list_body(mut fields: Vec<Field>) -> BoxedStrategy<Gen> {
    fields.extend([
        field("limit", &["10", "1", "100"]),
        field("offset", &["0", "5"]),
    ]);
    object_body(fields, &[], true)
}
