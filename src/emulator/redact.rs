//! What the emulator shows of the account outside the API: the state dump
//! (`GET /__emulator/state`), the `--state` file and the contract log never carry a
//! Worker secret's value (`secret_text.text`, `secret_key.key_base64`/`key_jwk`) or a
//! container environment variable's value. Each is replaced by [`REDACTED`]; names
//! and everything else stay. (Registry passwords, minted or external, are never part
//! of the account, so never of a dump.) The API itself answers as Cloudflare does.

use serde_json::Value;

/// What a redacted value reads as.
pub const REDACTED: &str = "[redacted by the emulator]";

/// The fields holding a secret in a binding of this `type`.
fn secret_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "secret_text" => &["text"],
        "secret_key" => &["key_base64", "key_jwk"],
        _ => &[],
    }
}

/// Visits every secret value of `v` (bindings and `environment_variables`), wherever
/// it sits: applications, rollouts' configurations, scripts' bindings.
fn visit(v: &mut Value, f: &mut impl FnMut(&mut Value)) {
    match v {
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str).unwrap_or("");
            for field in secret_fields(kind) {
                if let Some(x) = map.get_mut(*field) {
                    f(x);
                }
            }
            if let Some(Value::Array(vars)) = map.get_mut("environment_variables") {
                for var in vars {
                    if let Some(x) = var.get_mut("value") {
                        f(x);
                    }
                }
            }
            for child in map.values_mut() {
                visit(child, f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| visit(x, f)),
        _ => {}
    }
}

/// `v` with every secret value replaced by [`REDACTED`].
pub fn redact(mut v: Value) -> Value {
    visit(&mut v, &mut |x| *x = Value::String(REDACTED.into()));
    v
}

/// The secret values `v` holds, as text (to scrub from messages that may quote them).
pub fn secret_values(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut copy = v.clone();
    visit(&mut copy, &mut |x| match x {
        Value::String(s) if !s.is_empty() => out.push(s.clone()),
        Value::String(_) | Value::Null => {}
        other => out.push(other.to_string()),
    });
    // Longest first, so that a value containing another is replaced whole.
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// `text` with every occurrence of `secrets` replaced by [`REDACTED`].
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), REDACTED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_env_values_go_names_stay() {
        let v = json!({
            "scripts": {"shop": {"bindings": [
                {"type": "secret_text", "name": "API_KEY", "text": "s3cr3t"},
                {"type": "plain_text", "name": "MODE", "text": "test"},
                {"type": "secret_key", "name": "K", "key_base64": "QUJD", "format": "raw"},
            ]}},
            "applications": {"a": {"configuration": {"environment_variables": [
                {"name": "DB_PASSWORD", "value": "hunter2"}
            ]}}},
            "rollouts": {"r": {"rollout": {"target_configuration": {"environment_variables": [
                {"name": "DB_PASSWORD", "value": "hunter3"}
            ]}}}},
        });
        assert_eq!(secret_values(&v), ["hunter2", "hunter3", "s3cr3t", "QUJD"]);
        let r = redact(v).to_string();
        for value in ["s3cr3t", "hunter2", "hunter3", "QUJD"] {
            assert!(!r.contains(value), "{value} in {r}");
        }
        for kept in ["API_KEY", "DB_PASSWORD", "\"test\"", "\"raw\""] {
            assert!(r.contains(kept), "{kept} missing from {r}");
        }
    }

    #[test]
    fn scrub_replaces_quoted_values() {
        let secrets = vec!["hunter2".to_string()];
        assert_eq!(
            scrub("\"hunter2\" is not of type integer", &secrets),
            format!("\"{REDACTED}\" is not of type integer")
        );
    }
}
