//! `${VAR}` expansion.
//!
//! Runs on the parsed TOML tree, before any validation, so every problem can name the key it
//! came from. Rules:
//!
//! - Only string *values* are expanded (also inside arrays and tables); keys, numbers and
//!   booleans are not, so `max_in_flight` cannot come from the environment.
//! - `${NAME}` is replaced by the variable's value; `NAME` is `[A-Za-z_][A-Za-z0-9_]*`.
//!   A variable that is set but empty expands to the empty string.
//! - An unset variable, an unterminated `${` or an invalid name is an error naming the key and
//!   the variable (never its value).
//! - `$${` is an escape for a literal `${`. A `$` not followed by `{` is kept as is.
//! - Expansion is one pass: a value that itself contains `${...}` is not expanded again.

use toml::{Table, Value};

use crate::error::Report;

/// Looks up an environment variable.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands `${VAR}` in every string value of `table`, recording one error per problem.
pub(crate) fn expand_table(table: &mut Table, env: Env<'_>, report: &mut Report<'_>) {
    for (key, value) in table.iter_mut() {
        expand_value(value, &join_key("", key), env, report);
    }
}

fn expand_value(value: &mut Value, path: &str, env: Env<'_>, report: &mut Report<'_>) {
    match value {
        Value::String(s) => {
            if s.contains('$') {
                match expand_str(s, env) {
                    Ok(expanded) => *s = expanded,
                    Err(problems) => {
                        for problem in problems {
                            report.error(path, problem);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), env, report);
            }
        }
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                expand_value(item, &join_key(path, key), env, report);
            }
        }
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Datetime(_) => {}
    }
}

/// Expands one string. On failure returns every problem found in it.
pub(crate) fn expand_str(input: &str, env: Env<'_>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(input.len());
    let mut problems = Vec::new();
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(close) = tail.find('}') else {
                problems.push("unterminated `${` (write `$${` for a literal `${`)".to_owned());
                rest = "";
                break;
            };
            let name = &tail[..close];
            rest = &tail[close + 1..];
            if !is_var_name(name) {
                problems.push(format!(
                    "`${{{}}}` is not a valid variable reference: names are letters, digits \
                     and '_', not starting with a digit (write `$${{` for a literal `${{`)",
                    shorten(name)
                ));
            } else if let Some(value) = env(name) {
                out.push_str(&value);
            } else {
                problems.push(format!("environment variable `{name}` is not set"));
            }
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn shorten(s: &str) -> String {
    let short: String = s.chars().take(40).collect();
    short.escape_debug().to_string()
}

/// `parent.key`, quoting `key` when it is not a bare TOML key.
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("\"{}\"", key.escape_debug())
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("t0k3n".into()),
            "EMPTY" => Some(String::new()),
            "NESTED" => Some("${TOKEN}".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables() {
        assert_eq!(expand_str("Bearer ${TOKEN}", &env).unwrap(), "Bearer t0k3n");
        assert_eq!(expand_str("${TOKEN}${TOKEN}", &env).unwrap(), "t0k3nt0k3n");
        assert_eq!(expand_str("a${EMPTY}b", &env).unwrap(), "ab");
        assert_eq!(expand_str("no vars", &env).unwrap(), "no vars");
    }

    #[test]
    fn dollar_rules() {
        assert_eq!(expand_str("$${TOKEN}", &env).unwrap(), "${TOKEN}");
        assert_eq!(expand_str("cost $5 $", &env).unwrap(), "cost $5 $");
        assert_eq!(expand_str("$$", &env).unwrap(), "$$");
        // One pass only: a value is not expanded again.
        assert_eq!(expand_str("${NESTED}", &env).unwrap(), "${TOKEN}");
    }

    #[test]
    fn reports_every_problem() {
        let problems = expand_str("${MISSING} ${1BAD} ${TOKEN} ${", &env).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`MISSING` is not set"));
        assert!(problems[1].contains("not a valid variable reference"));
        assert!(problems[2].contains("unterminated"));
        assert!(!problems.concat().contains("t0k3n"));
    }

    #[test]
    fn walks_nested_values_with_key_paths() {
        let mut table: Table = toml::from_str(
            "a = '${TOKEN}'\nlist = ['x', '${NOPE}']\n[t]\n\"X.Y\" = '${ALSO_NOPE}'\nn = 1\n",
        )
        .unwrap();
        let mut report = Report::new(Path::new("f.toml"));
        expand_table(&mut table, &env, &mut report);
        let errors = report.into_errors();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["list[1]", "t.\"X.Y\""]);
        assert_eq!(table["a"].as_str(), Some("t0k3n"));
    }

    #[test]
    fn join_key_quotes_when_needed() {
        assert_eq!(join_key("", "retry"), "retry");
        assert_eq!(join_key("retry", "max_age"), "retry.max_age");
        assert_eq!(join_key("headers", "X-Tenant"), "headers.X-Tenant");
        assert_eq!(join_key("headers", "a b"), "headers.\"a b\"");
    }
}
