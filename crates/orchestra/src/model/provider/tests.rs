use std::time::{Duration, Instant};

use super::*;
use crate::model::context::ContextStack;
use crate::model::stub::{StubProvider, StubReply};
use crate::model::testing::{provider as config, request, tls, tls_trusting};

const KEY: &str = "sk-test-0123456789/abcdef";

fn provider(stub: &StubProvider) -> Provider {
    Provider::new(&config(&stub.url()), None, &tls()).unwrap()
}

fn keyed(stub: &StubProvider) -> Provider {
    Provider::new(&config(&stub.url()), Some(KEY.into()), &tls()).unwrap()
}

fn body(p: &Provider, text: &str) -> Bytes {
    let stack = ContextStack::new("Be good.", "", "", &[]);
    let r = request(text, 16);
    p.body(&stack.messages(None, &r.messages), &r).unwrap()
}

#[test]
fn endpoints_from_base_urls() {
    let e = Endpoint::parse("http://127.0.0.1:8080/v1").unwrap();
    assert_eq!(
        (e.https, e.host.as_str(), e.port, e.path.as_str()),
        (false, "127.0.0.1", 8080, "/v1/chat/completions")
    );
    let e = Endpoint::parse("https://api.example.com/v1/").unwrap();
    assert_eq!(
        (e.https, e.port, e.authority.as_str()),
        (true, 443, "api.example.com")
    );
    let e = Endpoint::parse("http://[::1]:9/v1").unwrap();
    assert_eq!((e.host.as_str(), e.authority.as_str()), ("::1", "[::1]:9"));
    assert!(Endpoint::parse("ftp://h/v1").is_err());
    assert!(Endpoint::parse("http://user@h/v1").is_err());
}

#[test]
fn the_body_carries_what_the_request_asks() {
    let p = Provider::new(&config("http://127.0.0.1:1/v1"), None, &tls()).unwrap();
    let stack = ContextStack::new("Be good.", "", "", &[]);
    let mut r = request("hi", 7);
    let wire = |r: &ChatRequest| {
        let bytes = p.body(&stack.messages(None, &r.messages), r).unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
    };
    let v = wire(&r);
    assert_eq!(v["model"], "stub-1");
    assert_eq!(v["max_tokens"], 7);
    assert_eq!(v["stream"], false);
    assert_eq!(v["messages"][0]["role"], "system");
    assert_eq!(v["messages"][1]["content"], "hi");
    assert!(v.get("temperature").is_none() && v.get("response_format").is_none());
    r.temperature = Some(0.25);
    r.json_schema = Some(r#"{"type":"object"}"#.into());
    let v = wire(&r);
    assert_eq!(v["temperature"], 0.25);
    assert_eq!(
        v["response_format"],
        serde_json::json!({"type": "json_schema", "json_schema":
            {"name": "reply", "schema": {"type": "object"}, "strict": true}})
    );
    let mut no_schema = config("http://127.0.0.1:1/v1");
    no_schema.json_schema = false;
    let p = Provider::new(&no_schema, None, &tls()).unwrap();
    let e = p.body(&stack.messages(None, &r.messages), &r).unwrap_err();
    assert!(
        matches!(&e, ModelFailure::InvalidRequest(m) if m.contains("cannot honour a JSON schema")),
        "{e}"
    );
}

#[tokio::test]
async fn an_answer_is_parsed() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        StubReply::answer("hello"),
        StubReply::Answer {
            text: "again".into(),
            finish_reason: "length".into(),
            prompt_tokens: 40,
            cached_tokens: Some(32),
            completion_tokens: 16,
        },
    ]);
    let p = provider(&stub);
    let x = p.complete(body(&p, "one")).await;
    assert_eq!(x.attempts, 1);
    let c = x.result.unwrap();
    assert_eq!(
        (c.text.as_str(), c.finish_reason.as_str()),
        ("hello", "stop")
    );
    assert_eq!(
        (c.prompt_tokens, c.cached_tokens, c.completion_tokens),
        (10, 0, 5),
        "absent cached_tokens is 0"
    );
    let c = p.complete(body(&p, "two")).await.result.unwrap();
    assert_eq!(
        (c.prompt_tokens, c.cached_tokens, c.completion_tokens),
        (40, 32, 16)
    );
    let seen = stub.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(seen[0].authorization, None, "no key, no header");
    assert_eq!(seen[1].json()["messages"][1]["content"], "two");
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([
        StubReply::RateLimited {
            retry_after_secs: 1,
        },
        StubReply::answer("ok"),
    ]);
    let p = provider(&stub);
    let started = Instant::now();
    let x = p.complete(body(&p, "x")).await;
    assert_eq!(x.result.unwrap().text, "ok");
    assert_eq!((x.attempts, stub.request_count()), (2, 2));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert!(
        x.provider < Duration::from_millis(900),
        "the wait is not provider time"
    );
}

