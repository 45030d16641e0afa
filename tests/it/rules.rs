//! The rule engine end to end: every condition, action and built-in, against real loopback
//! upstreams, through candor's whole stack.

use std::io::Write;
use std::time::Duration;

use crate::harness::*;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

const JSON_ERROR: &str = r#"{"status":"error","code":1042,"message":"user not found"}"#;

/// The example config's first rule, used by several tests.
const USER_NOT_FOUND: &str = r#"
[[rules]]
name = "user-not-found"
when.status = [200]
when.json = [{ pointer = "/status", equals = "error" }, { pointer = "/code", equals = 1042 }]
then.status = 404
then.body = "problem"
then.detail_from = "/message"
"#;

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

#[tokio::test]
async fn a_200_with_an_error_body_becomes_a_404_problem() {
    let up = canned_upstream(vec![("/users/7", Canned::json(200, JSON_ERROR))]).await;
    let candor = Candor::start(config_toml(&up.url(), USER_NOT_FOUND)).await;
    let (status, headers, body) =
        request(candor.addr, "GET", "/users/7", &[("x-request-id", "rq-1")]).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["content-length"], body.len().to_string().as_str());
    assert_eq!(headers["x-candor-rule"], "user-not-found");
    assert_eq!(headers["x-candor-original-status"], "200");
    let doc = problem(&body);
    assert_eq!(doc["status"], 404);
    assert_eq!(doc["title"], "Not Found");
    assert_eq!(doc["detail"], "user not found");
    assert_eq!(doc["instance"], "/users/7");
    assert_eq!(doc["request_id"], "rq-1");
    let metrics = candor.metrics().await;
    assert!(
        metrics.contains(
            r#"candor_rewrites_total{rule="user-not-found",from="200",to="404",mode="enforce"} 1"#
        ),
        "{metrics}"
    );
}

