//! Evaluation, explain and the head-phase questions, with rules compiled from real TOML.

use super::*;
use crate::rules::Outcome;

/// Compiles `[[rules]]` TOML through the real config loader.
fn rules(text: &str) -> RuleSet {
    let text = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{text}");
    crate::config::from_toml(&text, "test", Default::default())
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .rules
}

/// One rule named `r` with `body` as its keys.
fn rule(body: &str) -> RuleSet {
    rules(&format!("[[rules]]\nname = \"r\"\n{body}\n"))
}

/// An owned response to take views of.
struct Response {
    method: Method,
    path: String,
    query: String,
    request_headers: HeaderMap,
    status: StatusCode,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

impl Response {
    /// `GET /` answered with `status`, `application/json` and `body`.
    fn json(status: u16, body: &str) -> Self {
        Response::new(status)
            .header("content-type", b"application/json")
            .body(body.as_bytes())
    }

    /// `GET /` answered with `status`, no headers, body not inspected.
    fn new(status: u16) -> Self {
        Response {
            method: Method::GET,
            path: "/".into(),
            query: String::new(),
            request_headers: HeaderMap::new(),
            status: StatusCode::from_u16(status).unwrap_or_else(|e| panic!("{status}: {e}")),
            headers: HeaderMap::new(),
            body: None,
        }
    }