#[tokio::test]
async fn a_retry_after_past_the_timeout_is_not_waited_for() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([StubReply::RateLimited {
        retry_after_secs: 60,
    }]);
    let mut c = config(&stub.url());
    c.timeout = Duration::from_millis(800);
    let p = Provider::new(&c, None, &tls()).unwrap();
    let started = Instant::now();
    let x = p.complete(body(&p, "x")).await;
    let e = x.result.unwrap_err();
    assert!(
        e.contains("rate limited (429)") && e.contains("timeout"),
        "{e}"
    );
    assert_eq!(x.attempts, 1);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "gave up at once"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_given_up() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([StubReply::server_error(), StubReply::answer("fine")]);
    let p = provider(&stub);
    let x = p.complete(body(&p, "x")).await;
    assert_eq!((x.result.unwrap().text.as_str(), x.attempts), ("fine", 2));

    stub.script(vec![StubReply::server_error(); 3]);
    let x = p.complete(body(&p, "x")).await;
    let e = x.result.unwrap_err();
    assert!(
        e.contains("500") && e.contains("stub: internal error") && e.contains("gave up after 3"),
        "{e}"
    );
    assert_eq!((x.attempts, stub.request_count()), (3, 5));
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([StubReply::Status {
        code: 400,
        body: r#"{"error":{"message":"context length exceeded"}}"#.into(),
    }]);
    let p = provider(&stub);
    let x = p.complete(body(&p, "x")).await;
    let e = x.result.unwrap_err();
    assert!(
        e.contains("400") && e.contains("context length exceeded"),
        "{e}"
    );
    assert_eq!((x.attempts, stub.request_count()), (1, 1));
}

#[tokio::test]
async fn malformed_replies_say_so_and_are_not_retried() {
    for (reply, says) in [
        (StubReply::Malformed, "not the JSON of a chat completion"),
        (StubReply::NoUsage, "no usage"),
        (StubReply::NoChoices, "no choices"),
    ] {
        let stub = StubProvider::start().await.unwrap();
        stub.script([reply]);
        let p = provider(&stub);
        let x = p.complete(body(&p, "x")).await;
        let e = x.result.unwrap_err();
        assert!(e.contains("malformed reply") && e.contains(says), "{e}");
        assert_eq!(stub.request_count(), 1);
    }
}

#[tokio::test]
async fn a_reply_over_the_bound_is_not_read() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([StubReply::Oversized]);
    let p = provider(&stub);
    let x = p.complete(body(&p, "x")).await;
    let e = x.result.unwrap_err();
    assert!(e.contains(&MAX_REPLY_BYTES.to_string()), "{e}");
    assert_eq!(x.attempts, 1);
}

#[tokio::test]
async fn the_timeout_bounds_a_reply_that_never_ends_and_a_slow_stream() {
    for reply in [
        StubReply::NeverEnds,
        StubReply::Trickle {
            every: Duration::from_millis(20),
        },
        StubReply::Slow {
            delay: Duration::from_secs(30),
            then: Box::new(StubReply::answer("late")),
        },
    ] {
        let stub = StubProvider::start().await.unwrap();
        stub.script([reply.clone()]);
        let mut c = config(&stub.url());
        c.timeout = Duration::from_millis(400);
        let p = Provider::new(&c, None, &tls()).unwrap();
        let started = Instant::now();
        let x = p.complete(body(&p, "x")).await;
        let took = started.elapsed();
        let e = x.result.unwrap_err();
        assert!(
            e.contains("no complete answer within its timeout"),
            "{reply:?}: {e}"
        );
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(900),
            "{reply:?}: {took:?}"
        );
        assert_eq!(x.attempts, 1);
    }
}

#[tokio::test]
async fn a_slow_reply_within_the_timeout_is_fine() {
    let stub = StubProvider::start().await.unwrap();
    stub.script([StubReply::Slow {
        delay: Duration::from_millis(100),
        then: Box::new(StubReply::answer("eventually")),
    }]);
    let p = provider(&stub);
    let x = p.complete(body(&p, "x")).await;
    assert_eq!(x.result.unwrap().text, "eventually");
    assert!(x.provider >= Duration::from_millis(100));
}

