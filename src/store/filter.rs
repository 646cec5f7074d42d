//! A list's filter as a tree of conditions on known columns, written into SQL with every
//! value bound, never spliced.

use sqlx::{Postgres, QueryBuilder};

/// What a column holds, so that values bind with the right type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Bool,
    Int,
}

/// A value a condition compares with, already checked against its column's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Bool(bool),
    Int(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    fn sql(self) -> &'static str {
        match self {
            Comparison::Eq => "=",
            Comparison::Ne => "IS DISTINCT FROM",
            Comparison::Gt => ">",
            Comparison::Gte => ">=",
            Comparison::Lt => "<",
            Comparison::Lte => "<=",
        }
    }
}

/// Where in a text the pattern must be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMatch {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Every one holds (an empty list holds).
    All(Vec<Condition>),
    /// At least one holds (an empty list holds, as no restriction).
    Any(Vec<Condition>),
    /// None holds.
    Not(Vec<Condition>),
    Compare {
        column: &'static str,
        op: Comparison,
        value: Scalar,
        case_sensitive: bool,
    },
    /// In (or, negated, not in) a list of values.
    In {
        column: &'static str,
        values: Vec<Scalar>,
        negated: bool,
    },
    Text {
        column: &'static str,
        how: TextMatch,
        pattern: String,
        case_sensitive: bool,
    },
    IsNull {
        column: &'static str,
        null: bool,
    },
}

/// `%`, `_` and `\` match themselves.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn push_scalar(qb: &mut QueryBuilder<Postgres>, value: &Scalar) {
    match value {
        Scalar::Text(s) => qb.push_bind(s.clone()),
        Scalar::Bool(b) => qb.push_bind(*b),
        Scalar::Int(i) => qb.push_bind(*i),
    };
}

impl Condition {
    /// Appends the condition as one parenthesized SQL boolean expression.
    pub fn push_sql(&self, qb: &mut QueryBuilder<Postgres>) {
        match self {
            Condition::All(items) | Condition::Any(items) if items.is_empty() => {
                qb.push("TRUE");
            }
            Condition::All(items) | Condition::Any(items) => {
                let joiner = if matches!(self, Condition::All(_)) {
                    " AND "
                } else {
                    " OR "
                };
                qb.push("(");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        qb.push(joiner);
                    }
                    item.push_sql(qb);
                }
                qb.push(")");
            }
            // NOT of no condition restricts nothing.
            Condition::Not(items) if items.is_empty() => {
                qb.push("TRUE");
            }
            Condition::Not(items) => {
                qb.push("NOT ");
                Condition::Any(items.clone()).push_sql(qb);
            }
            Condition::Compare {
                column,
                op,
                value,
                case_sensitive,
            } => {
                let text_fold = matches!(value, Scalar::Text(_)) && !case_sensitive;
                qb.push("(");
                if text_fold {
                    qb.push(format!("lower({column}) {} lower(", op.sql()));
                    push_scalar(qb, value);
                    qb.push(")");
                } else {
                    qb.push(format!("{column} {} ", op.sql()));
                    push_scalar(qb, value);
                }
                qb.push(")");
            }
            Condition::In {
                column,
                values,
                negated,
            } => {
                qb.push(format!(
                    "({}{column} IN (",
                    if *negated { "NOT " } else { "" }
                ));
                if values.is_empty() {
                    qb.push("NULL");
                }
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        qb.push(", ");
                    }
                    push_scalar(qb, v);
                }
                qb.push(")");
                if *negated {
                    qb.push(format!(" OR {column} IS NULL"));
                }
                qb.push(")");
            }
            Condition::Text {
                column,
                how,
                pattern,
                case_sensitive,
            } => {
                let escaped = escape_like(pattern);
                let like = match how {
                    TextMatch::Contains => format!("%{escaped}%"),
                    TextMatch::StartsWith => format!("{escaped}%"),
                    TextMatch::EndsWith => format!("%{escaped}"),
                };
                let operator = if *case_sensitive { "LIKE" } else { "ILIKE" };
                qb.push(format!("({column} {operator} "));
                qb.push_bind(like);
                qb.push(")");
            }
            Condition::IsNull { column, null } => {
                qb.push(format!(
                    "({column} IS {}NULL)",
                    if *null { "" } else { "NOT " }
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(c: &Condition) -> String {
        let mut qb = QueryBuilder::<Postgres>::new("");
        c.push_sql(&mut qb);
        qb.sql().as_str().to_owned()
    }

    #[test]
    fn trees_become_bound_sql() {
        let c = Condition::All(vec![
            Condition::Compare {
                column: "status",
                op: Comparison::Eq,
                value: Scalar::Text("COMPLETED".into()),
                case_sensitive: true,
            },
            Condition::Any(vec![
                Condition::Text {
                    column: "filename",
                    how: TextMatch::StartsWith,
                    pattern: "a%".into(),
                    case_sensitive: false,
                },
                Condition::In {
                    column: "file_size_bytes",
                    values: vec![Scalar::Int(1), Scalar::Int(2)],
                    negated: true,
                },
            ]),
            Condition::Not(vec![Condition::IsNull {
                column: "file_hash",
                null: true,
            }]),
        ]);
        assert_eq!(
            sql(&c),
            "((status = $1) AND ((filename ILIKE $2) OR (NOT file_size_bytes IN ($3, $4) OR file_size_bytes IS NULL)) AND NOT ((file_hash IS NULL)))"
        );
        assert_eq!(sql(&Condition::All(vec![])), "TRUE");
        assert_eq!(sql(&Condition::Not(vec![])), "TRUE");
        assert_eq!(escape_like("a%_\\"), "a\\%\\_\\\\");
    }
}