    fn method(mut self, method: &str) -> Self {
        self.method = Method::from_bytes(method.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        self
    }

    fn path(mut self, path: &str) -> Self {
        self.path = path.into();
        self
    }

    fn query(mut self, query: &str) -> Self {
        self.query = query.into();
        self
    }

    fn request_header(mut self, name: &'static str, value: &[u8]) -> Self {
        let value = HeaderValue::from_bytes(value).unwrap_or_else(|e| panic!("{e}"));
        self.request_headers.append(name, value);
        self
    }

    fn header(mut self, name: &'static str, value: &[u8]) -> Self {
        let value = HeaderValue::from_bytes(value).unwrap_or_else(|e| panic!("{e}"));
        self.headers.append(name, value);
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        self.body = Some(body.to_vec());
        self
    }

    fn view(&self) -> ResponseView<'_> {
        ResponseView {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            request_headers: &self.request_headers,
            request_id: "r-1",
            status: self.status,
            headers: &self.headers,
            body: self.body.as_deref(),
        }
    }
}

/// The decision's rule name and status, if an enforce rule matched.
fn decided(set: &RuleSet, response: &Response) -> Option<(String, Option<u16>)> {
    set.evaluate(&response.view())
        .decision
        .map(|d| (d.rule.name.clone(), d.status.map(|s| s.as_u16())))
}

#[test]
fn every_json_op_holds_or_not_as_documented() {
    let cases: &[(&str, &str, bool)] = &[
        // equals: compared as JSON, numbers by value.
        (
            "{ pointer = \"/code\", equals = 1042 }",
            r#"{"code":1042}"#,
            true,
        ),
        (
            "{ pointer = \"/code\", equals = 1042 }",
            r#"{"code":1042.0}"#,
            true,
        ),
        (
            "{ pointer = \"/code\", equals = 1042.0 }",
            r#"{"code":1042}"#,
            true,
        ),
        (
            "{ pointer = \"/code\", equals = 1042 }",
            r#"{"code":1042.5}"#,
            false,
        ),
        (
            "{ pointer = \"/code\", equals = 1042 }",
            r#"{"code":"1042"}"#,
            false,
        ),
        (
            "{ pointer = \"/code\", equals = 1042 }",
            r#"{"code":1043}"#,
            false,
        ),
        (
            "{ pointer = \"/n\", equals = 9007199254740993 }",
            r#"{"n":9007199254740992.0}"#,
            false,
        ),
        ("{ pointer = \"/n\", equals = -1 }", r#"{"n":-1.0}"#, true),
        ("{ pointer = \"/n\", equals = 1.5 }", r#"{"n":1.5}"#, true),
        ("{ pointer = \"/n\", equals = 1.5 }", r#"{"n":1}"#, false),
        (
            "{ pointer = \"/s\", equals = \"error\" }",
            r#"{"s":"error"}"#,
            true,
        ),
        (
            "{ pointer = \"/s\", equals = \"error\" }",
            r#"{"s":"Error"}"#,
            false,
        ),
        ("{ pointer = \"/b\", equals = true }", r#"{"b":true}"#, true),
        ("{ pointer = \"/b\", equals = true }", r#"{"b":1}"#, false),
        (
            "{ pointer = \"/a\", equals = [1, \"x\"] }",
            r#"{"a":[1.0,"x"]}"#,
            true,
        ),
        (
            "{ pointer = \"/a\", equals = [1, \"x\"] }",
            r#"{"a":["x",1]}"#,
            false,
        ),
        (
            "{ pointer = \"/a\", equals = [1, \"x\"] }",
            r#"{"a":[1,"x",2]}"#,
            false,
        ),
        (
            "{ pointer = \"/t\", equals = { a = 1, b = [true] } }",
            r#"{"t":{"b":[true],"a":1.0}}"#,
            true,
        ),
        (
            "{ pointer = \"/t\", equals = { a = 1, b = [true] } }",
            r#"{"t":{"a":1}}"#,
            false,
        ),
        (
            "{ pointer = \"/t\", equals = { a = 1 } }",
            r#"{"t":{"a":1,"c":null}}"#,
            false,
        ),
        (
            "{ pointer = \"/t\", equals = { a = 1 } }",
            r#"{"t":[1]}"#,
            false,
        ),
        (
            "{ pointer = \"/e/0/code\", equals = 7 }",
            r#"{"e":[{"code":7}]}"#,
            true,
        ),
        // is_null: a missing field is never null.
        (
            "{ pointer = \"/d\", is_null = true }",
            r#"{"d":null}"#,
            true,
        ),
        ("{ pointer = \"/d\", is_null = true }", r#"{"d":0}"#, false),
        ("{ pointer = \"/d\", is_null = true }", r#"{}"#, false),
        ("{ pointer = \"/d\", is_null = false }", r#"{"d":{}}"#, true),
        (
            "{ pointer = \"/d\", is_null = false }",
            r#"{"d":null}"#,
            false,
        ),
        ("{ pointer = \"/d\", is_null = false }", r#"{}"#, false),
        // matches: strings only.
        (
            "{ pointer = \"/m\", matches = '^E\\d+$' }",
            r#"{"m":"E42"}"#,
            true,
        ),
        (
            "{ pointer = \"/m\", matches = '^E\\d+$' }",
            r#"{"m":"X42"}"#,
            false,
        ),
        ("{ pointer = \"/m\", matches = '42' }", r#"{"m":42}"#, false),
        (
            "{ pointer = \"/m\", matches = 'null' }",
            r#"{"m":null}"#,
            false,
        ),
        // one_of: mixed types, each compared as with equals.
        (
            "{ pointer = \"/o\", one_of = [\"a\", 1, true] }",
            r#"{"o":"a"}"#,
            true,
        ),
        (
            "{ pointer = \"/o\", one_of = [\"a\", 1, true] }",
            r#"{"o":1.0}"#,
            true,
        ),
        (
            "{ pointer = \"/o\", one_of = [\"a\", 1, true] }",
            r#"{"o":true}"#,
            true,
        ),
        (
            "{ pointer = \"/o\", one_of = [\"a\", 1, true] }",
            r#"{"o":"1"}"#,
            false,
        ),
        (
            "{ pointer = \"/o\", one_of = [\"a\", 1, true] }",
            r#"{"o":null}"#,
            false,
        ),
        (
            "{ pointer = \"/o\", one_of = [\"a\", 1, true] }",
            r#"{}"#,
            false,
        ),
        // exists.
        ("{ pointer = \"/x\", exists = true }", r#"{"x":null}"#, true),
        ("{ pointer = \"/x\", exists = true }", r#"{"y":1}"#, false),
        ("{ pointer = \"/x\", exists = false }", r#"{"y":1}"#, true),
        (
            "{ pointer = \"/x\", exists = false }",
            r#"{"x":false}"#,
            false,
        ),
        ("{ pointer = \"\", exists = true }", r#"[]"#, true),
        // Comparisons: numbers only.
        ("{ pointer = \"/n\", gt = 10 }", r#"{"n":11}"#, true),
        ("{ pointer = \"/n\", gt = 10 }", r#"{"n":10}"#, false),
        ("{ pointer = \"/n\", gt = 10 }", r#"{"n":"11"}"#, false),
        ("{ pointer = \"/n\", gt = 10 }", r#"{"n":true}"#, false),
        ("{ pointer = \"/n\", gt = 10 }", r#"{"n":null}"#, false),
        ("{ pointer = \"/n\", gt = 10 }", r#"{"n":[11]}"#, false),
        ("{ pointer = \"/n\", gte = 10 }", r#"{"n":10.0}"#, true),
        ("{ pointer = \"/n\", gte = 10 }", r#"{"n":9.99}"#, false),
        ("{ pointer = \"/n\", lt = 9.5 }", r#"{"n":9}"#, true),
        ("{ pointer = \"/n\", lt = 9.5 }", r#"{"n":9.5}"#, false),
        ("{ pointer = \"/n\", lte = 10 }", r#"{"n":10}"#, true),
        ("{ pointer = \"/n\", lte = 10 }", r#"{"n":10.5}"#, false),
        ("{ pointer = \"/n\", lte = -1 }", r#"{"n":-2}"#, true),
        // Duplicate keys: the last one wins, as in serde_json's Value.
        (
            "{ pointer = \"/s\", equals = \"error\" }",
            r#"{"s":"ok","s":"error"}"#,
            true,
        ),
        (
            "{ pointer = \"/s\", equals = \"ok\" }",
            r#"{"s":"ok","s":"error"}"#,
            false,
        ),
        // Not JSON: no JSON condition holds, not even `exists = false`.
        (
            "{ pointer = \"/x\", exists = false }",
            "<html>500</html>",
            false,
        ),
        (
            "{ pointer = \"/x\", exists = false }",
            r#"{"y":1} trailing"#,
            false,
        ),
        (
            "{ pointer = \"/x\", is_null = false }",
            "{\"x\":\"\u{1}\"}",
            false,
        ),
    ];
    for (condition, body, want) in cases {
        let set = rule(&format!("when.json = [{condition}]\nthen.status = 404"));
        let got = decided(&set, &Response::json(200, body)).is_some();
        assert_eq!(got, *want, "{condition} on {body}");
    }
}

#[test]
fn head_conditions_hold_or_not_as_documented() {
    let json = || Response::json(200, "{}");
    let cases: Vec<(&str, Response, bool)> = vec![
        ("when.status = [200, \"4xx\"]", Response::new(200), true),
        ("when.status = [200, \"4xx\"]", Response::new(404), true),
        ("when.status = [200, \"4xx\"]", Response::new(499), true),
        ("when.status = [200, \"4xx\"]", Response::new(500), false),
        ("when.status = [200, \"4xx\"]", Response::new(201), false),
        ("when.status = [\"5xx\"]", Response::new(503), true),
        (
            "when.method = [\"GET\", \"delete\"]",
            Response::new(200),
            true,
        ),
        (
            "when.method = [\"GET\", \"delete\"]",
            Response::new(200).method("DELETE"),
            true,
        ),
        (
            "when.method = [\"GET\", \"delete\"]",
            Response::new(200).method("POST"),
            false,
        ),
        (
            "when.method = \"HEAD\"",
            Response::new(200).method("GET"),
            false,
        ),
        (
            "when.path = '^/users/\\d+$'",
            Response::new(200).path("/users/7"),
            true,
        ),
        (
            "when.path = '^/users/\\d+$'",
            Response::new(200).path("/users/x"),
            false,
        ),
        (
            "when.path = 'users'",
            Response::new(200).path("/api/users"),
            true,
        ),
        (
            "when.content_type = 'json'",
            json().header("content-type", b"x"),
            true,
        ),
        (
            "when.content_type = 'json'",
            Response::new(200).header("content-type", b"application/json; charset=utf-8"),
            true,
        ),
        (
            "when.content_type = '^application/json$'",
            Response::new(200).header("content-type", b"application/json; charset=utf-8"),
            false,
        ),
        (
            "when.content_type = 'json'",
            Response::new(200).header("content-type", b"text/html"),
            false,
        ),
        ("when.content_type = '.*'", Response::new(200), false),
        (
            "when.header = [{ name = \"X-Legacy\" }]",
            Response::new(200).header("x-legacy", b""),
            true,
        ),
        (
            "when.header = [{ name = \"x-legacy\" }]",
            Response::new(200),
            false,
        ),
        (
            "when.header = [{ name = \"x-legacy\" }]",
            Response::new(200).header("x-legacy", b"\xff"),
            true,
        ),
        (
            "when.header = [{ name = \"x-legacy\", matches = '^yes$' }]",
            Response::new(200).header("x-legacy", b"yes"),
            true,
        ),
        (
            "when.header = [{ name = \"x-legacy\", matches = '^yes$' }]",
            Response::new(200).header("x-legacy", b"no"),
            false,
        ),
        (
            "when.header = [{ name = \"x-legacy\", matches = '^yes$' }]",
            Response::new(200)
                .header("x-legacy", b"no")
                .header("x-legacy", b"yes"),
            true,
        ),
        (
            "when.header = [{ name = \"x-legacy\", matches = '.' }]",
            Response::new(200).header("x-legacy", b"\xff"),
            false,
        ),
        (
            "when.header = [{ name = \"x-a\" }, { name = \"x-b\" }]",
            Response::new(200).header("x-a", b"1"),
            false,
        ),
        (
            "when.body = '(?i)not found'",
            Response::new(200).body(b"\xff\xfe Not Found \x80"),
            true,
        ),
        (
            "when.body = '(?-u:\\xFF)'",
            Response::new(200).body(b"ok \xff"),
            true,
        ),
        (
            "when.body = '(?-u:\\xFF)'",
            Response::new(200).body("ÿ".as_bytes()),
            false,
        ),
        ("when.body = '^$'", Response::new(200).body(b""), true),
        ("when.body = 'x'", Response::new(200).body(b"abc"), false),
    ];
    for (condition, response, want) in cases {
        let set = rule(&format!("{condition}\nthen.status = 404"));
        let got = decided(&set, &response).is_some();
        assert_eq!(got, want, "{condition}");
    }
}

#[test]
fn without_a_body_only_rules_that_need_none_match() {
    let cases = [
        (
            "when.json = [{ pointer = \"/x\", exists = false }]\nthen.status = 404",
            false,
        ),
        ("when.body = '.*'\nthen.status = 404", false),
        ("then.status_from = \"/s\"\nthen.status = 502", false),
        ("then.retry_after_from = \"/r\"", false),
        ("then.body = \"problem\"\nthen.detail_from = \"/m\"", false),
        ("when.status = [200]\nthen.status = 404", true),
        ("then.retry_after = \"1s\"", true),
    ];
    for (body, want) in cases {
        let set = rule(body);
        assert_eq!(decided(&set, &Response::new(200)).is_some(), want, "{body}");
        let traces = set.explain(&Response::new(200).view());
        if !want {
            assert_eq!(traces[0].to_string(), "r (enforce): body not inspected");
        }
    }
}

#[test]
fn status_from_uses_a_4xx_or_5xx_from_the_body_else_the_fallback() {
    let cases: &[(&str, Option<u16>, Option<u16>)] = &[
        // (body, with fallback 502, without fallback)
        (r#"{"s":404}"#, Some(404), Some(404)),
        (r#"{"s":"404"}"#, Some(404), Some(404)),
        (r#"{"s":599}"#, Some(599), Some(599)),
        (r#"{"s":400}"#, Some(400), Some(400)),
        (r#"{"s":200}"#, Some(502), None),
        (r#"{"s":399}"#, Some(502), None),
        (r#"{"s":600}"#, Some(502), None),
        (r#"{"s":700}"#, Some(502), None),
        (r#"{"s":"abc"}"#, Some(502), None),
        (r#"{"s":"0404"}"#, Some(502), None),
        (r#"{"s":" 404"}"#, Some(502), None),
        (r#"{"s":404.0}"#, Some(502), None),
        (r#"{"s":-404}"#, Some(502), None),
        (r#"{"s":true}"#, Some(502), None),
        (r#"{"s":null}"#, Some(502), None),
        (r#"{"s":[404]}"#, Some(502), None),
        (r#"{}"#, Some(502), None),
        ("not json", Some(502), None),
    ];
    let with = rule("when.status = [200]\nthen.status_from = \"/s\"\nthen.status = 502");
    let without = rule("when.status = [200]\nthen.status_from = \"/s\"");
    for (body, fallback, bare) in cases {
        let response = Response::json(200, body);
        let got = |set: &RuleSet| {
            let decision = set.evaluate(&response.view()).decision;
            let decision = decision.unwrap_or_else(|| panic!("{body}: no match"));
            (decision.status.map(|s| s.as_u16()), decision.is_effective())
        };
        assert_eq!(got(&with), (*fallback, true), "{body} with fallback");
        assert_eq!(got(&without), (*bare, bare.is_some()), "{body} without");
    }
}

#[test]
fn fixed_retry_after_rounds_up_to_whole_seconds() {
    for (duration, want) in [("0s", 0), ("1500ms", 2), ("2s", 2), ("1ms", 1), ("1m", 60)] {
        let set = rule(&format!("then.retry_after = \"{duration}\""));
        let decision = set.evaluate(&Response::new(503).view()).decision;
        assert_eq!(
            decision.and_then(|d| d.retry_after),
            Some(want),
            "{duration}"
        );
    }
}

#[test]
fn retry_after_from_accepts_only_plain_whole_seconds() {
    let cases: &[(&str, Option<u64>)] = &[
        ("30", Some(30)),
        ("0", Some(0)),
        ("\"30\"", Some(30)),
        ("\"0\"", Some(0)),
        ("9999999999", Some(9_999_999_999)),
        ("\"9999999999\"", Some(9_999_999_999)),
        ("-5", None),
        ("1.5", None),
        ("30.0", None),
        ("3e1", None),
        ("10000000000", None),
        ("18446744073709551615", None),
        ("\"10000000000\"", None),
        ("\"30\\r\\nSet-Cookie: x\"", None),
        ("\"30 \"", None),
        ("\" 30\"", None),
        ("\"+30\"", None),
        ("\"-1\"", None),
        ("\"\"", None),
        ("\"0x1e\"", None),
        ("\"thirty\"", None),
        ("\"3\\u0000\"", None),
        ("true", None),
        ("null", None),
        ("[30]", None),
        ("{\"s\":30}", None),
    ];
    let set = rule("then.retry_after_from = \"/r\"\nthen.status = 503");
    for (value, want) in cases {
        let response = Response::json(200, &format!("{{\"r\":{value}}}"));
        let decision = set.evaluate(&response.view()).decision;
        let decision = decision.unwrap_or_else(|| panic!("{value}: no match"));
        assert_eq!(decision.retry_after, *want, "{value}");
        assert_eq!(decision.status, Some(StatusCode::SERVICE_UNAVAILABLE));
    }
}

#[test]
fn detail_from_is_text_sanitised() {
    let long = format!("{{\"m\":\"{}\"}}", "x".repeat(400));
    let cases: Vec<(&str, Option<&str>)> = vec![
        (
            r#"{"m":"User\r\n 7\tnot\u0000found"}"#,
            Some("User 7 not found"),
        ),
        (r#"{"m":1042}"#, Some("1042")),
        (r#"{"m":-1.5}"#, Some("-1.5")),
        (r#"{"m":true}"#, Some("true")),
        (r#"{"m":"  \n "}"#, None),
        (r#"{"m":null}"#, None),
        (r#"{"m":{"a":1}}"#, None),
        (r#"{"m":["a"]}"#, None),
        (r#"{}"#, None),
        ("oops", None),
    ];
    let set = rule("then.status = 404\nthen.body = \"problem\"\nthen.detail_from = \"/m\"");
    for (body, want) in cases {
        let decision = set.evaluate(&Response::json(200, body).view()).decision;
        let decision = decision.unwrap_or_else(|| panic!("{body}: no match"));
        assert_eq!(decision.detail.as_deref(), want, "{body}");
        assert_eq!(decision.body, BodyAction::Problem);
    }
    let decision = set.evaluate(&Response::json(200, &long).view()).decision;
    let detail = decision.and_then(|d| d.detail).unwrap_or_default();
    assert_eq!(detail.chars().count(), crate::problem::MAX_DETAIL_CHARS + 1);
}

#[test]
fn decisions_carry_headers_and_body_action() {
    let set = rule("then.body = \"empty\"\nthen.headers = [{ name = \"X-A\", value = \"1\" }]");
    let decision = set.evaluate(&Response::new(200).view()).decision;
    let decision = decision.unwrap_or_else(|| panic!("no match"));
    assert_eq!(decision.body, BodyAction::Empty);
    assert_eq!(decision.headers.len(), 1);
    assert_eq!(decision.headers[0].0, "x-a");
    assert_eq!(decision.status, None);
    assert!(decision.is_effective());
    assert!(decision.detail.is_none());
}

const ORDERED: &str = r#"
[[rules]]
name = "s1"
mode = "shadow"
when.json = [{ pointer = "/code", exists = true }]
then.status = 400

[[rules]]
name = "e1"
when.json = [{ pointer = "/code", equals = 1042 }]
then.status = 404

[[rules]]
name = "s2"
mode = "shadow"
when.status = [200]
then.status = 418

[[rules]]
name = "e2"
when.status = [200]
then.status = 500

[[rules]]
name = "e3"
then.status = 502
"#;

#[test]
fn first_enforce_match_wins_and_shadows_before_it_are_recorded() {
    let set = rules(ORDERED);
    let names = |response: &Response| {
        let eval = set.evaluate(&response.view());
        let shadows: Vec<String> = eval.shadows.iter().map(|d| d.rule.name.clone()).collect();
        (eval.decision.map(|d| d.rule.name.clone()), shadows)
    };
    let cases: Vec<(Response, Option<&str>, &[&str])> = vec![
        // s1 and e1 match; e1 wins, nothing after it is evaluated.
        (Response::json(200, r#"{"code":1042}"#), Some("e1"), &["s1"]),
        // s1, s2 match, e1 does not; e2 wins.
        (
            Response::json(200, r#"{"code":7}"#),
            Some("e2"),
            &["s1", "s2"],
        ),
        (Response::json(200, r#"{}"#), Some("e2"), &["s2"]),
        (Response::new(200), Some("e2"), &["s2"]),
        (Response::json(503, r#"{"code":7}"#), Some("e3"), &["s1"]),
    ];
    for (response, winner, shadows) in cases {
        let (got_winner, got_shadows) = names(&response);
        assert_eq!(got_winner.as_deref(), winner);
        assert_eq!(got_shadows, shadows.to_vec());
    }
}

#[test]
fn shadow_only_matches_leave_no_decision_and_empty_shadows_do_not_allocate() {
    let set = rules(
        "[[rules]]\nname = \"s\"\nmode = \"shadow\"\nwhen.status = [500]\nthen.status = 503\n\
         [[rules]]\nname = \"e\"\nwhen.status = [404]\nthen.status = 410\n",
    );
    let eval = set.evaluate(&Response::new(500).view());
    assert!(eval.decision.is_none());
    assert_eq!(eval.shadows.len(), 1);
    assert_eq!(
        eval.shadows[0].status,
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    let eval = set.evaluate(&Response::new(404).view());
    assert_eq!(eval.shadows.capacity(), 0);
    assert!(eval.decision.is_some());
}

#[test]
fn json_is_parsed_only_when_a_rule_reaching_it_needs_it() {
    let set = rules(
        "[[rules]]\nname = \"a\"\nwhen.status = [500]\nwhen.json = [{ pointer = \"/x\", exists = true }]\nthen.status = 502\n\
         [[rules]]\nname = \"b\"\nwhen.status = [200]\nthen.status = 404\n\
         [[rules]]\nname = \"c\"\nwhen.json = [{ pointer = \"/x\", exists = true }]\nthen.status = 410\n",
    );
    let parsed = |response: &Response| {
        let view = response.view();
        let context = Context::new(&set, &view);
        for (rule, plan) in set.planned() {
            if check(rule, plan, &context).is_ok() && rule.mode == Mode::Enforce {
                break;
            }
        }
        context.json.get().is_some()
    };
    // Rule a's status fails before its JSON; b wins before c.
    assert!(!parsed(&Response::json(200, "{\"x\":1}")));
    // a's head holds: the body is parsed (once, for every rule).
    assert!(parsed(&Response::json(500, "{\"x\":1}")));
    // Neither a nor b holds; c needs the JSON.
    assert!(parsed(&Response::json(404, "{\"x\":1}")));
}

#[test]
fn needs_body_walks_head_conditions_until_an_enforce_rule_needs_nothing_more() {
    let json_rule = |name: &str, status: u16| {
        format!("[[rules]]\nname = \"{name}\"\nwhen.status = [{status}]\nwhen.json = [{{ pointer = \"/x\", exists = true }}]\nthen.status = 404\n")
    };
    let head_rule = |name: &str, status: u16, mode: &str| {
        format!("[[rules]]\nname = \"{name}\"\nmode = \"{mode}\"\nwhen.status = [{status}]\nthen.status = 503\n")
    };
    let cases: Vec<(String, Response, bool)> = vec![
        (json_rule("a", 200), Response::new(200), true),
        (json_rule("a", 200), Response::new(500), false),
        (head_rule("a", 500, "enforce") + &json_rule("b", 500), Response::new(500), false),
        (head_rule("a", 500, "shadow") + &json_rule("b", 500), Response::new(500), true),
        (json_rule("a", 500) + &head_rule("b", 500, "enforce"), Response::new(500), true),
        (head_rule("a", 404, "enforce") + &json_rule("b", 500), Response::new(500), true),
        ("[[rules]]\nname = \"a\"\nthen.status_from = \"/s\"\n".into(), Response::new(200), true),
        ("[[rules]]\nname = \"a\"\nthen.retry_after_from = \"/s\"\n".into(), Response::new(200), true),
        ("[[rules]]\nname = \"a\"\nthen.body = \"problem\"\nthen.detail_from = \"/s\"\n".into(), Response::new(200), true),
        ("[[rules]]\nname = \"a\"\nwhen.body = 'x'\nthen.status = 500\n".into(), Response::new(200), true),
        ("[[rules]]\nname = \"a\"\nwhen.path = '^/x'\nwhen.body = 'x'\nthen.status = 500\n".into(), Response::new(200).path("/y"), false),
        ("[[rules]]\nname = \"a\"\nwhen.header = [{ name = \"x-a\" }]\nwhen.body = 'x'\nthen.status = 500\n".into(), Response::new(200), false),
        (String::new(), Response::new(200), false),
    ];
    for (text, response, want) in cases {
        let set = rules(&text);
        assert_eq!(set.needs_body(&response.view()), want, "{text}");
    }
}

#[test]
fn wants_status_is_a_precomputed_table() {
    let set = rules(
        "[[rules]]\nname = \"a\"\nwhen.status = [200, \"4xx\"]\nthen.status = 500\n\
         [[rules]]\nname = \"b\"\nmode = \"shadow\"\nwhen.status = [503]\nthen.status = 500\n",
    );
    for (status, want) in [
        (200, true),
        (404, true),
        (503, true),
        (201, false),
        (500, false),
    ] {
        let code = StatusCode::from_u16(status).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.wants_status(code), want, "{status}");
    }
    let any = rule("then.status = 500");
    assert!(any.wants_status(StatusCode::CONTINUE));
    assert!(any.wants_status(StatusCode::from_u16(999).unwrap_or(StatusCode::OK)));
    assert!(!RuleSet::default().wants_status(StatusCode::OK));
}

#[test]
fn explain_names_the_first_failing_condition_or_the_decision() {
    let set = rules(
        r#"
[[rules]]
name = "by-status"
when.status = [200]
then.status = 404

[[rules]]
name = "by-code"
when.json = [{ pointer = "/status", equals = "error" }, { pointer = "/code", equals = 1042 }]
then.status = 404

[[rules]]
name = "by-missing"
when.json = [{ pointer = "/nope", is_null = true }]
then.status = 404

[[rules]]
name = "by-body"
when.body = 'not found'
then.status = 404

[[rules]]
name = "by-method"
when.method = ["POST", "PUT"]
then.status = 404

[[rules]]
name = "by-path"
when.path = '^/users/'
then.status = 404

[[rules]]
name = "by-type"
when.content_type = 'html'
then.status = 404

[[rules]]
name = "by-header"
when.header = [{ name = "x-legacy", matches = '^yes$' }, { name = "x-b" }]
then.status = 404

[[rules]]
name = "by-op"
when.json = [{ pointer = "/code", gt = 2000 }, { pointer = "/status", one_of = ["x", 1] }]
then.status = 404

[[rules]]
name = "would"
mode = "shadow"
when.status = [500]
then.status = 503
then.retry_after_from = "/retry"
then.body = "problem"
then.detail_from = "/message"

[[rules]]
name = "from"
then.status_from = "/http_status"

[[rules]]
name = "after"
then.status = 500
"#,
    );
    let response = Response::json(
        500,
        r#"{"status":"error","code":7,"message":"no\r\nsuch user","retry":"30\r\nSet-Cookie: x","http_status":"abc"}"#,
    )
    .header("x-legacy", b"no")
    .path("/orders/1")
    .method("GET");
    let lines: Vec<String> = set
        .explain(&response.view())
        .iter()
        .map(ToString::to_string)
        .collect();
    let want = [
        "by-status (enforce): when.status: 500 is not one of [200]",
        "by-code (enforce): when.json[1] /code: 7 does not equal 1042",
        "by-missing (enforce): when.json[0] /nope: no such field",
        "by-body (enforce): when.body: no match",
        "by-method (enforce): when.method: GET is not one of [POST, PUT]",
        "by-path (enforce): when.path: \"/orders/1\" does not match '^/users/'",
        "by-type (enforce): when.content_type: \"application/json\" does not match 'html'",
        "by-header (enforce): when.header[0] x-legacy: \"no\" does not match '^yes$'",
        "by-op (enforce): when.json[0] /code: 7 is not greater than 2000",
        "would (shadow): matched: status 503, body problem, detail \"no such user\"; retry_after_from /retry: \"30\\r\\nSet-Cookie: x\" is not a whole number of seconds (0..=9999999999); no Retry-After",
        "from (enforce): matched: no rewrite; status_from /http_status: \"abc\" is not a 4xx/5xx status; no fallback status",
        "after (enforce): not evaluated (from matched first)",
    ];
    assert_eq!(lines, want);
}

#[test]
fn explain_renders_each_kind_of_json_failure() {
    let cases: &[(&str, &str, &str)] = &[
        ("{ pointer = \"/a\", equals = [1, \"x\"] }", r#"{"a":[2]}"#, "when.json[0] /a: [2] does not equal [1,\"x\"]"),
        ("{ pointer = \"/a\", is_null = true }", r#"{"a":0}"#, "when.json[0] /a: 0 is not null"),
        ("{ pointer = \"/a\", is_null = false }", r#"{"a":null}"#, "when.json[0] /a: is null"),
        ("{ pointer = \"/a\", matches = '^x' }", r#"{"a":"y"}"#, "when.json[0] /a: \"y\" does not match '^x'"),
        ("{ pointer = \"/a\", matches = '^x' }", r#"{"a":1}"#, "when.json[0] /a: 1 is not a string"),
        ("{ pointer = \"/a\", one_of = [\"x\", 1] }", r#"{"a":true}"#, "when.json[0] /a: true is not one of [\"x\", 1]"),
        ("{ pointer = \"/a\", exists = false }", r#"{"a":{"b":1}}"#, "when.json[0] /a: exists ({…}), expected no such field"),
        ("{ pointer = \"/a\", gte = 2.5 }", r#"{"a":2}"#, "when.json[0] /a: 2 is less than 2.5"),
        ("{ pointer = \"/a\", lt = 1 }", r#"{"a":"0"}"#, "when.json[0] /a: \"0\" is not a number"),
        ("{ pointer = \"/a\", lte = 1 }", r#"{"a":3}"#, "when.json[0] /a: 3 is greater than 1"),
        ("{ pointer = \"\", exists = false }", r#"1"#, "when.json[0] \"\": exists (1), expected no such field"),
        ("{ pointer = \"/a\", exists = true }", "<html>", "when.json[0] /a: body is not JSON (expected value at line 1 column 1)"),
        ("{ pointer = \"/a\", equals = \"x\" }", &format!("{{\"a\":\"{}\"}}", "y".repeat(100)), "when.json[0] /a: \"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy… does not equal \"x\""),
    ];
    for (condition, body, want) in cases {
        let set = rule(&format!("when.json = [{condition}]\nthen.status = 404"));
        let traces = set.explain(&Response::json(200, body).view());
        assert_eq!(
            traces[0].to_string(),
            format!("r (enforce): {want}"),
            "{condition}"
        );
    }
}

#[test]
fn explain_notes_unusable_values_and_escapes_them() {
    let set = rule("then.status = 503\nthen.retry_after_from = \"/r\"\nthen.body = \"problem\"\nthen.detail_from = \"/m\"");
    let response = Response::json(200, r#"{"r":"30\r\nSet-Cookie: x","m":[1]}"#);
    let traces = set.explain(&response.view());
    assert_eq!(
        traces[0].to_string(),
        "r (enforce): matched: status 503, body problem; retry_after_from /r: \"30\\r\\nSet-Cookie: x\" is not a whole number of seconds (0..=9999999999); no Retry-After; detail_from /m: […] is not printable text; no detail"
    );
    let set = rule("when.status = [200]\nthen.status_from = \"/s\"\nthen.status = 502\nthen.headers = [{ name = \"x-a\", value = \"1\" }]");
    let traces = set.explain(&Response::json(200, "{}").view());
    assert_eq!(
        traces[0].to_string(),
        "r (enforce): matched: status 502, headers x-a; status_from /s: no such field; using then.status 502"
    );
    assert!(matches!(traces[0].outcome, Outcome::Matched { .. }));
}

#[test]
fn explain_agrees_with_evaluate() {
    let set = rules(ORDERED);
    let responses = [
        Response::json(200, r#"{"code":1042}"#),
        Response::json(200, r#"{"code":7}"#),
        Response::json(503, r#"{"code":7}"#),
        Response::new(200),
        Response::json(404, "garbage"),
    ];
    for response in &responses {
        let eval = set.evaluate(&response.view());
        let traces = set.explain(&response.view());
        let matched = |mode: Mode| -> Vec<&str> {
            traces
                .iter()
                .filter(|t| t.rule.mode == mode && matches!(t.outcome, Outcome::Matched { .. }))
                .map(|t| t.rule.name.as_str())
                .collect()
        };
        let decision: Vec<&str> = eval.decision.iter().map(|d| d.rule.name.as_str()).collect();
        let shadows: Vec<&str> = eval.shadows.iter().map(|d| d.rule.name.as_str()).collect();
        assert_eq!(matched(Mode::Enforce), decision);
        assert_eq!(matched(Mode::Shadow), shadows);
    }
}

#[test]
fn the_example_config_rules_behave_as_commented() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/candor.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = crate::config::from_toml(&text, "candor.toml", Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let set = config.rules;
    assert!(set.unreachable().is_empty(), "{:?}", set.unreachable());
    let cases = [
        (
            r#"{"status":"error","code":1042,"message":"no such user"}"#,
            Some("user-not-found"),
            Some(404),
        ),
        (
            r#"{"status":"error","errors":[{"field":"email"}]}"#,
            Some("validation-failed"),
            Some(422),
        ),
        (
            r#"{"error":"rate_limited","retry_in":30}"#,
            Some("quota-exceeded"),
            Some(429),
        ),
        (r#"{"data":null}"#, Some("null-entity"), Some(404)),
        (r#"{"data":{"id":7}}"#, None, None),
    ];
    for (body, name, status) in cases {
        let response = Response::json(200, body);
        assert!(set.needs_body(&response.view()));
        let eval = set.evaluate(&response.view());
        assert_eq!(
            eval.decision.as_ref().map(|d| d.rule.name.as_str()),
            name,
            "{body}"
        );
        assert_eq!(
            eval.decision
                .as_ref()
                .and_then(|d| d.status.map(|s| s.as_u16())),
            status
        );
    }
    let eval =
        set.evaluate(&Response::json(200, r#"{"error":"rate_limited","retry_in":30}"#).view());
    assert_eq!(eval.decision.and_then(|d| d.retry_after), Some(30));
}

#[test]
fn request_headers_and_query_are_conditions() {
    let set = rule(
        "when.status = [403]\nwhen.request_header = [{ name = \"authorization\", absent = true }]\nthen.status = 401",
    );
    let bare = Response::new(403);
    assert_eq!(decided(&set, &bare).map(|d| d.1), Some(Some(401)));
    let empty = Response::new(403).request_header("authorization", b"");
    assert_eq!(
        decided(&set, &empty),
        None,
        "an empty value is present, not absent"
    );
    let token = Response::new(403).request_header("authorization", b"Bearer x");
    assert_eq!(decided(&set, &token), None);

    let set = rule(
        "when.request_header = [{ name = \"x-a\", matches = '^v[0-9]$' }, { name = \"x-b\" }]\nthen.status = 500",
    );
    let both = Response::new(200)
        .request_header("x-a", b"zz")
        .request_header("x-a", b"v2")
        .request_header("x-b", b"");
    assert!(
        decided(&set, &both).is_some(),
        "any value of a repeated header matches"
    );
    assert_eq!(
        decided(&set, &Response::new(200).request_header("x-a", b"v2")),
        None
    );

    let set = rule("when.query = '(^|&)debug=1(&|$)'\nthen.status = 500");
    assert!(decided(&set, &Response::new(200).query("a=2&debug=1")).is_some());
    assert_eq!(
        decided(&set, &Response::new(200)),
        None,
        "no query is the empty string"
    );
    let set = rule("when.query = '^$'\nthen.status = 500");
    assert!(decided(&set, &Response::new(200)).is_some());
}

#[test]
fn response_headers_can_be_required_absent() {
    let set = rule(
        "when.status = [405]\nwhen.header = [{ name = \"allow\", absent = true }]\nthen.headers = [{ name = \"allow\", value = \"GET, HEAD\" }]",
    );
    let decision = set.evaluate(&Response::new(405).view()).decision;
    let headers = decision.map(|d| d.headers).unwrap_or_default();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].1, "GET, HEAD");
    let with = Response::new(405).header("allow", b"");
    assert!(set.evaluate(&with.view()).decision.is_none());
    let trace = set.explain(&with.view())[0].to_string();
    assert!(
        trace.contains("when.header[0] allow: present (\"\"), expected absent"),
        "{trace}"
    );
}

#[test]
fn header_templates_fill_from_body_and_request() {
    let set = rule(
        "when.status = [200]\nthen.status = 201\nthen.headers = [{ name = \"location\", value = \"{path}/{/id}\" }, { name = \"x-trace\", value = \"{method} {request_id} {{{query}}}\" }, { name = \"x-static\", value = \"a {{b}}\" }]",
    );
    let response = Response::json(200, r#"{"id":"a b/c"}"#)
        .method("POST")
        .path("/accounts")
        .query("x=1");
    let decision = set.evaluate(&response.view()).decision;
    let Some(decision) = decision else {
        panic!("no decision")
    };
    let got: Vec<(&str, &str)> = decision
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        got,
        [
            ("location", "/accounts/a%20b%2Fc"),
            ("x-trace", "POST r-1 {x=1}"),
            ("x-static", "a {b}")
        ]
    );
    assert!(decision.unfilled.is_empty());
    // A value that cannot be filled skips that header only.
    let hostile = Response::json(200, r#"{"id":"42\r\nSet-Cookie: x"}"#).method("POST");
    let decision = set.evaluate(&hostile.view()).decision;
    let Some(decision) = decision else {
        panic!("no decision")
    };
    assert_eq!(decision.status.map(|s| s.as_u16()), Some(201));
    assert_eq!(decision.headers.len(), 2, "{:?}", decision.headers);
    assert_eq!(
        decision.unfilled,
        [Unfilled {
            target: Target::Header(&http::header::LOCATION),
            error: FillError::Control
        }]
    );
    // The template's pointer makes the rule need the body.
    assert!(set.needs_body(&Response::new(200).view()));
}

#[test]
fn members_are_copied_bounded_and_omitted_when_missing() {
    let set = rule(
        "when.status = [200]\nthen.status = 422\nthen.body = \"problem\"\nthen.problem.members = { errors = \"/errors\", version = \"/v\", big = \"/big\" }",
    );
    let body = r#"{"errors":[{"field":"email","message":"bad"}],"big":null}"#;
    let decision = set.evaluate(&Response::json(200, body).view()).decision;
    let Some(decision) = decision else {
        panic!("no decision")
    };
    let names: Vec<&str> = decision.members.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["big", "errors"],
        "sorted by name; a missing one left out"
    );
    assert_eq!(decision.members[1].1[0]["field"], "email");
    assert!(decision.unfilled.is_empty());

    let huge = format!(r#"{{"big":"{}","errors":[1]}}"#, "x".repeat(20_000));
    let decision = set.evaluate(&Response::json(200, &huge).view()).decision;
    let Some(decision) = decision else {
        panic!("no decision")
    };
    let names: Vec<&str> = decision.members.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["errors"]);
    assert_eq!(
        decision.unfilled,
        [Unfilled {
            target: Target::Member("big"),
            error: FillError::MembersTooLarge
        }]
    );
    // Two members that fit alone but not together: the second is left out.
    let half = "y".repeat(9_000);
    let pair = format!(r#"{{"big":"{half}","errors":"{half}"}}"#);
    let decision = set.evaluate(&Response::json(200, &pair).view()).decision;
    let Some(decision) = decision else {
        panic!("no decision")
    };
    assert_eq!(decision.members.len(), 1);
    assert_eq!(decision.unfilled.len(), 1);
}

#[test]
fn a_condition_on_a_member_sees_it_whole() {
    // The member's pointer is also tested by a regex: it must not be cut at 16 KiB.
    let long = "z".repeat(20_000);
    let set = rule(
        "when.json = [{ pointer = \"/m\", matches = 'z$' }]\nthen.status = 422\nthen.body = \"problem\"\nthen.problem.members = { m = \"/m\" }",
    );
    let body = format!(r#"{{"m":"{long}"}}"#);
    let decision = set.evaluate(&Response::json(200, &body).view()).decision;
    let Some(decision) = decision else {
        panic!("the condition must hold")
    };
    assert!(decision.members.is_empty());
    assert_eq!(decision.unfilled.len(), 1);
}
