//! The SDK's filter syntax (`LogicalOperatorInput`): `{AND|OR|NOT: [condition | group],
//! case_sensitive}` where a condition is `{field, operator, value}`, plus the shorthand
//! `{field: value}` (a list meaning any of them). Parsed against the fields a list offers.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::store::filter::{ColumnKind, Comparison, Condition, Scalar, TextMatch};

/// A field a list can be filtered on.
pub struct Field {
    pub name: &'static str,
    pub column: &'static str,
    pub kind: ColumnKind,
    /// The values a text field may take, when it is an enumeration.
    pub one_of: Option<&'static [&'static str]>,
}

impl Field {
    pub const fn new(name: &'static str, column: &'static str, kind: ColumnKind) -> Self {
        Field {
            name,
            column,
            kind,
            one_of: None,
        }
    }

    pub const fn one_of(mut self, values: &'static [&'static str]) -> Self {
        self.one_of = Some(values);
        self
    }
}

/// The SDK's operators served here; regex, full-text and spatial ones are refused by name.
const OPERATORS: [&str; 13] = [
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "nin",
    "contains",
    "starts_with",
    "ends_with",
    "exists",
    "is_null",
];

struct Parser<'a> {
    fields: &'a [Field],
}

fn bad(path: &[String], message: String) -> ApiError {
    let mut location = vec!["body", "filters"];
    location.extend(path.iter().map(String::as_str));
    ApiError::invalid("value_error", &location, message)
}

fn at(path: &[String], more: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(more.to_owned());
    p
}

/// A list's `search` text: none when absent or empty, at most 255 characters.
pub fn search(search: Option<String>) -> Result<Option<String>, ApiError> {
    match search {
        Some(s) if s.chars().count() > 255 => Err(ApiError::invalid(
            "string_too_long",
            &["body", "search"],
            "search is at most 255 characters",
        )),
        s => Ok(s.filter(|s| !s.is_empty())),
    }
}

/// Parses `filters` (null or absent: no restriction).
pub fn parse(filters: Option<&Value>, fields: &[Field]) -> Result<Condition, ApiError> {
    match filters {
        None | Some(Value::Null) => Ok(Condition::All(vec![])),
        Some(Value::Object(group)) => Parser { fields }.group(group, &[], false),
        Some(_) => Err(bad(&[], "filters must be an object".into())),
    }
}

