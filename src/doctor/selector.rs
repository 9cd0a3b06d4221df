//! Label selectors, as the API server applies a webhook's `namespaceSelector` and
//! `objectSelector`. Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects an object with `labels`; `None` (no selector) selects everything.
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_label && by_expression
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn selector(value: serde_json::Value) -> LabelSelector {
        serde_json::from_value(value).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_and_expressions_must_all_hold() {
        assert!(selects(None, &labels(&[])));
        let s = selector(json!({
            "matchLabels": {"team": "a"},
            "matchExpressions": [
                {"key": "irsa", "operator": "NotIn", "values": ["disabled"]},
                {"key": "tier", "operator": "Exists"},
            ],
        }));
        assert!(selects(Some(&s), &labels(&[("team", "a"), ("tier", "x")])));
        assert!(!selects(Some(&s), &labels(&[("team", "b"), ("tier", "x")])));
        assert!(!selects(Some(&s), &labels(&[("team", "a")])));
        assert!(!selects(
            Some(&s),
            &labels(&[("team", "a"), ("tier", "x"), ("irsa", "disabled")])
        ));
        let absent = selector(json!({"matchExpressions": [
            {"key": "skip", "operator": "DoesNotExist"},
            {"key": "env", "operator": "In", "values": ["prod"]},
        ]}));
        assert!(selects(Some(&absent), &labels(&[("env", "prod")])));
        assert!(!selects(Some(&absent), &labels(&[("env", "dev")])));
    }
}
