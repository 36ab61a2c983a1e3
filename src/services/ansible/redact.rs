//! Hiding secret values (passwords, tokens, ...) before anything reaches a log.

use serde_json::Value;

/// What replaces a secret value.
pub const REDACTED: &str = "[redacted]";

const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "private_key",
    "api_key",
    "apikey",
    "credential",
];

/// True when a variable or environment name looks like it holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// A copy of `value` with every value under a secret-looking key replaced by
/// [`REDACTED`], at any depth.
pub fn redact_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String(REDACTED.into())
                    } else {
                        redact_value(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_value).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_nested_secret_keys_only() {
        let v = json!({"db_password": "x", "user": "bob",
                       "nested": [{"API_TOKEN": "t", "n": 1}], "Secret": {"a": 1}});
        assert_eq!(
            redact_value(&v),
            json!({"db_password": REDACTED, "user": "bob",
                   "nested": [{"API_TOKEN": REDACTED, "n": 1}], "Secret": REDACTED})
        );
    }
}
