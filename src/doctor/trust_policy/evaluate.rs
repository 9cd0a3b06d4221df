//! Evaluates a role's trust policy against a ServiceAccount token locally, the way STS would for
//! `AssumeRoleWithWebIdentity` (moto, the test stand-in for STS, does not evaluate it at all).
//! Pure: covers `Effect`, `Principal.Federated`, `Action` and the string condition operators on
//! the provider's `:sub` and `:aud` keys; anything else is reported, not guessed.

use serde_json::Value;

/// The request STS would evaluate.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `arn:<partition>:iam::<account>:oidc-provider/<host/path>`.
    pub provider_arn: &'a str,
    /// `<host/path>`, the prefix of the condition keys.
    pub provider: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
}

/// What the evaluation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Why each statement did not allow the request (empty when allowed).
    pub why_not: Vec<String>,
    /// Weaknesses of an allowing statement (no `:sub` condition, a wildcard subject).
    pub warnings: Vec<String>,
}

const ACTION: &str = "sts:AssumeRoleWithWebIdentity";

/// Evaluates `policy` (the decoded trust policy document) for `request`.
pub fn evaluate(policy: &Value, request: &Request<'_>) -> Verdict {
    let mut verdict = Verdict::default();
    let statements = match &policy["Statement"] {
        Value::Array(list) => list.iter().collect(),
        single @ Value::Object(_) => vec![single],
        _ => {
            verdict.why_not.push("the policy has no Statement".into());
            return verdict;
        }
    };
    let mut denied = None;
    for (i, statement) in statements.iter().enumerate() {
        let n = i + 1;
        match matches(statement, request) {
            Ok(weak) if statement["Effect"] == "Allow" => {
                verdict.allowed = true;
                verdict
                    .warnings
                    .extend(weak.into_iter().map(|w| format!("statement {n}: {w}")));
            }
            Ok(_) if statement["Effect"] == "Deny" => denied = Some(n),
            Ok(_) => verdict.why_not.push(format!(
                "statement {n}: Effect is {}, not Allow",
                statement["Effect"]
            )),
            Err(why) => verdict.why_not.push(format!("statement {n}: {why}")),
        }
    }
    if let Some(n) = denied {
        verdict.allowed = false;
        verdict.warnings.clear();
        verdict
            .why_not
            .push(format!("statement {n} denies it explicitly"));
    }
    verdict
}

/// `Ok(weaknesses)` when the statement applies to the request, else why not.
fn matches(statement: &Value, request: &Request<'_>) -> Result<Vec<String>, String> {
    if statement.get("NotPrincipal").is_some() || statement.get("NotAction").is_some() {
        return Err("NotPrincipal/NotAction are not evaluated here; check it by hand".into());
    }
    let principal = &statement["Principal"];
    let federated = strings(&principal["Federated"]);
    if principal != "*" && !federated.contains(&request.provider_arn) {
        return Err(format!(
            "Principal.Federated is {}, not {}",
            shown(&federated),
            request.provider_arn
        ));
    }
    let actions = strings(&statement["Action"]);
    if !actions
        .iter()
        .any(|a| glob(&a.to_ascii_lowercase(), &ACTION.to_ascii_lowercase()))
    {
        return Err(format!("Action is {}, not {ACTION}", shown(&actions)));
    }
    let mut weak = Vec::new();
    let mut sub_checked = false;
    let empty = serde_json::Map::new();
    let conditions = statement["Condition"].as_object().unwrap_or(&empty);
    for (operator, keys) in conditions {
        let Some(keys) = keys.as_object() else {
            return Err(format!("Condition {operator} is not an object"));
        };
        for (key, values) in keys {
            let values = strings(values);
            let lower = key.to_ascii_lowercase();
            let prefix = format!("{}:", request.provider.to_ascii_lowercase());
            let (claim_name, actual) = match lower.strip_prefix(&prefix) {
                Some("sub") => ("sub", Some(request.sub)),
                Some("aud") => ("aud", Some(request.aud)),
                _ => (key.as_str(), None),
            };
            if claim_name == "sub" {
                sub_checked = true;
                if values
                    .iter()
                    .any(|v| v.starts_with('*') || v.ends_with(":*"))
                {
                    weak.push(format!(
                        "{key} is wildcarded ({}): more ServiceAccounts than one can assume the role",
                        shown(&values)
                    ));
                }
            }
            test(operator, key, &values, actual)?;
        }
    }
    if !sub_checked {
        weak.push(format!(
            "no condition on {}:sub: every ServiceAccount of the cluster can assume the role",
            request.provider
        ));
    }
    Ok(weak)
}