#[tokio::test]
async fn an_unreachable_provider_is_retried_with_back_off() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = Provider::new(
        &config(&format!("http://127.0.0.1:{port}/v1")),
        None,
        &tls(),
    )
    .unwrap();
    let started = Instant::now();
    let x = p.complete(Bytes::from_static(b"{}")).await;
    let e = x.result.unwrap_err();
    assert!(
        e.contains("cannot reach it") && e.contains("gave up after 3"),
        "{e}"
    );
    assert_eq!(x.attempts, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "200 ms + 400 ms of back-off"
    );
}

#[tokio::test]
async fn the_key_is_sent_and_never_handed_back() {
    let stub = StubProvider::start().await.unwrap();
    let p = keyed(&stub);
    assert!(!format!("{p:?}").contains("0123456789"), "{p:?}");

    stub.script([StubReply::EchoAuthorization]);
    let text = p.complete(body(&p, "x")).await.result.unwrap().text;
    assert_eq!(
        stub.requests()[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(text, format!("you sent: Bearer {REDACTED}"));

    stub.script([StubReply::EchoAuthorizationError]);
    let e = p.complete(body(&p, "x")).await.result.unwrap_err();
    assert!(
        e.contains("401") && e.contains(REDACTED) && !e.contains("0123456789"),
        "{e}"
    );

    // A body that escapes `/` as JSON may, and one long enough to be cut where the key is.
    let escaped = KEY.replace('/', "\\/");
    for body_text in [
        format!("oops {escaped}"),
        format!("{}{KEY}", "x".repeat(QUOTED_CHARS - 5)),
    ] {
        stub.script([StubReply::Status {
            code: 403,
            body: body_text,
        }]);
        let e = p.complete(body(&p, "x")).await.result.unwrap_err();
        assert!(!e.contains("0123456789") && !e.contains("sk-te"), "{e}");
    }
}

/// A CA and a certificate it signed for `names` (host names or IP addresses), expired in 2021
/// when `expired`.
fn ca_and_server(
    names: &[&str],
    expired: bool,
) -> (
    rustls::pki_types::CertificateDer<'static>,
    Arc<rustls::ServerConfig>,
) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &issuer).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    (ca_cert.der().clone(), Arc::new(server))
}

#[tokio::test]
async fn https_checks_the_certificate_and_the_name() {
    let (ca, server) = ca_and_server(&["127.0.0.1", "localhost"], false);
    let stub = StubProvider::start_tls(server).await.unwrap();
    assert!(stub.url().starts_with("https://127.0.0.1:"));
    let mut c = config(&stub.url());
    c.retries = 0;
    let trusted = Provider::new(&c, None, &tls_trusting(std::slice::from_ref(&ca))).unwrap();
    let x = trusted.complete(body(&trusted, "x")).await;
    assert_eq!(x.result.unwrap().text, "stub reply");

    let untrusted = Provider::new(&config(&stub.url()), None, &tls()).unwrap();
    let x = untrusted.complete(body(&untrusted, "x")).await;
    let e = x.result.unwrap_err();
    assert!(
        e.contains("TLS") && e.contains("not signed by an authority"),
        "{e}"
    );
    assert_eq!(x.attempts, 1, "a refused certificate is not retried");

    let (ca, server) = ca_and_server(&["other.example"], false);
    let stub = StubProvider::start_tls(server).await.unwrap();
    let c = config(&format!("https://localhost:{}/v1", stub.addr().port()));
    let wrong_name = Provider::new(&c, None, &tls_trusting(&[ca])).unwrap();
    let e = wrong_name
        .complete(body(&wrong_name, "x"))
        .await
        .result
        .unwrap_err();
    assert!(
        e.contains("TLS") && e.contains("is not valid for the name"),
        "{e}"
    );
    assert_eq!(stub.request_count(), 0);

    let (ca, server) = ca_and_server(&["127.0.0.1"], true);
    let stub = StubProvider::start_tls(server).await.unwrap();
    let expired = Provider::new(&config(&stub.url()), None, &tls_trusting(&[ca])).unwrap();
    let e = expired
        .complete(body(&expired, "x"))
        .await
        .result
        .unwrap_err();
    assert!(e.contains("TLS") && e.contains("expired"), "{e}");
}
