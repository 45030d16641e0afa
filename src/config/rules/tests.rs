//! Compilation: what the config accepts, and the problems it reports for what it does not.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use super::*;
use crate::pattern::MAX_PATTERN_LEN;

/// Compiles `[[rules]]` TOML, returning the rules or the problems as `path: message` lines.
fn compile_toml(text: &str) -> Result<RuleSet, Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Only {
        rules: Vec<RuleSpec>,
    }
    let only: Only = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
    let mut problems = Problems::default();
    let set = compile(&only.rules, &mut problems, &|_| Some(7));
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems
            .list
            .iter()
            .map(|p| {
                format!(
                    "{} {}: {}",
                    p.rule.as_deref().unwrap_or("-"),
                    p.path,
                    p.message
                )
            })
            .collect())
    }
}

fn rule(body: &str) -> String {
    format!("[[rules]]\nname = \"r\"\n{body}\n")
}

#[test]
fn valid_rules_compile() {
    let cases = [
        "then.status = 404",
        "when.status = [200, \"2xx\"]\nthen.status = 404",
        "when.method = [\"get\", \"DELETE\"]\nthen.body = \"empty\"",
        "when.method = \"GET\"\nthen.body = \"empty\"",
        "when.path = \"^/users/\"\nwhen.content_type = \"json\"\nthen.status = 404",
        "when.header = [{ name = \"X-Legacy\", matches = \"yes\" }, { name = \"x-a\" }]\nthen.status = 404",
        "when.json = [{ pointer = \"/a~1b/~0c\", equals = { x = [1] } }]\nthen.status = 404",
        "when.json = [{ pointer = \"\", exists = true }]\nthen.status = 404",
        "when.json = [{ pointer = \"/n\", gte = 1 }, { pointer = \"/n\", lt = 2.5 }]\nthen.status = 404",
        "when.json = [{ pointer = \"/s\", one_of = [\"a\", 1] }]\nthen.status = 404",
        "when.body = '^\\s*\\{\\s*\\}\\s*$'\nthen.status = 204\nthen.body = \"empty\"",
        "then.status_from = \"/http_status\"\nthen.status = 502",
        "then.retry_after = \"0s\"",
        "then.retry_after_from = \"/retry_in\"",
        "then.body = \"problem\"\nthen.detail_from = \"/message\"",
        "then.headers = [{ name = \"x-foo\", value = \"bar\" }]",
        "mode = \"shadow\"\nthen.status = 500",
        "when.request_header = [{ name = \"authorization\", absent = true }, { name = \"cookie\" }, { name = \"x-a\", matches = \"b\", absent = false }]\nwhen.query = \"a=1\"\nthen.status = 401",
        "when.header = [{ name = \"allow\", absent = true }]\nthen.headers = [{ name = \"allow\", value = \"GET, HEAD\" }]",
        "then.status = 201\nthen.headers = [{ name = \"location\", value = \"/accounts/{/id}?{query}#{{x}}\" }]",
        "then.body = \"problem\"\nthen.problem.type = \"https://errors.example.com/validation\"\nthen.problem.title = \"Your request is not valid\"\nthen.problem.members = { errors = \"/errors\", currentVersion = \"/current_version\" }",
        "then.body = \"problem\"\nthen.problem.type = \"/errors/validation\"",
    ];
    for body in cases {
        let set = compile_toml(&rule(body)).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(set.len(), 1, "{body}");
    }
}