/// One condition key: `Ok` when it holds for `actual` (`None`: a key the request does not have).
fn test(operator: &str, key: &str, values: &[&str], actual: Option<&str>) -> Result<(), String> {
    let op = operator
        .trim_start_matches("ForAnyValue:")
        .trim_start_matches("ForAllValues:");
    let (op, if_exists) = match op.strip_suffix("IfExists") {
        Some(op) => (op, true),
        None => (op, false),
    };
    let Some(actual) = actual else {
        return if if_exists {
            Ok(())
        } else {
            Err(format!(
                "{operator} on {key}: the token has no such key (a different provider's key, or one not evaluated here)"
            ))
        };
    };
    let equal = |v: &&str| *v == actual;
    let like = |v: &&str| glob(v, actual);
    let holds = match op {
        "StringEquals" => values.iter().any(equal),
        "StringEqualsIgnoreCase" => values.iter().any(|v| v.eq_ignore_ascii_case(actual)),
        "StringLike" => values.iter().any(like),
        "StringNotEquals" => !values.iter().any(equal),
        "StringNotEqualsIgnoreCase" => !values.iter().any(|v| v.eq_ignore_ascii_case(actual)),
        "StringNotLike" => !values.iter().any(like),
        other => return Err(format!("condition operator {other} is not evaluated here")),
    };
    if holds {
        Ok(())
    } else {
        Err(format!(
            "{operator} {key} = {} does not match {actual:?}",
            shown(values)
        ))
    }
}

/// A string or a list of strings.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn shown(values: &[&str]) -> String {
    match values {
        [] => "missing".into(),
        [one] => format!("{one:?}"),
        many => format!("{many:?}"),
    }
}

/// IAM's `StringLike`: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:iam::111122223333:oidc-provider/o.example/c";

    fn request(sub: &str) -> Request<'_> {
        Request {
            provider_arn: ARN,
            provider: "o.example/c",
            sub,
            aud: "sts.amazonaws.com",
        }
    }

    fn policy(condition: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": ARN},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition,
        }]})
    }

    #[test]
    fn an_exact_policy_allows_its_subject_only() {
        let p = policy(json!({"StringEquals": {
            "o.example/c:sub": "system:serviceaccount:a:b",
            "o.example/c:aud": "sts.amazonaws.com",
        }}));
        let yes = evaluate(&p, &request("system:serviceaccount:a:b"));
        assert!(yes.allowed && yes.warnings.is_empty(), "{yes:?}");
        let no = evaluate(&p, &request("system:serviceaccount:a:c"));
        assert!(!no.allowed);
        assert!(
            no.why_not[0].contains("does not match \"system:serviceaccount:a:c\""),
            "{no:?}"
        );
    }

    #[test]
    fn wildcards_missing_subjects_and_other_providers_are_reported() {
        let wild = policy(json!({"StringLike": {"o.example/c:sub": "system:serviceaccount:a:*"}}));
        let v = evaluate(&wild, &request("system:serviceaccount:a:b"));
        assert!(v.allowed);
        assert!(v.warnings[0].contains("wildcarded"), "{v:?}");
        let open = policy(json!({"StringEquals": {"o.example/c:aud": "sts.amazonaws.com"}}));
        let v = evaluate(&open, &request("system:serviceaccount:a:b"));
        assert!(v.allowed);
        assert!(
            v.warnings[0].contains("no condition on o.example/c:sub"),
            "{v:?}"
        );
        let old = policy(json!({"StringEquals": {"old.example:sub": "system:serviceaccount:a:b"}}));
        let v = evaluate(&old, &request("system:serviceaccount:a:b"));
        assert!(!v.allowed);
        assert!(v.why_not[0].contains("no such key"), "{v:?}");
        let mut other = policy(json!({}));
        other["Statement"][0]["Principal"]["Federated"] = json!("arn:aws:iam::1:oidc-provider/x");
        let v = evaluate(&other, &request("s"));
        assert!(v.why_not[0].contains("Principal.Federated is"), "{v:?}");
    }

    #[test]
    fn deny_wins_and_actions_match_by_wildcard() {
        let mut p = policy(json!({}));
        p["Statement"][0]["Action"] = json!(["sts:*"]);
        assert!(evaluate(&p, &request("s")).allowed);
        let deny = json!({"Effect": "Deny", "Principal": "*", "Action": "*"});
        p["Statement"].as_array_mut().unwrap().push(deny);
        let v = evaluate(&p, &request("s"));
        assert!(!v.allowed && v.why_not[0].contains("denies"), "{v:?}");
    }

    #[test]
    fn glob_follows_string_like() {
        assert!(glob("a*c", "abbbc") && glob("a?c", "abc") && glob("*", ""));
        assert!(!glob("a?c", "ac") && !glob("a*d", "abc"));
    }
}
