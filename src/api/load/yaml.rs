//! The YAML and JSON parser's budgets: what a record or compose file may hold (depth,
//! aliases, anchors, documents) before it is rejected, and the go-yaml v3 scalars the
//! docker CLI reads.

use serde_json::Value;

/// Deepest nesting of mappings and sequences accepted.
const MAX_DEPTH: usize = 64;

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_events = 1_000_000;
    budget.max_documents = 10_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // An alias bomb expands exponentially: cap the replayed events far below what
    // would take noticeable time, and far above what real anchors (`<<: *defaults`) need.
    options.alias_limits.max_total_replayed_events = 20_000;
    options.alias_limits.max_replay_stack_depth = 16;
    options.alias_limits.max_alias_expansions_per_anchor = 1_000;
    // As go-yaml v3 (the docker CLI's parser): `yes`/`on` stay strings, `0640` is octal.
    options.strict_booleans = true;
    options.legacy_octal_numbers = true;
    // Messages are one line each.
    options.with_snippet = false;
    options
}

/// Parses YAML (or JSON, which is YAML) into one value per non-empty document.
pub(crate) fn parse_documents(text: &str, is_json: bool) -> Result<Vec<Value>, String> {
    if is_json {
        // serde_json stops at 128 levels of nesting with an error, never a stack overflow.
        return match serde_json::from_str::<Value>(text).map_err(|err| err.to_string())? {
            Value::Array(items) => Ok(items),
            single => Ok(vec![single]),
        };
    }
    serde_saphyr::from_str_multiple_with_options::<Value, Vec<Value>>(text, yaml_options())
        .map_err(|err| err.to_string().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use crate::api::load::fixtures::{folder, load_one};

    #[test]
    fn an_alias_bomb_is_rejected_by_the_alias_budget() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for level in b'b'..=b'i' {
            let previous = char::from(level - 1);
            let refs = vec![format!("*{previous}"); 9].join(",");
            bomb.push_str(&format!(
                "{}: &{} [{refs}]\n",
                char::from(level),
                char::from(level)
            ));
        }
        let dir = folder(&[("bomb.yaml", &bomb)]);
        // The budget's error, not a timeout, is what proves the bomb was never expanded
        // (9^9 entries would not fit in memory); how long that takes is hack/bench.sh's.
        let err = load_one(&dir.path().join("bomb.yaml")).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].index, None);
        assert!(
            err.to_string().contains("alias replay limit exceeded"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        let depth = 10_000;
        let flow_seq = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let flow_map = format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth));
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let dir = folder(&[
            ("seq.yaml", &flow_seq),
            ("map.yaml", &flow_map),
            (
                "indent.yaml",
                &format!(
                    "spec:\n{}",
                    (1..200)
                        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
                        .collect::<String>()
                ),
            ),
            ("deep.json", &json),
        ]);
        let err = load_one(dir.path()).unwrap_err();
        let files: Vec<_> = err
            .problems
            .iter()
            .map(|p| p.file.file_name().unwrap().to_str().unwrap())
            .collect();
        for file in ["seq.yaml", "map.yaml", "indent.yaml", "deep.json"] {
            assert!(files.contains(&file), "{file} accepted: {err}");
        }
    }
}
