//! RFC 9111 for one stored response, one row per rule.

use std::time::{Duration, SystemTime};

use http::Method;

use super::*;

fn req(headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder()
        .method(Method::GET)
        .uri("http://o.example/f");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn resp(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

/// The time the tests' responses were received, and an HTTP-date `secs` from it.
fn t0() -> SystemTime {
    httpdate::parse_http_date("Mon, 30 Nov 2026 00:00:00 GMT").unwrap()
}

fn date(secs: i64) -> String {
    let t = if secs >= 0 {
        t0() + Duration::from_secs(secs as u64)
    } else {
        t0() - Duration::from_secs((-secs) as u64)
    };
    httpdate::fmt_http_date(t)
}

fn policy(headers: &[(&str, &str)]) -> Policy {
    Policy::new(&req(&[]), &resp(200, headers), t0(), t0(), false)
}

/// What a request with `rh` gets `after` seconds from a response with `headers`.
fn verdict(headers: &[(&str, &str)], rh: &[(&str, &str)], after: u64) -> &'static str {
    let p = policy(headers);
    match p.reuse(&req(rh), t0() + Duration::from_secs(after)) {
        Reuse::Fresh(_) => "fresh",
        Reuse::Stale(_) => "stale",
        Reuse::Mismatch => "mismatch",
    }
}

#[test]
fn freshness_and_age() {
    let now = date(0);
    let old = date(-100 * 3600);
    let in60 = date(60);
    let ago100 = date(-100);
    type Row<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
        u64,
        &'a str,
    );
    let rows: Vec<Row> = vec![
        (
            "max-age",
            vec![("cache-control", "max-age=60")],
            vec![],
            59,
            "fresh",
        ),
        (
            "max-age over",
            vec![("cache-control", "max-age=60")],
            vec![],
            60,
            "stale",
        ),
        (
            "names ignore case",
            vec![("cache-control", "MAX-AGE=60")],
            vec![],
            1,
            "fresh",
        ),
        (
            "s-maxage first",
            vec![("cache-control", "max-age=600, s-maxage=1")],
            vec![],
            2,
            "stale",
        ),
        (
            "conflicting max-age",
            vec![("cache-control", "max-age=600, max-age=601")],
            vec![],
            1,
            "stale",
        ),
        (
            "invalid max-age",
            vec![("cache-control", "max-age=abc")],
            vec![],
            1,
            "stale",
        ),
        (
            "Expires",
            vec![("date", &now), ("expires", &in60)],
            vec![],
            30,
            "fresh",
        ),
        (
            "Expires invalid",
            vec![("date", &now), ("expires", "0")],
            vec![],
            0,
            "stale",
        ),
        (
            "Expires +0000",
            vec![
                ("date", &now),
                ("expires", "Mon, 30 Nov 2026 01:00:00 +0000"),
            ],
            vec![],
            0,
            "stale",
        ),
        (
            "Expires RFC 850",
            vec![
                ("date", &now),
                ("expires", "Monday, 30-Nov-26 01:00:00 GMT"),
            ],
            vec![],
            10,
            "fresh",
        ),
        (
            "Expires asctime",
            vec![("date", &now), ("expires", "Mon Nov 30 01:00:00 2026")],
            vec![],
            10,
            "fresh",
        ),
        (
            "heuristic",
            vec![("date", &now), ("last-modified", &old)],
            vec![],
            3600,
            "fresh",
        ),
        (
            "heuristic ends",
            vec![("date", &now), ("last-modified", &old)],
            vec![],
            11 * 3600,
            "stale",
        ),
        ("no information", vec![], vec![], 0, "stale"),
        (
            "Age counts",
            vec![("cache-control", "max-age=60"), ("age", "50")],
            vec![],
            11,
            "stale",
        ),
        (
            "Age list",
            vec![("cache-control", "max-age=3600"), ("age", "0, 0")],
            vec![],
            0,
            "stale",
        ),
        (
            "Age float",
            vec![("cache-control", "max-age=3600"), ("age", "1.0")],
            vec![],
            0,
            "stale",
        ),
        (
            "Age negative",
            vec![("cache-control", "max-age=3600"), ("age", "-1")],
            vec![],
            0,
            "stale",
        ),
        (
            "apparent age",
            vec![("cache-control", "max-age=60"), ("date", &ago100)],
            vec![],
            0,
            "stale",
        ),
        (
            "no-cache",
            vec![("cache-control", "max-age=60, no-cache")],
            vec![],
            0,
            "stale",
        ),
        (
            "No-Cache",
            vec![("cache-control", "max-age=60, No-Cache")],
            vec![],
            0,
            "stale",
        ),
        (
            "qualified no-cache",
            vec![("cache-control", "max-age=60, no-cache=\"x\"")],
            vec![],
            0,
            "fresh",
        ),
        (
            "request no-cache",
            vec![("cache-control", "max-age=60")],
            vec![("cache-control", "no-cache")],
            0,
            "stale",
        ),
        (
            "request Pragma",
            vec![("cache-control", "max-age=60")],
            vec![("pragma", "no-cache")],
            0,
            "stale",
        ),
        (
            "Pragma under Cache-Control",
            vec![("cache-control", "max-age=60")],
            vec![("pragma", "no-cache"), ("cache-control", "max-stale")],
            0,
            "fresh",
        ),
        (
            "request max-age",
            vec![("cache-control", "max-age=60")],
            vec![("cache-control", "max-age=10")],
            11,
            "stale",
        ),
        (
            "request min-fresh",
            vec![("cache-control", "max-age=60")],
            vec![("cache-control", "min-fresh=30")],
            31,
            "stale",
        ),
        (
            "request max-stale",
            vec![("cache-control", "max-age=60")],
            vec![("cache-control", "max-stale=10")],
            65,
            "fresh",
        ),
        (
            "request max-stale past",
            vec![("cache-control", "max-age=60")],
            vec![("cache-control", "max-stale=10")],
            75,
            "stale",
        ),
        (
            "max-stale, must-revalidate",
            vec![("cache-control", "max-age=60, must-revalidate")],
            vec![("cache-control", "max-stale")],
            65,
            "stale",
        ),
    ];
    for (what, h, rh, after, want) in rows {
        assert_eq!(verdict(&h, &rh, after), want, "{what}");
    }
}