impl Parser<'_> {
    fn field(&self, name: &str, path: &[String]) -> Result<&Field, ApiError> {
        self.fields.iter().find(|f| f.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
            bad(
                path,
                format!(
                    "'{name}' cannot be filtered on; fields: {}",
                    names.join(", ")
                ),
            )
        })
    }

    fn group(
        &self,
        group: &Map<String, Value>,
        path: &[String],
        inherited_case: bool,
    ) -> Result<Condition, ApiError> {
        let case_sensitive = match group.get("case_sensitive") {
            None | Some(Value::Null) => inherited_case,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(bad(
                    &at(path, "case_sensitive"),
                    "case_sensitive must be a boolean".into(),
                ))
            }
        };
        let mut all = Vec::new();
        for (key, value) in group {
            let here = at(path, key);
            match key.as_str() {
                "case_sensitive" => {}
                "AND" | "OR" | "NOT" => {
                    let items = match value {
                        Value::Null => continue,
                        Value::Array(items) => items,
                        _ => return Err(bad(&here, format!("{key} must be a list"))),
                    };
                    let mut parsed = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        parsed.push(self.item(item, &at(&here, &i.to_string()), case_sensitive)?);
                    }
                    all.push(match key.as_str() {
                        "AND" => Condition::All(parsed),
                        "OR" => Condition::Any(parsed),
                        _ => Condition::Not(parsed),
                    });
                }
                name => {
                    let field = self.field(name, &here)?;
                    all.push(self.shorthand(field, value, &here, case_sensitive)?);
                }
            }
        }
        Ok(Condition::All(all))
    }

    /// An element of AND/OR/NOT: a condition `{field, operator?, value}` or a nested group.
    fn item(&self, item: &Value, path: &[String], case: bool) -> Result<Condition, ApiError> {
        let Value::Object(map) = item else {
            return Err(bad(path, "a condition must be an object".into()));
        };
        let Some(name) = map.get("field") else {
            return self.group(map, path, case);
        };
        let name = name
            .as_str()
            .ok_or_else(|| bad(&at(path, "field"), "field must be a string".into()))?;
        // The SDK's models add `case_sensitive` to every element they serialize.
        let case = match map.get("case_sensitive") {
            Some(Value::Bool(b)) => *b,
            _ => case,
        };
        if let Some(extra) = map
            .keys()
            .find(|k| !["field", "operator", "value", "case_sensitive"].contains(&k.as_str()))
        {
            return Err(bad(
                &at(path, extra),
                format!("a condition has field, operator and value, not '{extra}'"),
            ));
        }
        let field = self.field(name, &at(path, "field"))?;
        let operator = match map.get("operator") {
            None | Some(Value::Null) => "eq",
            Some(Value::String(op)) => op.as_str(),
            Some(_) => {
                return Err(bad(
                    &at(path, "operator"),
                    "operator must be a string".into(),
                ))
            }
        };
        let value = map.get("value").unwrap_or(&Value::Null);
        self.condition(field, operator, value, &at(path, "value"), case)
    }

    /// `{field: value}`, `{field: [values]}` or `{field: {operator: value}}`.
    fn shorthand(
        &self,
        field: &Field,
        value: &Value,
        path: &[String],
        case: bool,
    ) -> Result<Condition, ApiError> {
        match value {
            Value::Array(_) => self.condition(field, "in", value, path, case),
            Value::Object(ops) => {
                let mut all = Vec::with_capacity(ops.len());
                for (op, v) in ops {
                    let op = op.strip_prefix('$').unwrap_or(op);
                    all.push(self.condition(field, op, v, &at(path, op), case)?);
                }
                Ok(Condition::All(all))
            }
            _ => self.condition(field, "eq", value, path, case),
        }
    }

    fn scalar(&self, field: &Field, value: &Value, path: &[String]) -> Result<Scalar, ApiError> {
        let scalar = match (field.kind, value) {
            (ColumnKind::Text, Value::String(s)) => Scalar::Text(s.clone()),
            (ColumnKind::Bool, Value::Bool(b)) => Scalar::Bool(*b),
            (ColumnKind::Int, Value::Number(n)) if n.as_i64().is_some() => {
                Scalar::Int(n.as_i64().unwrap_or_default())
            }
            (_, Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("dynamic") => {
                return Err(bad(
                    path,
                    "dynamic values are not supported here; give the value itself".into(),
                ))
            }
            (kind, _) => {
                let want = match kind {
                    ColumnKind::Text => "a string",
                    ColumnKind::Bool => "a boolean",
                    ColumnKind::Int => "an integer",
                };
                return Err(bad(
                    path,
                    format!("'{}' compares with {want}, not {value}", field.name),
                ));
            }
        };
        if let (Some(allowed), Scalar::Text(s)) = (field.one_of, &scalar) {
            if !allowed.contains(&s.as_str()) {
                return Err(bad(
                    path,
                    format!(
                        "'{s}' is not a valid {}; one of: {}",
                        field.name,
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(scalar)
    }

    fn condition(
        &self,
        field: &Field,
        operator: &str,
        value: &Value,
        path: &[String],
        case_sensitive: bool,
    ) -> Result<Condition, ApiError> {
        let column = field.column;
        let compare = |op| -> Result<Condition, ApiError> {
            Ok(Condition::Compare {
                column,
                op,
                value: self.scalar(field, value, path)?,
                // Enumerations are matched as written.
                case_sensitive: case_sensitive || field.one_of.is_some(),
            })
        };
        match operator {
            "eq" => compare(Comparison::Eq),
            "ne" => compare(Comparison::Ne),
            "gt" | "gte" | "lt" | "lte" if field.kind == ColumnKind::Bool => Err(bad(
                path,
                format!("'{}' is a boolean; it has no order", field.name),
            )),
            "gt" => compare(Comparison::Gt),
            "gte" => compare(Comparison::Gte),
            "lt" => compare(Comparison::Lt),
            "lte" => compare(Comparison::Lte),
            "in" | "nin" => {
                let Value::Array(items) = value else {
                    return Err(bad(path, format!("'{operator}' takes a list of values")));
                };
                let values = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.scalar(field, v, &at(path, &i.to_string())))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Condition::In {
                    column,
                    values,
                    negated: operator == "nin",
                })
            }
            "contains" | "starts_with" | "ends_with" => {
                if field.kind != ColumnKind::Text {
                    return Err(bad(
                        path,
                        format!("'{operator}' applies to text fields, not '{}'", field.name),
                    ));
                }
                let Value::String(pattern) = value else {
                    return Err(bad(path, format!("'{operator}' takes a string")));
                };
                Ok(Condition::Text {
                    column,
                    how: match operator {
                        "contains" => TextMatch::Contains,
                        "starts_with" => TextMatch::StartsWith,
                        _ => TextMatch::EndsWith,
                    },
                    pattern: pattern.clone(),
                    case_sensitive,
                })
            }
            "exists" | "is_null" => {
                let Value::Bool(flag) = value else {
                    return Err(bad(path, format!("'{operator}' takes true or false")));
                };
                Ok(Condition::IsNull {
                    column,
                    null: (operator == "is_null") == *flag,
                })
            }
            other => Err(bad(
                path,
                format!(
                    "operator '{other}' is not supported; operators: {}",
                    OPERATORS.join(", ")
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: [Field; 3] = [
        Field::new("status", "status", ColumnKind::Text).one_of(&["COMPLETED", "FAILED"]),
        Field::new("file_size_bytes", "file_size_bytes", ColumnKind::Int),
        Field::new("is_duplicate", "is_duplicate", ColumnKind::Bool),
    ];

    fn ok(v: Value) -> Condition {
        parse(Some(&v), &FIELDS).unwrap_or_else(|e| panic!("{v}: {e:?}"))
    }

    fn err(v: Value) -> String {
        match parse(Some(&v), &FIELDS) {
            Err(ApiError::Validation(issues)) => issues[0].message.clone(),
            other => panic!("{v}: {other:?}"),
        }
    }

    #[test]
    fn sdk_syntax_and_shorthand() {
        let eq = Condition::Compare {
            column: "status",
            op: Comparison::Eq,
            value: Scalar::Text("COMPLETED".into()),
            case_sensitive: true,
        };
        assert_eq!(
            ok(
                json!({"AND": [{"field": "status", "operator": "eq", "value": "COMPLETED"}], "case_sensitive": false})
            ),
            Condition::All(vec![Condition::All(vec![eq.clone()])])
        );
        assert_eq!(ok(json!({"status": "COMPLETED"})), Condition::All(vec![eq]));
        assert!(matches!(
            ok(json!({"status": ["COMPLETED", "FAILED"]})),
            Condition::All(ref v) if matches!(v[0], Condition::In { negated: false, .. })
        ));
        ok(
            json!({"OR": [{"AND": [{"field": "file_size_bytes", "operator": "gte", "value": 5}]},
                          {"field": "is_duplicate", "value": true}]}),
        );
        ok(json!({"NOT": [{"field": "status", "operator": "in", "value": ["FAILED"]}]}));
        ok(json!({"AND": [{"field": "status", "value": "FAILED", "case_sensitive": false}]}));
        ok(json!({"file_size_bytes": {"$gt": 1, "lte": 10}}));
        assert_eq!(ok(json!({})), Condition::All(vec![]));
        assert_eq!(parse(None, &FIELDS).unwrap(), Condition::All(vec![]));
    }

    #[test]
    fn mistakes_are_named() {
        assert!(err(json!({"colour": "red"})).contains("fields: status"));
        assert!(err(json!({"status": "DONE"})).contains("one of"));
        assert!(err(json!({"file_size_bytes": "big"})).contains("integer"));
        assert!(
            err(json!({"AND": [{"field": "status", "operator": "near", "value": "x"}]}))
                .contains("not supported")
        );
        assert!(err(
            json!({"AND": [{"field": "status", "value": {"type": "dynamic", "field": "x"}}]})
        )
        .contains("dynamic"));
        assert!(err(json!({"is_duplicate": {"gt": true}})).contains("no order"));
        assert!(err(json!({"AND": {"field": "status"}})).contains("list"));
        assert!(
            err(json!({"AND": [{"field": "status", "value": "COMPLETED", "x": 1}]}))
                .contains("not 'x'")
        );
    }
}
