//! The cache's decisions, one row per case.

use std::time::SystemTime;

use http::{Method, StatusCode};

use super::*;

fn req(method: Method, headers: &[(&'static str, &'static str)]) -> http::request::Parts {
    let mut b = http::Request::builder()
        .method(method)
        .uri("http://origin.example/f");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn resp(status: u16, headers: &[(&'static str, &'static str)]) -> http::response::Parts {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn get(headers: &[(&'static str, &'static str)]) -> http::request::Parts {
    req(Method::GET, headers)
}

/// A stored response to a plain GET.
fn stored(headers: &[(&'static str, &'static str)]) -> Policy {
    stored_for(&get(&[]), headers)
}

fn stored_for(r: &http::request::Parts, headers: &[(&'static str, &'static str)]) -> Policy {
    let now = SystemTime::now();
    Policy::new(r, &resp(200, headers), now, now, false)
}

fn reused(request: &http::request::Parts, policies: &[Policy]) -> String {
    match reuse(request, policies, SystemTime::now()) {
        Reuse::Fresh { variant, .. } => format!("fresh {variant}"),
        Reuse::Stale { variant, request } => {
            let cond = |n: &str| request.headers.get(n).map_or("-", |v| v.to_str().unwrap());
            format!(
                "stale {variant} inm={} ims={}",
                cond("if-none-match"),
                cond("if-modified-since")
            )
        }
        Reuse::None => "none".into(),
    }
}

const LM: &str = "Tue, 01 Jan 2030 00:00:00 GMT";

#[test]
fn which_stored_response_answers() {
    let fresh = || stored(&[("cache-control", "max-age=3600"), ("etag", "\"a\"")]);
    let stale = || stored(&[("cache-control", "max-age=0"), ("etag", "\"a\"")]);
    let stale_lm = || stored(&[("cache-control", "max-age=0"), ("last-modified", LM)]);
    let en = get(&[("accept-language", "en")]);
    let fr = get(&[("accept-language", "fr")]);
    let vary = [
        ("cache-control", "max-age=3600"),
        ("vary", "Accept-Language"),
    ];
    let stale_lm_want = format!("stale 0 inm=- ims={LM}");
    let rows: Vec<(&str, http::request::Parts, Vec<Policy>, &str)> = vec![
        ("nothing stored", get(&[]), vec![], "none"),
        ("fresh", get(&[]), vec![fresh()], "fresh 0"),
        (
            "stale with an entity tag: revalidated on it",
            get(&[]),
            vec![stale()],
            "stale 0 inm=\"a\" ims=-",
        ),
        (
            "stale with a date: revalidated on it",
            get(&[]),
            vec![stale_lm()],
            &stale_lm_want,
        ),
        (
            "the client's no-cache: revalidated",
            get(&[("cache-control", "no-cache")]),
            vec![fresh()],
            "stale 0 inm=\"a\" ims=-",
        ),
        (
            "the client's max-age=0: revalidated",
            get(&[("cache-control", "max-age=0")]),
            vec![fresh()],
            "stale 0 inm=\"a\" ims=-",
        ),
        (
            "another Vary selection: none",
            fr.clone(),
            vec![stored_for(&en, &vary)],
            "none",
        ),
        (
            "the second variant's selection",
            fr.clone(),
            vec![stored_for(&en, &vary), stored_for(&fr, &vary)],
            "fresh 1",
        ),
        (
            "a fresh one before a stale one",
            get(&[]),
            vec![stale(), fresh()],
            "fresh 1",
        ),
        (
            "no-cache stored: revalidated every time",
            get(&[]),
            vec![stored(&[("cache-control", "no-cache"), ("etag", "\"a\"")])],
            "stale 0 inm=\"a\" ims=-",
        ),
    ];
    for (what, request, policies, want) in rows {
        assert_eq!(reused(&request, &policies), want, "{what}");
    }
}

fn revalidation(stored_etag: &'static str, answer: http::response::Parts) -> &'static str {
    let request = get(&[]);
    let policy = stored(&[("cache-control", "max-age=0"), ("etag", stored_etag)]);
    let Reuse::Stale { request: cond, .. } = reuse(&request, [&policy], SystemTime::now()) else {
        panic!("stale")
    };
    assert_eq!(cond.headers["if-none-match"], stored_etag);
    let now = SystemTime::now();
    match revalidated(&policy, &answer, now, now) {
        Revalidated::Unchanged(..) => "unchanged",
        Revalidated::Refetch => "refetch",
        Revalidated::Replaced => "replaced",
    }
}

#[test]
fn what_a_revalidation_means() {
    let rows = [
        (
            "304 with the same entity tag",
            resp(304, &[("etag", "\"a\"")]),
            "unchanged",
        ),
        (
            "304 without validators answers those sent",
            resp(304, &[("cache-control", "max-age=60")]),
            "unchanged",
        ),
        (
            "304 with another entity tag",
            resp(304, &[("etag", "\"b\"")]),
            "refetch",
        ),
        (
            "200: a new body",
            resp(200, &[("etag", "\"b\"")]),
            "replaced",
        ),
        ("an error", resp(500, &[]), "replaced"),
    ];
    for (what, answer, want) in rows {
        assert_eq!(revalidation("\"a\"", answer), want, "{what}");
    }
}

#[test]
fn unchanged_updates_the_policy() {
    let request = get(&[]);
    let policy = stored(&[("cache-control", "max-age=0"), ("etag", "\"a\"")]);
    let answer = resp(304, &[("etag", "\"a\""), ("cache-control", "max-age=3600")]);
    let now = SystemTime::now();
    let Revalidated::Unchanged(p, head) = revalidated(&policy, &answer, now, now) else {
        panic!("unchanged")
    };
    assert_eq!(head.status, StatusCode::OK);
    assert!(matches!(
        reuse(&request, [p.as_ref()], SystemTime::now()),
        Reuse::Fresh { .. }
    ));
}

#[test]
fn what_may_be_stored() {
    let max = 1000;
    let ok = [("cache-control", "max-age=60")];
    let rows: Vec<(&str, http::request::Parts, http::response::Parts, bool)> = vec![
        ("a fresh 200", get(&[]), resp(200, &ok), true),
        (
            "a 200 with a validator only (heuristic)",
            get(&[]),
            resp(200, &[("last-modified", LM)]),
            true,
        ),
        ("a 206", get(&[]), resp(206, &ok), false),
        (
            "a 200 with Content-Range",
            get(&[]),
            resp(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("content-range", "bytes 0-1/9"),
                ],
            ),
            false,
        ),
        ("a HEAD", req(Method::HEAD, &[]), resp(200, &ok), false),
        ("a POST", req(Method::POST, &[]), resp(200, &ok), false),
        (
            "no-store",
            get(&[]),
            resp(200, &[("cache-control", "no-store")]),
            false,
        ),
        (
            "private (a shared cache)",
            get(&[]),
            resp(200, &[("cache-control", "private, max-age=60")]),
            false,
        ),
        (
            "the client's no-store",
            get(&[("cache-control", "no-store")]),
            resp(200, &ok),
            false,
        ),
        (
            "an authorized request without public",
            get(&[("authorization", "Basic eDp5")]),
            resp(200, &ok),
            false,
        ),
        (
            "an authorized request, public",
            get(&[("authorization", "Basic eDp5")]),
            resp(200, &[("cache-control", "public, max-age=60")]),
            true,
        ),
        (
            "an authorized request, s-maxage",
            get(&[("authorization", "Basic eDp5")]),
            resp(200, &[("cache-control", "s-maxage=60")]),
            true,
        ),
        (
            "an authorized request, must-revalidate",
            get(&[("authorization", "Basic eDp5")]),
            resp(200, &[("cache-control", "max-age=60, must-revalidate")]),
            true,
        ),
        (
            "an authorized request, only max-age",
            get(&[("authorization", "Bearer t")]),
            resp(200, &[("cache-control", "max-age=60")]),
            false,
        ),
        (
            "a cookie set, even when public",
            get(&[]),
            resp(
                200,
                &[
                    ("cache-control", "public, max-age=60"),
                    ("set-cookie", "s=1"),
                ],
            ),
            false,
        ),
        (
            "longer than the largest object",
            get(&[]),
            resp(
                200,
                &[("cache-control", "max-age=60"), ("content-length", "1001")],
            ),
            false,
        ),
        (
            "as long as the largest object",
            get(&[]),
            resp(
                200,
                &[("cache-control", "max-age=60"), ("content-length", "1000")],
            ),
            true,
        ),
    ];
    for (what, request, answer, want) in rows {
        let now = SystemTime::now();
        let got = storable(&request, &answer, max, false, (now, now)).is_some();
        assert_eq!(got, want, "{what}");
    }
}

fn setup(trust_peers: bool, peers: bool, origin_info: bool, reverse: bool) -> Setup {
    Setup {
        trust_peers,
        peers,
        origin_info,
        reverse,
    }
}

#[test]
fn the_order_in_which_a_miss_looks() {
    use Step::*;
    let whole = get(&[]);
    let range = get(&[("range", "bytes=0-9")]);
    let head = req(Method::HEAD, &[]);
    let o = |vouch| Origin { vouch };
    let rows: Vec<(&str, &http::request::Parts, Setup, Plan)> = vec![
        ("a HEAD", &head, setup(true, true, true, false), Plan::Pass),
        (
            "open group",
            &whole,
            setup(false, true, true, false),
            Plan::Miss {
                target: Target::Whole,
                steps: vec![Coalesce, o(true)],
            },
        ),
        (
            "trusted peers",
            &whole,
            setup(true, true, true, false),
            Plan::Miss {
                target: Target::Whole,
                steps: vec![PeerClaim, Coalesce, Elect, o(true)],
            },
        ),
        (
            "trusted, but no peer alive",
            &whole,
            setup(true, false, true, false),
            Plan::Miss {
                target: Target::Whole,
                steps: vec![Coalesce, o(true)],
            },
        ),
        (
            "origins not asked for content information",
            &whole,
            setup(true, true, false, false),
            Plan::Miss {
                target: Target::Whole,
                steps: vec![PeerClaim, Coalesce, Elect, o(false)],
            },
        ),
        (
            "origin mode does not ask its backend",
            &whole,
            setup(false, false, true, true),
            Plan::Miss {
                target: Target::Whole,
                steps: vec![Coalesce, o(false)],
            },
        ),
        (
            "a range, open group",
            &range,
            setup(false, true, true, false),
            Plan::Miss {
                target: Target::Range,
                steps: vec![o(true)],
            },
        ),
        (
            "a range, trusted peers",
            &range,
            setup(true, true, true, false),
            Plan::Miss {
                target: Target::Range,
                steps: vec![PeerClaim, o(true)],
            },
        ),
        (
            "a range in origin mode",
            &range,
            setup(false, false, true, true),
            Plan::Miss {
                target: Target::Range,
                steps: vec![o(false)],
            },
        ),
    ];
    for (what, request, s, want) in rows {
        assert_eq!(miss(request, &s), want, "{what}");
    }
    assert_eq!(
        refetch_steps(Target::Whole, &setup(true, true, true, false)),
        vec![Coalesce, Elect, o(true)],
        "a refetch after a 304 that does not match asks no peer for a claim"
    );
}