#[test]
fn what_may_be_stored() {
    let ok = [("cache-control", "max-age=60")];
    type Row<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        u16,
        Vec<(&'a str, &'a str)>,
        Result<(), Unstorable>,
    );
    let rows: Vec<Row> = vec![
        ("fresh", vec![], 200, ok.to_vec(), Ok(())),
        (
            "No-StOrE",
            vec![],
            200,
            vec![("cache-control", "No-StOrE, max-age=60")],
            Err(Unstorable::NoStore),
        ),
        (
            "request no-store",
            vec![("cache-control", "no-store")],
            200,
            ok.to_vec(),
            Err(Unstorable::NoStore),
        ),
        (
            "private",
            vec![],
            200,
            vec![("cache-control", "private, max-age=60")],
            Err(Unstorable::Private),
        ),
        (
            "qualified private",
            vec![],
            200,
            vec![("cache-control", "private=\"x\", max-age=60")],
            Ok(()),
        ),
        (
            "Vary: *",
            vec![],
            200,
            vec![("cache-control", "max-age=60"), ("vary", "a, *")],
            Err(Unstorable::VaryAll),
        ),
        ("a 404 by default", vec![], 404, vec![], Ok(())),
        (
            "a 302 without freshness",
            vec![],
            302,
            vec![],
            Err(Unstorable::NoFreshness(302)),
        ),
        ("a 302 with max-age", vec![], 302, ok.to_vec(), Ok(())),
        (
            "a 206",
            vec![],
            206,
            ok.to_vec(),
            Err(Unstorable::Status(206)),
        ),
        ("an unknown status, fresh", vec![], 599, ok.to_vec(), Ok(())),
        (
            "must-understand, an unknown status",
            vec![],
            599,
            vec![("cache-control", "max-age=60, must-understand")],
            Err(Unstorable::Status(599)),
        ),
        (
            "must-understand overrides no-store",
            vec![],
            200,
            vec![("cache-control", "max-age=60, must-understand, no-store")],
            Ok(()),
        ),
        (
            "authorization",
            vec![("authorization", "Basic eDp5")],
            200,
            ok.to_vec(),
            Err(Unstorable::Authorization),
        ),
        (
            "authorization, public",
            vec![("authorization", "Basic eDp5")],
            200,
            vec![("cache-control", "public")],
            Ok(()),
        ),
    ];
    for (what, rh, status, h, want) in rows {
        assert_eq!(
            storable(&req(&rh), &resp(status, &h), false),
            want,
            "{what}"
        );
    }
}

#[test]
fn targeted_fields_rule_in_origin_mode_only() {
    let h = [
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=60"),
    ];
    assert_eq!(storable(&req(&[]), &resp(200, &h), true), Ok(()));
    assert_eq!(
        storable(&req(&[]), &resp(200, &h), false),
        Err(Unstorable::NoStore)
    );
    let p = Policy::new(&req(&[]), &resp(200, &h), t0(), t0(), true);
    assert!(matches!(p.reuse(&req(&[]), t0()), Reuse::Fresh(_)));
    let s = [
        ("cache-control", "no-store"),
        ("surrogate-control", "max-age=60;pdist"),
    ];
    assert_eq!(storable(&req(&[]), &resp(200, &s), true), Ok(()));
    let other = [
        ("cache-control", "no-store"),
        ("surrogate-control", "max-age=60;cdn"),
    ];
    assert_eq!(
        storable(&req(&[]), &resp(200, &other), true),
        Err(Unstorable::NoStore)
    );
}