/// Each condition kind, with one response that satisfies it and one that does not. The rule
/// rewrites to 409 with the body kept, so a miss is visible as the upstream's 200.
#[tokio::test]
async fn every_condition_matches_and_misses() {
    struct Case {
        when: &'static str,
        hit: (&'static str, Canned),
        miss: (&'static str, Canned),
    }
    let ok = |body: &str| Canned::json(200, body);
    let cases = vec![
        Case {
            when: r#"when.status = ["2xx"]"#,
            hit: ("GET", ok("{}")),
            miss: ("GET", Canned::json(404, "{}")),
        },
        Case {
            when: r#"when.method = ["POST", "PUT"]"#,
            hit: ("PUT", ok("{}")),
            miss: ("GET", ok("{}")),
        },
        Case {
            when: r#"when.content_type = "^application/vnd\\.legacy""#,
            hit: ("GET", Canned::new(200, "application/vnd.legacy+json", "{}")),
            miss: ("GET", ok("{}")),
        },
        Case {
            when: r#"when.header = [{ name = "x-legacy-error" }]"#,
            hit: ("GET", ok("{}").header("x-legacy-error", "1")),
            miss: ("GET", ok("{}")),
        },
        Case {
            when: r#"when.header = [{ name = "x-app-status", matches = "^fail" }]"#,
            hit: ("GET", ok("{}").header("x-app-status", "failed")),
            miss: ("GET", ok("{}").header("x-app-status", "ok")),
        },
        Case {
            when: r#"when.json = [{ pointer = "/error/code", equals = 7 }]"#,
            hit: ("GET", ok(r#"{"error":{"code":7.0}}"#)),
            miss: ("GET", ok(r#"{"error":{"code":"7"}}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/tags", equals = ["a", 1, true] }]"#,
            hit: ("GET", ok(r#"{"tags":["a",1,true]}"#)),
            miss: ("GET", ok(r#"{"tags":["a",1]}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/err", equals = { kind = "x", n = 2 } }]"#,
            hit: ("GET", ok(r#"{"err":{"n":2,"kind":"x"}}"#)),
            miss: ("GET", ok(r#"{"err":{"n":2}}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/data", is_null = true }]"#,
            hit: ("GET", ok(r#"{"data":null}"#)),
            miss: ("GET", ok(r#"{"other":null}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/msg", matches = "(?i)not found" }]"#,
            hit: ("GET", ok(r#"{"msg":"Record NOT FOUND"}"#)),
            miss: ("GET", ok(r#"{"msg":"found"}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/state", one_of = ["failed", "error", 0] }]"#,
            hit: ("GET", ok(r#"{"state":0}"#)),
            miss: ("GET", ok(r#"{"state":"done"}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/errors/0", exists = true }]"#,
            hit: ("GET", ok(r#"{"errors":[{"f":"x"}]}"#)),
            miss: ("GET", ok(r#"{"errors":[]}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/ok", exists = false }]"#,
            hit: ("GET", ok(r#"{"error":1}"#)),
            miss: ("GET", ok(r#"{"ok":1}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/code", gt = 999 }]"#,
            hit: ("GET", ok(r#"{"code":1000}"#)),
            miss: ("GET", ok(r#"{"code":999}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/code", gte = 999 }]"#,
            hit: ("GET", ok(r#"{"code":999}"#)),
            miss: ("GET", ok(r#"{"code":998.5}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/left", lt = 1 }]"#,
            hit: ("GET", ok(r#"{"left":0}"#)),
            miss: ("GET", ok(r#"{"left":"0"}"#)),
        },
        Case {
            when: r#"when.json = [{ pointer = "/left", lte = 0 }]"#,
            hit: ("GET", ok(r#"{"left":-3}"#)),
            miss: ("GET", ok(r#"{"left":1}"#)),
        },
        Case {
            when: r#"when.body = "(?i)<error>""#,
            hit: (
                "GET",
                Canned::new(200, "text/plain", "result: <ERROR> nope"),
            ),
            miss: ("GET", Canned::new(200, "text/plain", "result: fine")),
        },
        Case {
            when: r#"when.json = [{ pointer = "/status", equals = "error" }]"#,
            hit: ("GET", ok(r#"{"status":"error"}"#)),
            // Malformed JSON satisfies no json condition.
            miss: ("GET", ok(r#"{"status":"error""#)),
        },
    ];
    for case in cases {
        let up = canned_upstream(vec![
            ("/hit/a", case.hit.1.clone()),
            ("/miss/a", case.miss.1.clone()),
        ])
        .await;
        let rules = format!(
            "[[rules]]\nname = \"r\"\n{}\nthen.status = 409\n",
            case.when
        );
        let candor = Candor::start(config_toml(&up.url(), &rules)).await;
        let (status, headers, body) = request(candor.addr, case.hit.0, "/hit/a", &[]).await;
        assert_eq!(status, 409, "{}: hit was not rewritten", case.when);
        assert_eq!(body, case.hit.1.body, "{}: body kept", case.when);
        assert_eq!(headers["x-candor-rule"], "r");
        let (status, headers, body) = request(candor.addr, case.miss.0, "/miss/a", &[]).await;
        assert_eq!(
            status.as_u16(),
            case.miss.1.status,
            "{}: miss was rewritten",
            case.when
        );
        assert_eq!(body, case.miss.1.body);
        assert!(!headers.contains_key("x-candor-rule"));
    }
}

#[tokio::test]
async fn path_conditions_use_the_request_path() {
    let up = canned_upstream(vec![
        ("/v1/users/9", Canned::json(200, "{}")),
        ("/v1/orders/9", Canned::json(200, "{}")),
    ])
    .await;
    let rules = "[[rules]]\nname = \"users\"\nwhen.path = '^/v1/users/\\d+$'\nthen.status = 410\n";
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    assert_eq!(request(candor.addr, "GET", "/v1/users/9", &[]).await.0, 410);
    assert_eq!(
        request(candor.addr, "GET", "/v1/orders/9", &[]).await.0,
        200
    );
}

#[tokio::test]
async fn status_from_uses_the_body_status_or_the_fallback() {
    let up = canned_upstream(vec![
        ("/number", Canned::json(200, r#"{"http_status":503}"#)),
        ("/string", Canned::json(200, r#"{"http_status":"422"}"#)),
        ("/success", Canned::json(200, r#"{"http_status":201}"#)),
        ("/bogus", Canned::json(200, r#"{"http_status":"soon"}"#)),
        ("/huge", Canned::json(200, r#"{"http_status":700}"#)),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "with-fallback"
when.path = "^/(number|string|success|bogus)$"
when.json = [{ pointer = "/http_status", exists = true }]
then.status_from = "/http_status"
then.status = 502

[[rules]]
name = "no-fallback"
when.path = "^/huge$"
when.json = [{ pointer = "/http_status", exists = true }]
then.status_from = "/http_status"
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    for (path, want) in [
        ("/number", 503),
        ("/string", 422),
        ("/success", 502),
        ("/bogus", 502),
        ("/huge", 200),
    ] {
        let (status, headers, _) = request(candor.addr, "GET", path, &[]).await;
        assert_eq!(status, want, "{path}");
        if want == 200 {
            assert!(
                !headers.contains_key("x-candor-rule"),
                "no rewrite for {path}"
            );
        }
    }
}

#[tokio::test]
async fn retry_after_is_set_from_config_or_body_and_hostile_values_are_dropped() {
    let hostile = [
        r#"-1"#,
        r#"1.5"#,
        r#"1e3"#,
        r#""30\r\nSet-Cookie: a=b""#,
        r#""abc""#,
        r#"true"#,
        r#"null"#,
        r#""99999999999""#,
        r#"{"s":1}"#,
    ];
    let mut routes = vec![
        ("/fixed", Canned::json(200, r#"{"error":"busy"}"#)),
        (
            "/from",
            Canned::json(200, r#"{"error":"quota","retry_in":30}"#),
        ),
        (
            "/from-string",
            Canned::json(200, r#"{"error":"quota","retry_in":"45"}"#),
        ),
    ];
    let paths: Vec<&'static str> = (0..hostile.len())
        .map(|i| &*Box::leak(format!("/hostile/{i}").into_boxed_str()))
        .collect();
    for (i, value) in hostile.iter().enumerate() {
        let body = format!(r#"{{"error":"quota","retry_in":{value}}}"#);
        routes.push((paths[i], Canned::json(200, &body)));
    }
    let up = canned_upstream(routes).await;
    let rules = r#"
[[rules]]
name = "busy"
when.json = [{ pointer = "/error", equals = "busy" }]
then.status = 409
then.retry_after = "1500ms"

[[rules]]
name = "quota"
when.json = [{ pointer = "/error", equals = "quota" }]
then.status = 409
then.retry_after_from = "/retry_in"
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    let (status, headers, _) = request(candor.addr, "GET", "/fixed", &[]).await;
    assert_eq!(status, 409);
    assert_eq!(headers["retry-after"], "2");
    let (_, headers, _) = request(candor.addr, "GET", "/from", &[]).await;
    assert_eq!(headers["retry-after"], "30");
    let (_, headers, _) = request(candor.addr, "GET", "/from-string", &[]).await;
    assert_eq!(headers["retry-after"], "45");
    for (i, value) in hostile.iter().enumerate() {
        let (wire, _) = raw(
            candor.addr,
            format!(
                "GET {} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                paths[i]
            )
            .as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert!(wire.starts_with("HTTP/1.1 409"), "{value}: {wire}");
        let head = wire.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(
            !head.contains("retry-after"),
            "{value} reached a header: {head}"
        );
        assert!(!head.contains("set-cookie"), "{value}: {head}");
    }
}

#[tokio::test]
async fn body_actions_keep_problem_empty_and_headers() {
    let up = canned_upstream(vec![
        (
            "/keep",
            Canned::json(200, r#"{"status":"error","keep":true}"#).header("etag", "\"v1\""),
        ),
        (
            "/problem",
            Canned::json(200, r#"{"status":"error","why":"bad\ninput\u0000"}"#)
                .header("etag", "\"v1\""),
        ),
        ("/empty", Canned::json(200, r#"{"status":"error"}"#)),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "keep"
when.path = "^/keep$"
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 400
then.headers = [{ name = "x-legacy-error", value = "yes" }, { name = "cache-control", value = "private" }]

[[rules]]
name = "problem"
when.path = "^/problem$"
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 422
then.body = "problem"
then.detail_from = "/why"

[[rules]]
name = "empty"
when.path = "^/empty$"
then.status = 400
then.body = "empty"
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    let (status, headers, body) = request(candor.addr, "GET", "/keep", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body, r#"{"status":"error","keep":true}"#);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["etag"], "\"v1\"");
    assert_eq!(headers["x-legacy-error"], "yes");
    assert_eq!(headers["cache-control"], "private");

    let (status, headers, body) = request(candor.addr, "GET", "/problem", &[]).await;
    assert_eq!(status, 422);
    assert!(
        !headers.contains_key("etag"),
        "a replaced body has no validator"
    );
    assert_eq!(problem(&body)["detail"], "bad input");

    let (status, headers, body) = request(candor.addr, "GET", "/empty", &[]).await;
    assert_eq!(status, 400);
    assert!(body.is_empty());
    assert_eq!(headers["content-length"], "0");
    assert!(!headers.contains_key("content-type"));
}

#[tokio::test]
async fn a_delete_answered_with_an_empty_object_becomes_204_without_a_body() {
    let up = canned_upstream(vec![
        ("/users/1", Canned::json(200, "{ }")),
        ("/after", Canned::json(200, "{\"next\":true}")),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "delete-empty"
when.method = ["DELETE"]
when.status = [200]
when.body = '^\s*\{\s*\}\s*$'
then.status = 204
then.body = "empty"
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    // Pipelined: the 204 must not leave body bytes that would corrupt the next response.
    let (wire, _) = raw(
        candor.addr,
        b"DELETE /users/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let (first, second) = wire.split_once("HTTP/1.1 200").expect(&wire);
    assert!(first.starts_with("HTTP/1.1 204"), "{wire}");
    assert!(first.ends_with("\r\n\r\n"), "no body after a 204: {wire:?}");
    let head = first.to_ascii_lowercase();
    assert!(
        !head.contains("content-length") && !head.contains("content-type"),
        "{wire}"
    );
    assert!(second.ends_with("{\"next\":true}"), "{wire}");
}

#[tokio::test]
async fn compressed_bodies_are_decoded_for_rules_and_sent_as_identity_or_untouched() {
    let body = JSON_ERROR.as_bytes();
    let fine = br#"{"status":"ok","code":0,"message":"fine"}"#;
    let mut routes = Vec::new();
    type Encode = fn(&[u8]) -> Vec<u8>;
    let codings: [(&str, Encode); 4] = [
        ("gzip", gzip),
        ("deflate", deflate),
        ("br", brotli),
        ("zstd", zstd),
    ];
    for (coding, encode) in codings {
        let leak = |p: String| -> &'static str { Box::leak(p.into_boxed_str()) };
        routes.push((
            leak(format!("/problem/{coding}")),
            Canned::new(200, "application/json", encode(body)).header("content-encoding", coding),
        ));
        routes.push((
            leak(format!("/keep/{coding}")),
            Canned::new(200, "application/json", encode(body)).header("content-encoding", coding),
        ));
        routes.push((
            leak(format!("/fine/{coding}")),
            Canned::new(200, "application/json", encode(fine)).header("content-encoding", coding),
        ));
    }
    let up = canned_upstream(routes.clone()).await;
    let rules = r#"
[[rules]]
name = "problem"
when.path = "^/problem/"
when.json = [{ pointer = "/code", equals = 1042 }]
then.status = 404
then.body = "problem"

[[rules]]
name = "keep"
when.path = "^/keep/"
when.json = [{ pointer = "/code", equals = 1042 }]
then.status = 404
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    for (coding, _) in codings {
        let (status, headers, doc) =
            request(candor.addr, "GET", &format!("/problem/{coding}"), &[]).await;
        assert_eq!(status, 404, "{coding}");
        assert!(
            !headers.contains_key("content-encoding"),
            "{coding}: identity problem"
        );
        assert_eq!(problem(&doc)["status"], 404);

        let (status, headers, kept) =
            request(candor.addr, "GET", &format!("/keep/{coding}"), &[]).await;
        assert_eq!(status, 404, "{coding}");
        assert_eq!(headers["content-encoding"], coding);
        let original = &routes
            .iter()
            .find(|(p, _)| *p == format!("/keep/{coding}"))
            .unwrap()
            .1;
        assert_eq!(kept, original.body, "{coding}: the encoded bytes as sent");

        let (status, headers, same) =
            request(candor.addr, "GET", &format!("/fine/{coding}"), &[]).await;
        assert_eq!(status, 200, "{coding}");
        assert_eq!(headers["content-encoding"], coding);
        let original = &routes
            .iter()
            .find(|(p, _)| *p == format!("/fine/{coding}"))
            .unwrap()
            .1;
        assert_eq!(same, original.body, "{coding}: untouched");
    }
}

#[tokio::test]
async fn a_gzip_bomb_costs_at_most_the_limit_and_passes_untouched() {
    let bomb = gzip(&vec![b' '; 64 << 20]);
    let up = canned_upstream(vec![(
        "/bomb",
        Canned::new(200, "application/json", bomb.clone()).header("content-encoding", "gzip"),
    )])
    .await;
    let candor = Candor::start(config_toml(&up.url(), USER_NOT_FOUND)).await;
    let (status, headers, body) = request(candor.addr, "GET", "/bomb", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(body, bomb);
    let metrics = candor.metrics().await;
    assert!(
        metrics.contains(r#"candor_inspect_skipped_total{reason="too_large"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn shadow_rules_count_but_change_nothing_and_later_rules_still_apply() {
    let up = canned_upstream(vec![
        ("/a", Canned::json(200, JSON_ERROR)),
        ("/b", Canned::json(200, r#"{"status":"error","code":1}"#)),
    ])
    .await;
    let rules = r#"
[[rules]]
name = "try-404"
mode = "shadow"
when.json = [{ pointer = "/code", equals = 1042 }]
then.status = 404
then.body = "problem"

[[rules]]
name = "any-error"
when.path = "^/b$"
when.json = [{ pointer = "/status", equals = "error" }]
then.status = 500
"#;
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    let (status, headers, body) = request(candor.addr, "GET", "/a", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, JSON_ERROR);
    assert!(!headers.contains_key("x-candor-rule"));
    let (status, _, _) = request(candor.addr, "GET", "/b", &[]).await;
    assert_eq!(status, 500);
    let metrics = candor.metrics().await;
    assert!(
        metrics.contains(
            r#"candor_rewrites_total{rule="try-404",from="200",to="404",mode="shadow"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"candor_rewrites_total{rule="any-error",from="200",to="500",mode="enforce"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn bodies_just_under_and_over_the_limit() {
    const LIMIT: usize = 1024;
    let pad = |n: usize| -> String {
        let head = r#"{"status":"error","pad":""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "x".repeat(n - head.len() - tail.len()))
    };
    let at_limit = pad(LIMIT);
    let over = pad(LIMIT + 1);
    let up = canned_upstream(vec![
        ("/at", Canned::json(200, &at_limit)),
        ("/over", Canned::json(200, &over)),
    ])
    .await;
    // A chunked body with no length, over the limit, arriving in small pieces.
    let chunked_over = over.clone();
    let (chunked_addr, _) = raw_upstream(move |mut stream| {
        let body = chunked_over.clone();
        async move {
            let _ = read_head(&mut stream).await;
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for piece in body.as_bytes().chunks(100) {
                out.extend(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend(piece);
                out.extend(b"\r\n");
            }
            out.extend(b"0\r\n\r\n");
            let _ = stream.write_all(&out).await;
        }
    })
    .await;
    let rules = format!(
        "[inspect]\nmax_body_bytes = {LIMIT}\n\n[[rules]]\nname = \"err\"\nwhen.json = [{{ pointer = \"/status\", equals = \"error\" }}]\nthen.status = 500\n"
    );
    let candor = Candor::start(config_toml(&up.url(), &rules)).await;
    let (status, _, body) = request(candor.addr, "GET", "/at", &[]).await;
    assert_eq!(
        (status.as_u16(), body.len()),
        (500, LIMIT),
        "at the limit: inspected"
    );
    let (status, headers, body) = request(candor.addr, "GET", "/over", &[]).await;
    assert_eq!(status, 200, "over the limit: passed through");
    assert_eq!(body, over);
    assert_eq!(headers["content-length"], (LIMIT + 1).to_string().as_str());

    let candor = Candor::start(config_toml(&format!("http://{chunked_addr}"), &rules)).await;
    let (status, _, body) = request(candor.addr, "GET", "/chunked", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        body, over,
        "every byte, in order, including those read for inspection"
    );
}

#[tokio::test]
async fn an_inspected_body_cut_mid_read_becomes_502() {
    let (addr, _) = raw_upstream(|mut stream| async move {
        let _ = read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"status\":\"ok\",")
            .await;
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    })
    .await;
    let candor = Candor::start(config_toml(&format!("http://{addr}"), USER_NOT_FOUND)).await;
    let (status, headers, body) = request(candor.addr, "GET", "/users/7", &[]).await;
    assert_eq!(status, 502);
    assert_eq!(
        headers["proxy-status"],
        "candor; error=http_response_incomplete"
    );
    assert_eq!(problem(&body)["status"], 502);
    assert!(candor
        .metrics()
        .await
        .contains(r#"candor_upstream_failures_total{kind="incomplete"} 1"#));
}

#[tokio::test]
async fn html_error_pages_become_problems_unless_a_browser_asks() {
    let page404 = "<html><head><title>404 Not Found</title></head><body><h1>No customer with id 7</h1><p>no</p></body></html>";
    let page500 =
        "<html><head><title>Error</title></head><body><h1>Database exploded</h1></body></html>";
    let up = canned_upstream(vec![
        (
            "/missing",
            Canned::new(404, "text/html; charset=utf-8", page404),
        ),
        ("/broken", Canned::new(500, "text/html", page500)),
    ])
    .await;
    let candor = Candor::start(config_toml(&up.url(), "")).await;
    let (status, headers, body) = request(
        candor.addr,
        "GET",
        "/missing",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["x-candor-rule"], "html-errors");
    let doc = problem(&body);
    assert_eq!(doc["detail"], "No customer with id 7");
    assert_eq!(doc["instance"], "/missing");

    let (status, _, body) = request(candor.addr, "GET", "/broken", &[]).await;
    assert_eq!(status, 500);
    let doc = problem(&body);
    assert!(doc.get("detail").is_none() || !doc["detail"].as_str().unwrap().contains("Database"));
    assert!(!String::from_utf8_lossy(&body).contains("exploded"));

    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let (status, headers, body) =
        request(candor.addr, "GET", "/missing", &[("accept", browser)]).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(body, page404);
}

#[tokio::test]
async fn retry_after_is_added_where_missing_and_never_replaced() {
    let up = canned_upstream(vec![
        ("/bare", Canned::json(429, r#"{"error":"slow down"}"#)),
        ("/has", Canned::json(429, "{}").header("retry-after", "7")),
        (
            "/reset",
            Canned::json(503, "{}").header("x-ratelimit-reset", "12"),
        ),
        (
            "/date",
            Canned::json(503, "{}").header("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT"),
        ),
    ])
    .await;
    let candor = Candor::start(config_toml(
        &up.url(),
        "[retry_after]\nstatuses = [429, 503]\ndefault = \"30s\"\n",
    ))
    .await;
    let (_, headers, _) = request(candor.addr, "GET", "/bare", &[]).await;
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(headers["x-candor-rule"], "retry-after");
    let (_, headers, _) = request(candor.addr, "GET", "/has", &[]).await;
    assert_eq!(headers["retry-after"], "7");
    let (_, headers, _) = request(candor.addr, "GET", "/reset", &[]).await;
    assert_eq!(headers["retry-after"], "12");
    let (_, headers, _) = request(candor.addr, "GET", "/date", &[]).await;
    assert_eq!(headers["retry-after"], "Wed, 21 Oct 2026 07:28:00 GMT");
}

#[tokio::test]
async fn error_bodies_leaking_internals_are_scrubbed() {
    let trace = "Traceback (most recent call last):\n  File \"/srv/app/views.py\", line 12, in get\n    raise KeyError(user)\nKeyError: 'u7'";
    let java = r#"{"error":"java.lang.NullPointerException\n\tat com.acme.UserService.find(UserService.java:42)"}"#;
    let up = canned_upstream(vec![
        ("/py", Canned::new(500, "text/plain", trace)),
        ("/java", Canned::json(500, java)),
        ("/clean", Canned::json(500, r#"{"error":"internal error"}"#)),
    ])
    .await;
    let candor = Candor::start(config_toml(&up.url(), "")).await;
    for path in ["/py", "/java"] {
        let (status, headers, body) = request(candor.addr, "GET", path, &[]).await;
        assert_eq!(status, 500, "{path}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(headers["x-candor-rule"], "scrub");
        let text = String::from_utf8_lossy(&body);
        for leak in ["Traceback", "views.py", "UserService", "NullPointer"] {
            assert!(!text.contains(leak), "{path} leaked {leak}: {text}");
        }
    }
    let (status, _, body) = request(candor.addr, "GET", "/clean", &[]).await;
    assert_eq!(
        (status.as_u16(), &body[..]),
        (500, &br#"{"error":"internal error"}"#[..])
    );
}

#[tokio::test]
async fn uninspectable_content_types_and_streams_pass_at_once() {
    let up = canned_upstream(vec![(
        "/bin",
        Canned::new(
            200,
            "application/octet-stream",
            Bytes::from_static(&[0, 159, 146, 150]),
        ),
    )])
    .await;
    let candor = Candor::start(config_toml(&up.url(), USER_NOT_FOUND)).await;
    let (status, _, body) = request(candor.addr, "GET", "/bin", &[]).await;
    assert_eq!(
        (status.as_u16(), &body[..]),
        (200, &[0u8, 159, 146, 150][..])
    );
    assert!(candor
        .metrics()
        .await
        .contains(r#"candor_inspect_skipped_total{reason="content_type"} 1"#));

    // An event stream on a status rules want: the first event arrives while the upstream is
    // still holding the response open.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let hold = release.clone();
    let (addr, _) = raw_upstream(move |mut stream| {
        let hold = hold.clone();
        async move {
            let _ = read_head(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata:1\r\n")
                .await;
            hold.notified().await;
            let _ = stream.write_all(b"0\r\n\r\n").await;
        }
    })
    .await;
    let candor = Candor::start(config_toml(&format!("http://{addr}"), USER_NOT_FOUND)).await;
    let req = http::Request::get("/events")
        .header("host", "a")
        .body(full(""))
        .unwrap();
    let response = send(candor.addr, req).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    use http_body_util::BodyExt;
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first event must arrive before the stream ends")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "data:1");
    release.notify_one();
}

#[tokio::test]
async fn debug_headers_can_be_turned_off() {
    let up = canned_upstream(vec![("/users/7", Canned::json(200, JSON_ERROR))]).await;
    let text = format!("[server]\ndebug_headers = false\n{USER_NOT_FOUND}");
    let candor = Candor::start(config_toml(&up.url(), &text)).await;
    let (status, headers, _) = request(candor.addr, "GET", "/users/7", &[]).await;
    assert_eq!(status, 404);
    assert!(!headers.contains_key("x-candor-rule"));
    assert!(!headers.contains_key("x-candor-original-status"));
}

#[tokio::test]
async fn head_requests_are_rewritten_without_a_body() {
    let up = canned_upstream(vec![(
        "/gone",
        Canned::json(200, "{}").header("x-legacy-gone", "1"),
    )])
    .await;
    let rules = "[[rules]]\nname = \"gone\"\nwhen.header = [{ name = \"x-legacy-gone\" }]\nthen.status = 410\nthen.body = \"problem\"\n";
    let candor = Candor::start(config_toml(&up.url(), rules)).await;
    let (wire, _) = raw(
        candor.addr,
        b"HEAD /gone HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(wire.starts_with("HTTP/1.1 410"), "{wire}");
    assert!(wire.ends_with("\r\n\r\n"), "no body for HEAD: {wire:?}");
}