#[test]
fn invalid_rules_name_the_field_and_problem() {
    let cases = [
        (
            "when.path = \"([a-z\"",
            "rules[0].when.path: invalid regex: unclosed character class",
        ),
        (
            "when.body = \"(\"",
            "rules[0].when.body: invalid regex: unclosed group",
        ),
        ("when.path = \"a{1000}{1000}\"", "too big once compiled"),
        (
            "when.status = [700]",
            "rules[0].when.status[0]: invalid status",
        ),
        (
            "when.status = [\"6xx\"]",
            "rules[0].when.status[0]: invalid status",
        ),
        (
            "when.method = [\"G T\"]",
            "rules[0].when.method[0]: invalid HTTP method",
        ),
        ("when.method = [\"\"]", "invalid HTTP method"),
        (
            "when.header = [{ name = \"x y\" }]",
            "rules[0].when.header[0].name: invalid header name",
        ),
        (
            "when.json = [{ pointer = \"status\", exists = true }]",
            "rules[0].when.json[0].pointer: invalid JSON pointer",
        ),
        (
            "when.json = [{ pointer = \"/a~2\", exists = true }]",
            "\"~\" must be followed by 0 or 1",
        ),
        (
            "when.json = [{ pointer = \"/a~\", exists = true }]",
            "\"~\" must be followed by 0 or 1",
        ),
        (
            "when.json = [{ pointer = \"/a\" }]",
            "rules[0].when.json[0]: no test for the pointer",
        ),
        (
            "when.json = [{ pointer = \"/a\", exists = true, equals = 1 }]",
            "rules[0].when.json[0]: 2 tests (equals, exists)",
        ),
        (
            "when.json = [{ pointer = \"/a\", one_of = [] }]",
            "rules[0].when.json[0].one_of: must list at least one",
        ),
        (
            "when.json = [{ pointer = \"/a\", gt = inf }]",
            "rules[0].when.json[0].gt: must be a finite number",
        ),
        (
            "when.json = [{ pointer = \"/a\", matches = \"(\" }]",
            "rules[0].when.json[0].matches: invalid regex",
        ),
        ("then.status = 99", "rules[0].then.status: invalid status"),
        (
            "then.status = 101",
            "rules[0].then.status: invalid status (expected 200..=599)",
        ),
        ("then.status = 600", "invalid status"),
        (
            "then.retry_after = \"soon\"",
            "rules[0].then.retry_after: invalid duration",
        ),
        (
            "then.retry_after = \"1s\"\nthen.retry_after_from = \"/r\"",
            "rules[0].then.retry_after_from: conflicts",
        ),
        (
            "then.status = 404\nthen.detail_from = \"/m\"",
            "rules[0].then.detail_from: only used with then.body = \"problem\"",
        ),
        (
            "then.headers = [{ name = \"bad name\", value = \"v\" }]",
            "rules[0].then.headers[0].name: invalid header name",
        ),
        (
            "then.headers = [{ name = \"x-a\", value = \"a\\nb\" }]",
            "rules[0].then.headers[0].value: invalid header value",
        ),
        (
            "then.headers = [{ name = \"Content-Length\", value = \"1\" }]",
            "cannot be set by a rule",
        ),
        (
            "then.headers = [{ name = \"location\", value = \"/a/{nope}\" }]",
            "rules[0].then.headers[0].value: unknown placeholder '{nope}'",
        ),
        (
            "then.headers = [{ name = \"location\", value = \"/a/{/id\" }]",
            "rules[0].then.headers[0].value: unbalanced '{' at byte 3",
        ),
        (
            "then.headers = [{ name = \"location\", value = \"/a/}\" }]",
            "rules[0].then.headers[0].value: unbalanced '}' at byte 3",
        ),
        (
            "then.headers = [{ name = \"location\", value = \"{}\" }]",
            "rules[0].then.headers[0].value: empty placeholder",
        ),
        (
            "then.headers = [{ name = \"location\", value = \"{/a~2}\" }]",
            "rules[0].then.headers[0].value: placeholder '{/a~2}'",
        ),
        (
            "then.headers = [{ name = \"x-a\", value = \"\\n{/id}\" }]",
            "rules[0].then.headers[0].value: invalid header value",
        ),
        (
            "then.body = \"problem\"\nthen.problem.members = { status = \"/s\" }",
            "rules[0].then.problem.members.status: reserved member name",
        ),
        (
            "then.body = \"problem\"\nthen.problem.members = { request_id = \"/s\" }",
            "reserved member name",
        ),
        (
            "then.body = \"problem\"\nthen.problem.members = { 1abc = \"/s\" }",
            "rules[0].then.problem.members.1abc: invalid member name",
        ),
        (
            "then.body = \"problem\"\nthen.problem.members = { \"a-b\" = \"/s\" }",
            "invalid member name",
        ),
        (
            "then.body = \"problem\"\nthen.problem.members = { errors = \"errors\" }",
            "rules[0].then.problem.members.errors: invalid JSON pointer",
        ),
        (
            "then.status = 404\nthen.problem.title = \"x\"",
            "rules[0].then.problem: only used with then.body = \"problem\"",
        ),
        (
            "then.body = \"problem\"\nthen.problem.type = \"not a uri\"",
            "rules[0].then.problem.type: not a URI reference",
        ),
        (
            "then.body = \"problem\"\nthen.problem.title = \"a\\nb\"",
            "rules[0].then.problem.title: invalid title",
        ),
        (
            "when.header = [{ name = \"allow\", absent = true, matches = \"GET\" }]\nthen.status = 500",
            "rules[0].when.header[0].absent: conflicts with matches",
        ),
        (
            "when.request_header = [{ name = \"authorization\", absent = true, matches = \"x\" }]\nthen.status = 500",
            "rules[0].when.request_header[0].absent: conflicts with matches",
        ),
        (
            "when.request_header = [{ name = \"a b\" }]\nthen.status = 500",
            "rules[0].when.request_header[0].name: invalid header name",
        ),
        (
            "when.query = \"(\"\nthen.status = 500",
            "rules[0].when.query: invalid regex",
        ),
        ("when.status = [200]", "rules[0].then: rule does nothing"),
        ("then.body = \"keep\"", "rules[0].then: rule does nothing"),
        ("then.headers = []", "rule does nothing"),
    ];
    for (body, want) in cases {
        let errors = compile_toml(&rule(body))
            .err()
            .unwrap_or_else(|| panic!("{body}: accepted"));
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{body}: {errors:?}"
        );
        assert!(
            errors.iter().all(|e| e.starts_with("rule \"r\"")),
            "{body}: {errors:?}"
        );
    }
}