#[test]
fn hits_keep_date_and_say_their_age() {
    let d = date(-5);
    let p = policy(&[("cache-control", "max-age=60"), ("date", &d)]);
    let Reuse::Fresh(head) = p.reuse(&req(&[]), t0() + Duration::from_secs(2)) else {
        panic!("fresh")
    };
    assert_eq!(head.headers["date"], d.as_str());
    assert_eq!(head.headers["age"], "7");
    let undated = policy(&[("cache-control", "max-age=60")]);
    assert_eq!(
        undated.headers()["date"],
        date(0).as_str(),
        "a Date is added once, when received"
    );
}

#[test]
fn stale_on_error_within_its_bound_unless_forbidden() {
    let week = Duration::from_secs(7 * 24 * 3600);
    let at = |h: &[(&str, &str)], rh: &[(&str, &str)], after: u64| {
        policy(h)
            .stale_on_error(&req(rh).headers, t0() + Duration::from_secs(after), week)
            .is_some()
    };
    let ma = [("cache-control", "max-age=60")];
    assert!(at(&ma, &[], 3600), "an hour stale");
    assert!(!at(&ma, &[], 8 * 24 * 3600), "past the week");
    assert!(at(
        &[("cache-control", "max-age=60, stale-if-error=9999999")],
        &[],
        8 * 24 * 3600
    ));
    assert!(!at(
        &[("cache-control", "max-age=60, stale-if-error=10")],
        &[],
        100
    ));
    assert!(
        !at(&ma, &[("cache-control", "stale-if-error=10")], 100),
        "the client's bound"
    );
    for forbid in [
        "must-revalidate",
        "proxy-revalidate",
        "s-maxage=60",
        "no-cache",
    ] {
        let cc = format!("max-age=60, {forbid}");
        assert!(!at(&[("cache-control", &cc)], &[], 100), "{forbid}");
    }
}

#[test]
fn stale_while_revalidate_within_its_window_for_plain_requests() {
    let swr = [("cache-control", "max-age=60, stale-while-revalidate=30")];
    let at = |h: &[(&str, &str)], rh: &[(&str, &str)], after: u64| {
        policy(h)
            .while_revalidating(&req(rh).headers, t0() + Duration::from_secs(after))
            .is_some()
    };
    assert!(at(&swr, &[], 80));
    assert!(!at(&swr, &[], 100), "past the window");
    assert!(!at(&swr, &[("cache-control", "no-cache")], 80));
    assert!(!at(&swr, &[("cache-control", "max-age=5")], 80));
    assert!(
        !at(&[("cache-control", "max-age=60")], &[], 80),
        "not without the directive"
    );
    let must = [(
        "cache-control",
        "max-age=60, stale-while-revalidate=30, must-revalidate",
    )];
    assert!(!at(&must, &[], 80));
}

#[test]
fn vary_selects() {
    let en = req(&[("accept-language", "en")]);
    let p = Policy::new(
        &en,
        &resp(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        ),
        t0(),
        t0(),
        false,
    );
    assert!(matches!(p.reuse(&en, t0()), Reuse::Fresh(_)));
    assert!(matches!(
        p.reuse(&req(&[("accept-language", "fr")]), t0()),
        Reuse::Mismatch
    ));
    assert!(matches!(p.reuse(&req(&[]), t0()), Reuse::Mismatch));
}

#[test]
fn a_304_updates_what_it_validates() {
    let p = policy(&[
        ("cache-control", "max-age=0"),
        ("etag", "\"a\""),
        ("x-old", "1"),
        ("content-length", "5"),
    ]);
    let Reuse::Stale(cond) = p.reuse(
        &req(&[("if-none-match", "\"z\""), ("range", "bytes=0-1")]),
        t0(),
    ) else {
        panic!("stale")
    };
    assert_eq!(
        cond.headers["if-none-match"], "\"a\"",
        "the client's own condition is replaced"
    );
    assert!(!cond.headers.contains_key("range"));
    let ok = resp(
        304,
        &[
            ("etag", "\"a\""),
            ("cache-control", "max-age=60"),
            ("x-old", "2"),
            ("content-length", "0"),
        ],
    );
    assert!(p.validated_by(&ok.headers));
    assert!(!p.validated_by(&resp(304, &[("etag", "\"b\"")]).headers));
    assert!(!p.validated_by(&resp(304, &[("etag", "W/\"a\"")]).headers));
    assert!(p.validated_by(&resp(304, &[]).headers));
    let later = t0() + Duration::from_secs(100);
    let next = p.updated(&ok.headers, later, later);
    let h = next.headers();
    assert_eq!(h["x-old"], "2");
    assert_eq!(h["content-length"], "5", "Content-Length is never updated");
    assert!(matches!(next.reuse(&req(&[]), later), Reuse::Fresh(_)));
}

#[test]
fn records_round_trip_odd_bytes() {
    let mut r = resp(200, &[]);
    r.headers
        .insert("x", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
    let p = Policy::new(&req(&[]), &r, t0(), t0(), false);
    let back: Policy = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
    assert_eq!(back.headers()["x"].as_bytes(), b"caf\xe9");
}