#[test]
fn overlong_patterns_are_refused_before_compiling() {
    let long = "a".repeat(MAX_PATTERN_LEN + 1);
    for field in ["when.path", "when.body"] {
        let errors = compile_toml(&rule(&format!("{field} = \"{long}\"\nthen.status = 404")))
            .err()
            .unwrap_or_default();
        assert!(
            errors.iter().any(|e| e.contains("regex too long")),
            "{errors:?}"
        );
    }
    let ok = "a".repeat(MAX_PATTERN_LEN);
    assert!(compile_toml(&rule(&format!("when.path = \"{ok}\"\nthen.status = 404"))).is_ok());
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = rule("when.path = \"(\"\nwhen.body = \"(\"\nwhen.status = [1]\nthen.status = 1");
    let errors = compile_toml(&text).err().unwrap_or_default();
    assert_eq!(errors.len(), 4, "{errors:?}");
}

#[test]
fn names_are_required_unique_and_label_safe() {
    let cases = [
        ("[[rules]]\nthen.status = 404", "rules[0] rules[0].name: missing"),
        ("[[rules]]\nname = \"\"\nthen.status = 404", "rules[0] \"\" rules[0].name: invalid rule name"),
        ("[[rules]]\nname = \"has space\"\nthen.status = 404", "rule \"has space\" rules[0].name: invalid rule name"),
        ("[[rules]]\nname = \"-lead\"\nthen.status = 404", "invalid rule name"),
        (&format!("[[rules]]\nname = \"{}\"\nthen.status = 404", "a".repeat(65)), "invalid rule name"),
        (
            "[[rules]]\nname = \"dup\"\nthen.status = 404\n[[rules]]\nname = \"dup\"\nthen.status = 404",
            "rules[1] \"dup\" rules[1].name: duplicate rule name (first defined at line 7)",
        ),
    ];
    for (text, want) in cases {
        let errors = compile_toml(text)
            .err()
            .unwrap_or_else(|| panic!("{text}: accepted"));
        assert!(
            errors.iter().any(|e| e == want || e.contains(want)),
            "{text}: {errors:?}"
        );
    }
    assert!(compile_toml(&format!(
        "[[rules]]\nname = \"{}\"\nthen.status = 404",
        "a".repeat(64)
    ))
    .is_ok());
    assert!(compile_toml("[[rules]]\nname = \"A.b_c-9\"\nthen.status = 404").is_ok());
}

#[test]
fn compiled_rules_keep_what_evaluation_needs() {
    let text = rule(
        "mode = \"shadow\"\nwhen.status = [200, \"4xx\"]\nwhen.method = [\"get\"]\nwhen.json = [{ pointer = \"/code\", equals = 1042 }]\nthen.status_from = \"/s\"\nthen.status = 502\nthen.retry_after = \"1500ms\"\nthen.headers = [{ name = \"X-Foo\", value = \"bar\" }]",
    );
    let set = compile_toml(&text).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(set.shadow_count(), 1);
    let r = set.get("r").unwrap_or_else(|| panic!("rule r"));
    assert_eq!(r.mode, Mode::Shadow);
    assert!(r.when.status.iter().any(|s| s.matches(StatusCode::OK)));
    assert!(r
        .when
        .status
        .iter()
        .any(|s| s.matches(StatusCode::CONFLICT)));
    assert!(!r.when.status.iter().any(|s| s.matches(StatusCode::CREATED)));
    assert_eq!(r.when.method, vec![Method::GET]);
    assert!(r.when.needs_body());
    assert!(matches!(&r.when.json[0].op, JsonOp::Equals(v) if *v == json!(1042)));
    assert_eq!(r.then.status, Some(StatusCode::BAD_GATEWAY));
    assert_eq!(
        r.then.status_from.as_ref().map(JsonPointer::as_str),
        Some("/s")
    );
    assert!(
        matches!(r.then.retry_after, Some(RetryAfterSource::Fixed(d)) if d == Duration::from_millis(1500))
    );
    assert_eq!(r.then.headers[0].name.as_str(), "x-foo");
    assert_eq!(r.then.body, BodyAction::Keep);
}
