//! The trust boundary, tried as an attacker would (docs/security.md): each
//! test sends what a hostile client (or a misbehaving bot) would against the
//! real `statehold` binary in front of a recording bot that stores exactly
//! what reaches it, and asserts what reached the bot, what the client got
//! back, and what is stored. Test names are cited by docs/security.md.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use support::recorder::{answer, json_answer, Recorded, Recorder};
use support::{Config, Statehold};

const TG_SECRET: &str = "tg-secret-token";

/// statehold in front of `bot` with these routes and extra `[server]` lines.
fn proxy(bot: &Recorder, dir: &std::path::Path, routes: &str, server_extra: &str) -> Statehold {
    let mut config = Config::new(bot.port, dir);
    config.routes = Some(routes.to_string());
    config.server_extra = server_extra.to_string();
    Statehold::start(config)
}

fn body_mode_proxy(bot: &Recorder, dir: &std::path::Path, routes: &str) -> Statehold {
    let mut config = Config::new(bot.port, dir);
    config.routes = Some(routes.to_string());
    config.mode = "body";
    Statehold::start(config)
}

const TELEGRAM_VERIFIED: &str = r#"[[route]]
path = "/telegram"
namespace = "tg"
preset = "telegram"
[route.verify]
secret = "tg-secret-token"
"#;

const TELEGRAM_PLAIN: &str = r#"[[route]]
path = "/telegram"
namespace = "tg"
preset = "telegram"
"#;

/// Sends raw bytes and parses the answer.
fn raw(sh: &Statehold, bytes: &[u8]) -> support::Response {
    support::raw_request(sh.addr(), bytes).expect("statehold answers")
}

fn post(sh: &Statehold, path: &str, headers: &[(&str, &str)], body: &str) -> support::Response {
    support::post_json(sh.addr(), path, body, headers).expect("statehold answers")
}

fn tg(update_id: u64, chat: &str, text: &str) -> String {
    format!(
        r#"{{"update_id":{update_id},"message":{{"message_id":1,"chat":{{"id":{chat},"type":"private"}},"from":{{"id":1}},"text":"{text}"}}}}"#
    )
}

/// The bot reports this state (header mode) on every answer.
fn reporting(state: &'static str) -> impl Fn(&Recorded) -> Vec<u8> + Send + Sync {
    move |_| json_answer(r#"{"ok":true}"#, &[("X-Statehold-State", state)])
}

// ------------------------------------------------------------ finding 1

#[test]
fn path_spellings_cannot_bypass_a_routes_signature_check() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = proxy(&bot, dir.path(), TELEGRAM_VERIFIED, "");
    let body = tg(1, "42", "hi");
    for path in [
        "/%74elegram",
        "/%74%65%6c%65%67%72%61%6d",
        "//telegram",
        "/./telegram",
        "/x/../telegram",
        "/%2e%2e/telegram",
        "/TELEGRAM",
        "/Telegram/",
    ] {
        let r = post(&sh, path, &[], &body);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "unverified", "{path}");
    }
    assert_eq!(bot.count(), 0, "no spelling reached the bot unverified");

    // Paths servers disagree on are refused outright, verified or not.
    for path in [
        "/tele%2Fgram",
        "/%2ftelegram",
        "/telegram%5c",
        "/tele%00gram",
        "/telegram%zz",
    ] {
        let r = post(
            &sh,
            path,
            &[("x-telegram-bot-api-secret-token", TG_SECRET)],
            &body,
        );
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "bad_request");
    }
    assert_eq!(bot.count(), 0);
    assert!(
        sh.metric_or_zero(
            r#"statehold_requests_total{route="unmatched",outcome="bad_request",code="4xx"}"#
        ) >= 5.0
    );
    assert!(sh.logs().contains("the request path cannot be normalized"));

    // A verified request spelled oddly is forwarded on the path it matched.
    let r = post(
        &sh,
        "//telegram",
        &[("x-telegram-bot-api-secret-token", TG_SECRET)],
        &body,
    );
    assert_eq!(r.status, 200);
    let seen = bot.last();
    assert_eq!(seen.target, "/telegram");
    assert_eq!(seen.header("x-statehold-key"), Some("tg:42"));
    assert_eq!(seen.header("x-statehold-verified"), Some("telegram"));
}

#[test]
fn unmatched_reject_keeps_other_paths_from_the_bot() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = proxy(
        &bot,
        dir.path(),
        TELEGRAM_VERIFIED,
        "unmatched = \"reject\"",
    );
    for path in ["/admin", "/", "/telegramx", "/debug/vars?x=1"] {
        let r = post(&sh, path, &[], "{}");
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"], "not_found");
    }
    assert_eq!(bot.count(), 0);
    assert_eq!(
        sh.metric(r#"statehold_requests_total{route="unmatched",outcome="not_found",code="4xx"}"#),
        4.0
    );
}

// ------------------------------------------------------------ finding 2

#[test]
fn underscore_spellings_of_reserved_headers_never_reach_either_side() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = proxy(&bot, dir.path(), TELEGRAM_PLAIN, "");
    let forged = statehold::contract::encode_state(br#"{"step":"paid"}"#);
    let headers = [
        ("X_Statehold_State", forged.as_str()),
        ("X-Statehold_Status", "restored"),
        ("x_statehold_key", "tg:1"),
        ("X_STATEHOLD_VERIFIED", "telegram"),
    ];
    for path in ["/telegram", "/elsewhere"] {
        let r = post(&sh, path, &headers, &tg(1, "7", "hi"));
        assert_eq!(r.status, 200, "{path}");
        let seen = bot.last();
        // What a WSGI server would hand the bot as HTTP_X_STATEHOLD_*.
        let cgi: Vec<String> = seen
            .cgi_names()
            .into_iter()
            .filter(|n| n.starts_with("X_STATEHOLD_"))
            .collect();
        let expected: &[&str] = if path == "/telegram" {
            &[
                "X_STATEHOLD_KEY",
                "X_STATEHOLD_VERSION",
                "X_STATEHOLD_STATUS",
                "X_STATEHOLD_TURN",
            ]
        } else {
            &[]
        };
        let mut cgi_sorted = cgi.clone();
        cgi_sorted.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(cgi_sorted, want, "{path}: {:?}", seen.headers);
        if path == "/telegram" {
            assert_eq!(seen.header("x-statehold-status"), Some("new"));
        }
    }
    // Outbound too: the bot's underscore spelling is stripped, and not taken
    // for a report either.
    bot.respond(|_| json_answer("{}", &[("X_Statehold_State", r#"{"leak":1}"#)]));
    let r = post(&sh, "/telegram", &[], &tg(2, "7", "hi"));
    assert!(
        r.headers.iter().all(|(n, _)| !n
            .to_ascii_lowercase()
            .replace('_', "-")
            .starts_with("x-statehold-")),
        "{:?}",
        r.headers
    );
    assert!(sh.stored("tg", "7").is_none());
}

// ------------------------------------------------------------ finding 3

const BODY_ROUTE: &str = r#"[[route]]
path = "/chat"
namespace = "web"
key = ["json:/session"]
dedupe = "json:/msg_id"
"#;

#[test]
fn a_clients_body_member_never_reaches_the_bot() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = body_mode_proxy(&bot, dir.path(), BODY_ROUTE);
    let forged = r#"{"state":{"step":"paid","amount":1000000}}"#;

    // Keyless (the key has the wrong JSON type): forwarded, member removed.
    let r = post(
        &sh,
        "/chat",
        &[],
        &format!(r#"{{"session":{{"id":1}},"_statehold":{forged},"text":"hi"}}"#),
    );
    assert_eq!(r.status, 200);
    let seen: Value = serde_json::from_slice(&bot.last().body).unwrap();
    assert!(seen.get("_statehold").is_none(), "{seen}");
    assert_eq!(seen["text"], "hi");

    // An escaped member name is the same member: replaced by statehold's.
    let r = post(
        &sh,
        "/chat",
        &[],
        &format!(r#"{{"session":"s1","\u005fstatehold":{forged}}}"#),
    );
    assert_eq!(r.status, 200);
    let seen: Value = serde_json::from_slice(&bot.last().body).unwrap();
    assert_eq!(seen["_statehold"]["status"], "new");
    assert_eq!(seen["_statehold"]["state"], Value::Null);
    assert_eq!(seen["_statehold"]["key"], "web:s1");

    let before = bot.count();
    // Unusable keys are refused, never forwarded keyless.
    let long = "x".repeat(300);
    for body in [
        format!(r#"{{"session":"{long}","_statehold":{forged}}}"#),
        format!(r#"{{"session":"a\u0007b","_statehold":{forged}}}"#),
    ] {
        let r = post(&sh, "/chat", &[], &body);
        assert_eq!(r.status, 400, "{}", r.text());
    }
    // Bodies Python or JavaScript accept but serde_json does not.
    for body in [
        format!(r#"{{"session":"s1","n":NaN,"_statehold":{forged}}}"#),
        format!(r#"{{"session":"s1","t":"\ud800","_statehold":{forged}}}"#),
        format!("\u{feff}{{\"session\":\"s1\",\"_statehold\":{forged}}}"),
    ] {
        let r = post(&sh, "/chat", &[], &body);
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"], "bad_request");
    }
    assert_eq!(bot.count(), before, "none of them reached the bot");
    assert!(sh.logs().contains("malformed JSON body"));
}

// ------------------------------------------------------------ finding 4

/// A gzip member holding `data` in one stored deflate block.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    let crc = !crc;
    let len = data.len() as u16;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[test]
fn state_never_leaks_to_the_client_in_body_mode() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = body_mode_proxy(&bot, dir.path(), BODY_ROUTE);
    bot.respond(|_| {
        json_answer(
            r#"{"reply":"ok","_statehold":{"state":{"pin":"4321"}}}"#,
            &[],
        )
    });
    let r = post(&sh, "/chat", &[], r#"{"session":"s2","msg_id":1}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"reply": "ok"}));
    assert_eq!(sh.stored("web", "s2").unwrap()["version"], 1);
    assert_eq!(
        bot.last().header("accept-encoding"),
        Some("identity"),
        "statehold asks for plain answers"
    );

    let saves_rejected = || sh.metric(r#"statehold_state_saves_total{result="rejected"}"#);
    let rejected_before = saves_rejected();
    // A bot that compresses anyway: the report cannot be stripped, so the
    // answer is withheld (502), nothing stored, counted, logged.
    bot.respond(|_| {
        let body = gzip_stored(br#"{"reply":"ok","_statehold":{"state":{"pin":"9999"}}}"#);
        answer(
            "HTTP/1.1 200 OK",
            "application/json",
            &body,
            &[("content-encoding", "gzip")],
        )
    });
    let r = post(&sh, "/chat", &[], r#"{"session":"s2","msg_id":2}"#);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.text().contains("9999"));
    // JSON a lenient parser reads but serde_json does not.
    bot.respond(|_| {
        json_answer(
            r#"{"reply":NaN,"_statehold":{"state":{"pin":"8888"}}}"#,
            &[],
        )
    });
    let r = post(&sh, "/chat", &[], r#"{"session":"s2","msg_id":3}"#);
    assert_eq!(r.status, 502);
    assert!(!r.text().contains("8888") && !r.text().contains("_statehold"));
    assert_eq!(saves_rejected(), rejected_before + 2.0);
    assert!(sh.logs().contains("cannot be stripped of its state report"));
    let stored = sh.stored("web", "s2").unwrap();
    assert_eq!(
        (stored["version"].clone(), stored["state"].clone()),
        (json!(1), json!({"pin": "4321"})),
        "snapshot intact"
    );

    // Keyless request: the member is stripped from the answer too.
    bot.respond(|_| json_answer(r#"{"reply":"ok","_statehold":{"clear":true}}"#, &[]));
    let r = post(&sh, "/chat", &[], r#"{"text":"no session"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"reply": "ok"}));
    assert!(sh
        .logs()
        .contains("state reported for a request without a conversation key"));
    assert_eq!(sh.stored("web", "s2").unwrap()["version"], 1);
}

// ------------------------------------------------------------ finding 5

#[test]
fn an_unverified_route_on_a_public_listener_needs_an_explicit_none() {
    let dir = support::temp_dir();
    let public = |routes: &str| {
        let path = dir.path().join(format!("c{}.toml", routes.len()));
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"0.0.0.0:0\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[store]\npath = \"{}\"\n{routes}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
                dir.path().join("db").display(),
            ),
        )
        .unwrap();
        path
    };
    let unverified = public(TELEGRAM_PLAIN);
    for cmd in ["serve", "check-config"] {
        let out = support::run_statehold(&[cmd, "--config", unverified.to_str().unwrap()], &[]);
        support::assert_exit(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("route[0].verify") && err.contains("not loopback"),
            "{err}"
        );
    }
    let explicit = public(&format!("{TELEGRAM_PLAIN}verify = \"none\"\n"));
    let out = support::run_statehold(
        &["check-config", "--config", explicit.to_str().unwrap()],
        &[],
    );
    support::assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("warning: route[0] (/telegram): verify = \"none\""));

    // The shipped config is safe as it is: loopback.
    let shipped: toml::Value = toml::from_str(include_str!("../../config.toml")).unwrap();
    assert!(shipped["server"]["listen"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

// ------------------------------------------------------------ finding 6

#[test]
fn a_recorded_answer_is_only_for_a_byte_identical_redelivery() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = proxy(&bot, dir.path(), TELEGRAM_PLAIN, "");
    bot.respond(|req| {
        json_answer(
            &format!(r#"{{"answered":{}}}"#, req.body.len()),
            &[("X-Statehold-State", r#"{"step":1}"#)],
        )
    });
    let first = post(&sh, "/telegram", &[], &tg(7, "55", "my PIN is 1234"));
    assert_eq!(first.status, 200);
    let again = post(&sh, "/telegram", &[], &tg(7, "55", "my PIN is 1234"));
    assert_eq!(
        (again.status, again.body.clone()),
        (200, first.body.clone())
    );
    assert_eq!(bot.count(), 1);
    assert_eq!(sh.metric("statehold_dedupe_hits_total"), 1.0);

    // Someone who knows the chat and update id but not the message.
    let probe = post(&sh, "/telegram", &[], &tg(7, "55", "what did I say?"));
    assert_eq!(probe.status, 409);
    assert_eq!(probe.json()["error"], "dedupe_mismatch");
    assert_ne!(probe.body, first.body);
    assert_eq!(bot.count(), 1, "the bot did not run it");
    assert_eq!(sh.metric("statehold_dedupe_mismatch_total"), 1.0);
    assert!(sh.logs().contains("known dedupe id with a different body"));
    assert_eq!(
        sh.stored("tg", "55").unwrap()["version"],
        1,
        "snapshot intact"
    );

    // Only 2xx answers are recorded: a 429 does not block the update.
    bot.respond(|_| {
        answer(
            "HTTP/1.1 429 Too Many Requests",
            "application/json",
            b"{}",
            &[],
        )
    });
    assert_eq!(post(&sh, "/telegram", &[], &tg(8, "55", "x")).status, 429);
    bot.respond(|_| json_answer(r#"{"ok":true}"#, &[]));
    assert_eq!(post(&sh, "/telegram", &[], &tg(8, "55", "x")).status, 200);
    assert_eq!(bot.count(), 3, "the redelivery after a 429 reached the bot");
}

// ------------------------------------------------------------ finding 7

#[test]
fn twilio_signatures_are_checked() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let routes = r#"[[route]]
path = "/twilio"
namespace = "sms"
preset = "twilio"
[route.verify]
secret = "twilio-auth-token"
public_url = "https://bot.example.com/twilio"
"#;
    let sh = proxy(&bot, dir.path(), routes, "");
    let body = "MessageSid=SM1&AccountSid=AC1&From=%2B14158675310&To=%2B18005551212&Body=Hi";
    let sig = statehold::verify::twilio_signature(
        b"twilio-auth-token",
        "https://bot.example.com/twilio",
        None,
        body.as_bytes(),
    )
    .unwrap();
    let send = |sig: &str, body: &str| {
        support::request(
            sh.addr(),
            "POST",
            "/twilio",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-twilio-signature", sig),
            ],
            body.as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(send("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", body).status, 401);
    assert_eq!(
        send(&sig, &body.replace("Hi", "Hj")).status,
        401,
        "a tampered body"
    );
    assert_eq!(bot.count(), 0);
    let r = send(&sig, body);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = bot.last();
    assert_eq!(seen.header("x-statehold-key"), Some("sms:+14158675310"));
    assert_eq!(seen.header("x-statehold-verified"), Some("twilio"));
    assert_eq!(
        seen.body_text(),
        body,
        "the signed body reaches the bot unchanged"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn discord_signatures_are_checked() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    // RFC 8032 §7.1 TEST 1 key pair.
    let seed: Vec<u8> = (0..32)
        .map(|i| {
            u8::from_str_radix(
                &"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
                    [2 * i..2 * i + 2],
                16,
            )
            .unwrap()
        })
        .collect();
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let routes = r#"[[route]]
path = "/discord"
namespace = "dc"
preset = "discord"
[route.verify]
public_key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
"#;
    let sh = proxy(&bot, dir.path(), routes, "");
    let body = r#"{"type":2,"id":"786008729715212338","member":{"user":{"id":"53908232506183680"}},"channel_id":"645027906669510667"}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sig = hex(pair
        .sign(&[now.as_bytes(), body.as_bytes()].concat())
        .as_ref());
    let send = |sig: &str, ts: &str, body: &str| {
        post(
            &sh,
            "/discord",
            &[("x-signature-ed25519", sig), ("x-signature-timestamp", ts)],
            body,
        )
    };
    assert_eq!(send(&"0".repeat(128), &now, body).status, 401);
    assert_eq!(send(&sig, &now, &body.replace("786", "787")).status, 401);
    assert_eq!(
        send(&sig, "1700000000", body).status,
        401,
        "stale timestamp"
    );
    assert_eq!(post(&sh, "/discord", &[], body).status, 401, "no signature");
    assert_eq!(bot.count(), 0);
    let r = send(&sig, &now, body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        bot.last().header("x-statehold-key"),
        Some("dc:53908232506183680")
    );
    assert_eq!(bot.last().header("x-statehold-verified"), Some("discord"));
}

// ------------------------------------------------------------ finding 8

#[test]
fn metas_subscription_handshake_reaches_the_bot_without_state() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let routes = r#"[[route]]
path = "/whatsapp"
namespace = "wa"
preset = "whatsapp"
[route.verify]
secret = "app-secret"
verify_token = "hub-token"
"#;
    let sh = proxy(&bot, dir.path(), routes, "");
    bot.respond(|req| {
        let challenge = req
            .target
            .split("hub.challenge=")
            .nth(1)
            .unwrap_or("")
            .split('&')
            .next()
            .unwrap_or("")
            .to_string();
        answer("HTTP/1.1 200 OK", "text/plain", challenge.as_bytes(), &[])
    });
    // A body on a handshake (which has none) is not forwarded.
    let r = support::request(
        sh.addr(),
        "GET",
        "/whatsapp?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=hub-token",
        &[("content-type", "application/json")],
        br#"{"_statehold":{"state":{"step":"paid"}}}"#,
    )
    .unwrap();
    assert_eq!((r.status, r.text()), (200, "1158201444".to_string()));
    let seen = bot.last();
    assert_eq!(seen.method, "GET");
    assert!(seen.body.is_empty(), "{}", seen.body_text());
    assert!(
        seen.headers
            .iter()
            .all(|(n, _)| !n.to_ascii_lowercase().starts_with("x-statehold-")),
        "no state on a handshake"
    );
    let r = support::get(
        sh.addr(),
        "/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess",
    )
    .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(bot.count(), 1);
    // Webhooks themselves still need the signature.
    let r = post(
        &sh,
        "/whatsapp",
        &[],
        r#"{"object":"whatsapp_business_account","entry":[]}"#,
    );
    assert_eq!(r.status, 401);
    assert_eq!(bot.count(), 1);
    assert_eq!(
        sh.metric(r#"statehold_requests_total{route="wa",outcome="handshake",code="2xx"}"#),
        1.0
    );
}

// ------------------------------------------------------------ finding 9

#[test]
fn slack_form_payloads_are_keyed() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let routes = r#"[[route]]
path = "/slack"
namespace = "sl"
preset = "slack"
[route.verify]
secret = "slack-signing-secret"
"#;
    let sh = proxy(&bot, dir.path(), routes, "");
    let send = |content_type: &str, body: &str| {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let sig = format!(
            "v0={}",
            statehold::verify::hmac_hex(
                b"slack-signing-secret",
                &[b"v0:", ts.as_bytes(), b":", body.as_bytes()]
            )
        );
        support::request(
            sh.addr(),
            "POST",
            "/slack",
            &[
                ("content-type", content_type),
                ("x-slack-request-timestamp", &ts),
                ("x-slack-signature", &sig),
            ],
            body.as_bytes(),
        )
        .unwrap()
    };
    let form = "application/x-www-form-urlencoded";
    // A slash command.
    let r = send(form, "command=%2Fweather&text=94070&user_id=U2147483697&channel_id=C2147483705&trigger_id=13345224609.738474920.8088930838d88f008e0");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(bot.last().header("x-statehold-key"), Some("sl:U2147483697"));
    // An interactivity payload: JSON inside the `payload` field.
    let payload =
        r#"{"type":"block_actions","user":{"id":"U0CA5"},"trigger_id":"1234.5678","actions":[]}"#;
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", payload)
        .finish();
    let r = send(form, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(bot.last().header("x-statehold-key"), Some("sl:U0CA5"));
    // The Events API, as before.
    let r = send(
        "application/json",
        r#"{"event":{"type":"message","channel":"C024BE91L","user":"U2147483697","text":"hi"},"type":"event_callback","event_id":"Ev0PV52K21"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(bot.last().header("x-statehold-key"), Some("sl:U2147483697"));
    assert_eq!(bot.count(), 3);
}

// ------------------------------------------------------------ finding 10

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap()
}

/// Opens `n` connections that each send a head declaring 1 MiB and all but
/// the last byte of the body, holds them all open at once, then finishes
/// them; returns the statuses.
fn hold_big_bodies(sh: &Statehold, path: &str, headers: &str, n: usize) -> Vec<u16> {
    const MIB: usize = 1 << 20;
    let body = std::sync::Arc::new(vec![b'a'; MIB]);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
    let addr = sh.addr();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (body, barrier) = (std::sync::Arc::clone(&body), std::sync::Arc::clone(&barrier));
            let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {MIB}\r\n{headers}\r\n");
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let sent = s.write_all(head.as_bytes()).and_then(|_| s.write_all(&body[..MIB - 1]));
                barrier.wait();
                if sent.is_ok() {
                    let _ = s.write_all(&body[MIB - 1..]);
                }
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer);
                support::parse_response(&answer).map(|r| r.status).unwrap_or(0)
            })
        })
        .collect();
    barrier.wait();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn unauthenticated_bodies_cannot_exhaust_memory() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let routes = format!("{TELEGRAM_VERIFIED}\n[[route]]\npath = \"/open\"\nnamespace = \"op\"\nkey = [\"json:/id\"]\nverify = \"none\"\n");
    let sh = proxy(&bot, dir.path(), &routes, "max_connections = 1024");
    let pid = sh.proc.pid();

    // Forged Telegram webhooks are refused from their head: no body is read.
    let statuses = hold_big_bodies(&sh, "/telegram", "", 300);
    assert!(statuses.iter().all(|&s| s == 401 || s == 0), "{statuses:?}");
    assert!(statuses.iter().filter(|&&s| s == 401).count() >= 290);
    let after_forged = peak_rss(pid);

    // An unverified route: bodies are buffered, but never beyond the budget.
    let statuses = hold_big_bodies(&sh, "/open", "", 300);
    let shed = statuses.iter().filter(|&&s| s == 503).count();
    assert!(
        shed >= 200,
        "most of 300 MiB was refused past the 32 MiB budget: {statuses:?}"
    );
    let peak = peak_rss(pid);
    eprintln!("peak RSS: {} MB after 300 forged 1 MiB webhooks, {} MB after 300 unverified ones; {shed} shed", after_forged >> 20, peak >> 20);
    assert!(peak < 100 << 20, "peak RSS {} MB", peak >> 20);
    assert_eq!(
        bot.requests()
            .iter()
            .filter(|r| r.path() == "/telegram")
            .count(),
        0
    );
    assert!(
        sh.metric(r#"statehold_requests_total{route="op",outcome="overloaded",code="5xx"}"#)
            >= 200.0
    );
    assert_eq!(
        sh.metric("statehold_buffered_bytes"),
        0.0,
        "everything given back"
    );
    assert!(sh.logs().contains("server.max_buffered_bytes reached"));
}

// ------------------------------------------------------------ finding 11

#[test]
fn redis_keys_of_different_conversations_never_collide() {
    let _serial = support::serial(module_path!());
    let dir = support::temp_dir();
    let redis = support::RedisServer::start(dir.path(), false);
    let bot = Recorder::start();
    let mut config = Config::new(bot.port, dir.path());
    config.redis = Some(redis.port);
    config.routes = Some(
        "[[route]]\npath = \"/chat\"\nnamespace = \"web\"\nkey = [\"header:x-session\"]\ndedupe = \"header:x-delivery\"\n".into(),
    );
    let sh = Statehold::start(config);
    bot.respond(|req| {
        json_answer(
            &format!(r#"{{"for":"{}"}}"#, req.header("x-session").unwrap_or("")),
            &[],
        )
    });
    let a = post(
        &sh,
        "/chat",
        &[("x-session", "x}:d:evil"), ("x-delivery", "123")],
        "{}",
    );
    assert_eq!(a.json()["for"], "x}:d:evil");
    let b = post(
        &sh,
        "/chat",
        &[("x-session", "x"), ("x-delivery", "evil}:d:123")],
        "{}",
    );
    assert_eq!(
        b.json()["for"],
        "x",
        "never another session's recorded answer"
    );
    assert_eq!(bot.count(), 2);
    let keys = support::redis_cmd(redis.port, "KEYS *").unwrap();
    assert!(keys.contains("x%7D:d:evil"), "{keys}");
}

// ------------------------------------------------------------ finding 12

#[test]
fn bare_lf_heads_are_refused() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = proxy(&bot, dir.path(), TELEGRAM_PLAIN, "");
    for path in ["/telegram", "/other"] {
        let req = format!("POST {path} HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = raw(&sh, req.as_bytes());
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.header("connection"), Some("close"));
        let req = format!("POST {path} HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\r\n{{}}");
        assert_eq!(raw(&sh, req.as_bytes()).status, 400, "{path}: one bare LF");
    }
    assert_eq!(bot.count(), 0, "nothing reached the bot, nothing smuggled");
    assert!(sh.logs().contains("request head lines must end in CRLF"));
}

// ------------------------------------------------------------ finding 13

#[test]
fn ambiguous_keys_are_refused_and_numbers_are_canonical() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let routes = format!("{TELEGRAM_PLAIN}\n[[route]]\npath = \"/sms\"\nnamespace = \"sms\"\nkey = [\"form:From\"]\n");
    let sh = proxy(&bot, dir.path(), &routes, "");
    let form = |body: &str| {
        support::request(
            sh.addr(),
            "POST",
            "/sms",
            &[("content-type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(form("From=victim&From=attacker&Body=x").status, 400);
    assert_eq!(form("From=victim&Fr%6Fm=attacker").status, 400);
    assert_eq!(bot.count(), 0);
    assert!(sh.logs().contains("appears more than once"));

    bot.respond(reporting(r#"{"n":1}"#));
    for (update, id) in [(1, "1111111"), (2, "1111111.0"), (3, "1.111111e6")] {
        let r = post(&sh, "/telegram", &[], &tg(update, id, "x"));
        assert_eq!(r.status, 200);
        assert_eq!(
            bot.last().header("x-statehold-key"),
            Some("tg:1111111"),
            "{id}"
        );
    }
    assert_eq!(
        sh.stored("tg", "1111111").unwrap()["version"],
        3,
        "one conversation"
    );
    let r = post(&sh, "/telegram", &[], &tg(4, "1.5", "x"));
    assert_eq!(r.status, 400);
    assert_eq!(bot.count(), 3);
}

// ------------------------------------------------------------ finding 14

#[test]
fn data_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let mut config = Config::new(bot.port, dir.path());
    config.store_extra = format!(
        "path = \"{}\"",
        dir.path().join("private/data/statehold.db").display()
    );
    config.routes = Some(TELEGRAM_PLAIN.into());
    // store_extra comes after the default path line: use a fresh backend block.
    let text_fix = |c: &Config| {
        c.render().replacen(
            &format!("path = \"{}\"", dir.path().join("statehold.db").display()),
            "",
            1,
        )
    };
    let path = dir.path().join("custom.toml");
    std::fs::write(&path, text_fix(&config)).unwrap();
    let log = dir.path().join("custom.log");
    let mut child = std::process::Command::new(support::statehold_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let db = dir.path().join("private/data/statehold.db");
    let (_, admin) = support::wait_serving(&log, 0, || child.try_wait().ok().flatten()).unwrap();
    support::wait_until("database file", || {
        db.exists() && support::get(admin, "/healthz").is_ok()
    });
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let modes = (
        mode(&db),
        mode(&dir.path().join("private/data")),
        mode(&dir.path().join("private")),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(modes, (0o600, 0o700, 0o700));
}

#[test]
fn forwarding_headers_come_only_from_trusted_proxies() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let forged = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
        ("x-forwarded-proto", "https"),
    ];
    let sh = proxy(&bot, dir.path(), TELEGRAM_PLAIN, "");
    post(&sh, "/other", &forged, "{}");
    let seen = bot.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert!(seen.header("x-real-ip").is_none() && seen.header("forwarded").is_none());

    let dir2 = support::temp_dir();
    let trusted = proxy(
        &bot,
        dir2.path(),
        TELEGRAM_PLAIN,
        "trusted_proxies = [\"127.0.0.0/8\"]",
    );
    post(&trusted, "/other", &forged, "{}");
    let seen = bot.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("x-real-ip"), Some("203.0.113.9"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[test]
fn bot_failures_get_a_fixed_short_body() {
    let dir = support::temp_dir();
    let mut config = Config::new(support::free_port(), dir.path()); // nobody listens there
    config.routes = Some(TELEGRAM_PLAIN.into());
    let sh = Statehold::start(config);
    for path in ["/telegram", "/other"] {
        let r = post(&sh, path, &[], &tg(1, "9", "x"));
        assert_eq!(r.status, 502);
        assert_eq!(
            r.json(),
            json!({"error": "upstream_error", "message": "the bot is unreachable"}),
            "{path}"
        );
    }
    assert!(
        sh.logs()
            .contains("the bot is unreachable: bot unreachable"),
        "details go to the log"
    );
}

#[test]
fn bot_answers_with_many_headers_or_http_1_0_pass_through() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = proxy(&bot, dir.path(), TELEGRAM_PLAIN, "");
    bot.respond(|_| {
        let extra: Vec<(String, String)> = (0..150)
            .map(|i| (format!("x-h{i}"), i.to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = extra
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        json_answer(r#"{"ok":true}"#, &refs)
    });
    let r = post(&sh, "/telegram", &[], &tg(1, "3", "x"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-h149"), Some("149"));

    // An HTTP/1.0 bot (Python's http.server): statehold still speaks 1.1.
    bot.respond(|_| answer("HTTP/1.0 200 OK", "application/json", br#"{"ok":1}"#, &[]));
    for path in ["/telegram", "/other"] {
        let mut s = TcpStream::connect(sh.addr()).unwrap();
        let body = tg(2, "3", "x");
        write!(s, "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200", "{path}");
    }
}

#[test]
fn slack_timestamps_cannot_overflow() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let routes = "[[route]]\npath = \"/slack\"\nnamespace = \"sl\"\npreset = \"slack\"\n[route.verify]\nsecret = \"s\"\n";
    let sh = proxy(&bot, dir.path(), routes, "");
    for ts in ["-9223372036854775808", "9223372036854775807", "1e3", ""] {
        let r = post(
            &sh,
            "/slack",
            &[
                ("x-slack-request-timestamp", ts),
                ("x-slack-signature", "v0=00"),
            ],
            "{}",
        );
        assert_eq!(r.status, 401, "{ts}");
    }
    assert_eq!(
        support::get(sh.admin(), "/healthz").unwrap().status,
        200,
        "still serving"
    );
    assert_eq!(bot.count(), 0);
}

#[test]
fn admin_ids_must_decode_strictly() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let sh = proxy(&bot, dir.path(), TELEGRAM_PLAIN, "");
    let auth = [("authorization", "Bearer test-admin-token")];
    for id in ["%ff", "a%0Ab", "%00", "a%C3"] {
        let r = support::request(
            sh.admin(),
            "PUT",
            &format!("/v1/state/tg/{id}"),
            &auth,
            b"{}",
        )
        .unwrap();
        assert_eq!(r.status, 400, "{id}");
    }
    let r = support::request(
        sh.admin(),
        "PUT",
        "/v1/state/tg/%2B1415",
        &auth,
        b"{\"a\":1}",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        sh.stored("tg", "%2B1415").unwrap()["state"],
        json!({"a": 1})
    );
    // Namespaces follow the config's rule (issue 20, item 7): `web:rb2`
    // + `x` would write namespace `web`, id `rb2:x`; braces name Redis
    // hash tags. 400, and nothing is written.
    for path in [
        "/v1/state/tg:rb2/x",
        "/v1/state/we%7Db/x",
        "/v1/state/we}b/x",
        "/v1/state/t%20g/x",
        "/v1/links/tg:rb2/x",
    ] {
        let method = if path.starts_with("/v1/state") {
            "PUT"
        } else {
            "GET"
        };
        let r = support::request(sh.admin(), method, path, &auth, b"{\"a\":1}").unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    assert!(sh.stored("tg", "rb2:x").is_none());
}

#[test]
fn blank_secrets_are_refused() {
    let dir = support::temp_dir();
    let path = dir.path().join("c.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\nurl = \"http://127.0.0.1:2\"\n[store]\npath = \"{}\"\n{TELEGRAM_PLAIN}[route.verify]\nsecret_env = \"TG\"\n",
        dir.path().join("db").display()
    );
    std::fs::write(&path, text).unwrap();
    let out = support::run_statehold(
        &["check-config", "--config", path.to_str().unwrap()],
        &[("TG", "   ")],
    );
    support::assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("route[0].verify.secret_env"));
}

/// Import (issue 20, items 2 and 6): a record for a key that is a linked
/// channel here is skipped with its reason, never written through the
/// alias onto the member; every record is checked before anything is
/// written (versions below 2^53, lifetimes within the namespace's, names
/// as extracted keys are, hashing and sealing as this store's, JSON
/// values). Each refusal is counted with a reason and stores nothing.
#[test]
fn imports_are_checked_and_never_write_through_a_channel() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    bot.respond(|req| {
        let text = req.update_text();
        let text = text.as_str();
        let ok = r#"{"method":"sendMessage","text":"ok"}"#;
        if text == "LINK" {
            return json_answer(
                ok,
                &[
                    ("x-statehold-link", "member:42"),
                    ("x-statehold-state", r#"{"m":1}"#),
                ],
            );
        }
        json_answer(ok, &[("x-statehold-state", text)])
    });
    let sh = proxy(&bot, dir.path(), TELEGRAM_PLAIN, "");
    assert_eq!(sh.update(1, 501, "LINK").status, 200);
    let member = sh.stored("member", "42").expect("the member");
    assert_eq!(
        (member["version"].clone(), member["state"].clone()),
        (json!(1), json!({"m": 1}))
    );

    let import = |records: Value| -> Value {
        let (status, body) = sh.admin_call(
            "POST",
            "/v1/import",
            &json!({ "conversations": records }).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        body
    };
    let state = |json: &str| statehold::contract::encode_state(json.as_bytes());
    let r = import(
        json!([{"key": "tg:501", "version": 50, "ttl_ms": 60000, "state": state(r#"{"x":1}"#)}]),
    );
    assert_eq!(
        (r["imported"].clone(), r["skipped"].clone()),
        (json!(0), json!(1)),
        "{r}"
    );
    assert!(
        r["reasons"][0].as_str().unwrap().contains("linked channel"),
        "{r}"
    );
    let member = sh.stored("member", "42").expect("the member");
    assert_eq!(
        (member["version"].clone(), member["state"].clone()),
        (json!(1), json!({"m": 1}))
    );

    let good = |key: &str| json!({"key": key, "version": 3, "ttl_ms": 60000, "state": state(r#"{"ok":1}"#)});
    let with = |key: &str, field: &str, value: Value| {
        let mut c = good(key);
        c[field] = value;
        c
    };
    let bad = json!([
        with("tg:b1", "version", json!(u64::MAX)),
        with("tg:b2", "version", json!(1u64 << 53)),
        with("tg:b3", "ttl_ms", json!(u64::MAX)),
        with("tg:b4", "ttl_ms", json!(0)),
        with("tg:b5", "state", json!(state("not json"))),
        with(
            "tg:b6",
            "state",
            json!(statehold::contract::encode_state(b"\x01k1sealed"))
        ),
        good("we}b:x"),
        with("tg:b7", "key", json!("tg#:hashedname")),
        good("t g:x"),
    ]);
    let r = import(bad);
    assert_eq!(
        (r["imported"].clone(), r["errors"].clone()),
        (json!(0), json!(9)),
        "{r}"
    );
    for id in ["b1", "b2", "b3", "b4", "b5", "b6"] {
        assert!(sh.stored("tg", id).is_none(), "{id}");
    }
    let r = import(json!([good("tg:fine")]));
    assert_eq!(r["imported"], 1, "{r}");
    assert_eq!(sh.stored("tg", "fine").unwrap()["version"], 3);
}

/// Two routes that dedupe on the same field, each with a channel linked to
/// one member (issue 20, item 3): update 555 on `/a` and a different update
/// 555 on `/b` are two updates (dedupe ids on a member are qualified by
/// the route namespace they came by), and a redelivery on either route is
/// still answered once.
#[test]
fn linked_channels_of_two_routes_keep_their_dedupe_ids_apart() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    bot.respond(|req| {
        let text = req.update_text();
        let text = text.as_str();
        let ok = r#"{"method":"sendMessage","text":"ok"}"#;
        match text {
            "LINK" => json_answer(ok, &[("x-statehold-link", "member:7")]),
            other => json_answer(
                ok,
                &[("x-statehold-state", &format!(r#"{{"last":"{other}"}}"#))],
            ),
        }
    });
    let routes = r#"[[route]]
path = "/a"
namespace = "a"
key = "json:/message/chat/id"
dedupe = "json:/update_id"
[[route]]
path = "/b"
namespace = "b"
key = "json:/message/chat/id"
dedupe = "json:/update_id"
"#;
    let sh = proxy(&bot, dir.path(), routes, "");
    let send = |path: &str, update: u64, text: &str| {
        support::post_json(sh.addr(), path, &support::tg_update(update, 100, text), &[]).unwrap()
    };
    assert_eq!(send("/a", 1, "LINK").status, 200);
    assert_eq!(send("/b", 2, "LINK").status, 200);
    let handled = bot.requests().len();
    assert_eq!(send("/a", 555, "from a").status, 200);
    let r = send("/b", 555, "from b");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        bot.requests().len(),
        handled + 2,
        "both updates reached the bot"
    );
    assert_eq!(sh.stored("member", "7").unwrap()["state"]["last"], "from b");
    // A redelivery is still answered from its record.
    assert_eq!(send("/a", 555, "from a").status, 200);
    assert_eq!(bot.requests().len(), handled + 2);
}

/// A member-centric bot rolls its member back through the channel every
/// request comes by (issue 20, item 10): `X-Statehold-Rollback: previous`
/// on a linked channel's answer rolls the member back, hashed keys and
/// sealed values too. The admin API still refuses writes addressed to a
/// channel key.
#[test]
fn a_bot_rolls_its_member_back_through_a_linked_channel() {
    for private in [false, true] {
        let dir = support::temp_dir();
        let bot = Recorder::start();
        bot.respond(|req| {
            let text = req.update_text();
            let text = text.as_str();
            let ok = r#"{"method":"sendMessage","text":"ok"}"#;
            match text.split_once(' ') {
                Some(("LINK", state)) => json_answer(
                    ok,
                    &[
                        ("x-statehold-link", "member:9"),
                        ("x-statehold-state", state),
                    ],
                ),
                Some(("ROLLBACK", to)) => json_answer(ok, &[("x-statehold-rollback", to)]),
                _ => json_answer(ok, &[("x-statehold-state", text)]),
            }
        });
        let mut config = Config::new(bot.port, dir.path());
        config.routes = Some(TELEGRAM_PLAIN.to_string());
        config.store_extra = "history = 5\n".into();
        if private {
            config.private_at_rest();
        }
        let sh = Statehold::start(config);
        let r = sh.update(1, 300, r#"LINK {"v":1}"#);
        assert_eq!(r.status, 200);
        sh.update(2, 300, r#"{"v":2}"#);
        assert_eq!(sh.stored("member", "9").unwrap()["state"], json!({"v": 2}));
        let r = sh.update(3, 300, "ROLLBACK previous");
        assert_eq!(r.status, 200);
        let member = sh.stored("member", "9").unwrap();
        assert_eq!(
            member["state"],
            json!({"v": 1}),
            "private={private}: {member}"
        );
        assert_eq!(member["version"], 3);
        assert!(!sh.logs().contains("rollback refused"));
        let (status, _) = sh.admin_call("POST", "/v1/state/tg/300/rollback", r#"{"to": 1}"#);
        assert_eq!(
            status, 409,
            "a channel key is still refused by the admin API"
        );
    }
}

/// The admin listener serves a bounded number of connections (issue 20,
/// item 5): 180 idle admin connections under a 150-descriptor limit wait
/// in the backlog (64 are served) instead of taking the descriptors the
/// webhook listener needs, which keeps answering; no `accept failed` in
/// the log. (The report: 450 under 400 stalled a webhook 7.5 s.)
#[test]
fn idle_admin_connections_never_starve_the_webhook_listener() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let mut config = Config::new(bot.port, dir.path());
    config.routes = Some(TELEGRAM_PLAIN.to_string());
    config.wrapper = vec!["prlimit".into(), "--nofile=150:150".into()];
    let sh = Statehold::start(config);
    // Within the listen backlog: a connect beyond it would wait for SYN
    // retries instead of failing.
    let idle: Vec<TcpStream> = (0..180)
        .filter_map(|_| TcpStream::connect(sh.admin()).ok())
        .collect();
    assert!(idle.len() > 150, "{}", idle.len());
    for i in 0..5u64 {
        let r = sh.update(i + 1, 9100, "hello");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    drop(idle);
    support::wait_until("the admin listener answers again", || {
        support::get(sh.admin(), "/healthz").is_ok_and(|r| r.status == 200)
    });
    let logs = sh.logs();
    assert!(!logs.contains("Too many open files"), "{logs}");
}

/// Two linking answers that would wait for each other (issue 20, item 8):
/// `x` links to `y` while `y` links to `x`, both answers arriving while
/// both turns are held. Turns are taken in one order, so at most one link
/// is made, the other refused at once and counted; neither answer is a
/// 503 (both bots acted), and both are saved.
#[test]
fn links_that_wait_for_each_other_never_deadlock() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    bot.respond(|req| {
        let text = req.update_text();
        // Both requests are inside the bot before either answers.
        std::thread::sleep(Duration::from_millis(300));
        let ok = r#"{"method":"sendMessage","text":"ok"}"#;
        json_answer(
            ok,
            &[
                ("x-statehold-link", &text),
                ("x-statehold-state", r#"{"seen":1}"#),
            ],
        )
    });
    let sh = proxy(&bot, dir.path(), TELEGRAM_PLAIN, "");
    let (x, y) = std::thread::scope(|s| {
        let x = s.spawn(|| sh.update(1, 1001, "tg:1002"));
        let y = s.spawn(|| sh.update(2, 1002, "tg:1001"));
        (x.join().unwrap(), y.join().unwrap())
    });
    assert_eq!(
        (x.status, y.status),
        (200, 200),
        "{} / {}",
        x.text(),
        y.text()
    );
    let linked = sh.metric_or_zero(r#"statehold_links_total{result="linked"}"#);
    let refused = sh.metric_or_zero(r#"statehold_links_total{result="refused"}"#);
    assert!(
        linked <= 1.0 && refused >= 1.0,
        "linked {linked}, refused {refused}"
    );
    assert!(sh.logs().contains("link report refused"));
}

// ------------------------------------------------------------ finding 11

/// Issue 20, item 11: header mode, a snapshot too large for a header
/// (`contract.max_header_bytes`, 6 KiB by default) never sticks the
/// conversation. Before: it was stored and every later request carried an
/// 8 KB `X-Statehold-State` that bot servers refuse (aiohttp: 400 until the
/// TTL ended, `clients/python/tests/test_frameworks.py`). Now: reported
/// with a JSON object request, it is stored and the next JSON request
/// carries it in the body's member (`X-Statehold-State-In: body`);
/// reported with a form request, it is refused (counted, logged, the old
/// snapshot kept); a form request of a conversation whose snapshot is that
/// large is told `new`, counted, and the snapshot stays.
#[test]
fn a_snapshot_too_large_for_a_header_never_sticks_the_conversation() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    let big = format!(r#"{{"note":"{}"}}"#, "n".repeat(6000));
    let big_answer = big.clone();
    bot.respond(move |req| match req.header("x-say") {
        Some("big") => json_answer(r#"{"ok":true}"#, &[("x-statehold-state", &big_answer)]),
        Some(small) => json_answer(
            r#"{"ok":true}"#,
            &[("x-statehold-state", &format!(r#"{{"small":"{small}"}}"#))],
        ),
        None => json_answer(r#"{"ok":true}"#, &[]),
    });
    let routes = "[[route]]\npath = \"/web\"\nnamespace = \"web\"\nkey = \"header:x-chat\"\n";
    let sh = proxy(&bot, dir.path(), routes, "");
    let form = |say: &str| {
        let mut headers = vec![
            ("x-chat", "c1"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        if !say.is_empty() {
            headers.push(("x-say", say));
        }
        support::request(sh.addr(), "POST", "/web", &headers, b"text=hi").unwrap()
    };
    // A form request reports a snapshot too large for a header: refused.
    assert_eq!(form("one").status, 200);
    assert_eq!(form("big").status, 200);
    assert_eq!(sh.stored("web", "c1").unwrap()["state"]["small"], "one");
    assert_eq!(
        sh.metric("statehold_state_saves_total{result=\"rejected\"}"),
        1.0
    );
    assert!(sh.logs().contains("contract.max_header_bytes"));
    assert!(!sh.logs().contains("nnnnnnnn"), "no contents in the log");

    // A JSON request reports it: stored, and the next JSON request carries
    // it in the body (the client's own member replaced), not in a header.
    let json_body = r#"{"text":"hi","_statehold":{"state":{"forged":true}}}"#;
    let json = |say: &str| {
        let mut headers = vec![("x-chat", "c1")];
        if !say.is_empty() {
            headers.push(("x-say", say));
        }
        support::post_json(sh.addr(), "/web", json_body, &headers).unwrap()
    };
    assert_eq!(json("big").status, 200);
    assert_eq!(
        sh.stored("web", "c1").unwrap()["state"]["note"]
            .as_str()
            .map(str::len),
        Some(6000)
    );
    assert_eq!(json("").status, 200);
    let seen = bot.requests().last().cloned().unwrap();
    assert_eq!(seen.header("x-statehold-state-in"), Some("body"));
    assert_eq!(seen.header("x-statehold-state"), None);
    assert_eq!(seen.header("x-statehold-status"), Some("restored"));
    let member: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        member["_statehold"]["state"],
        serde_json::from_str::<Value>(&big).unwrap()
    );
    assert_eq!(member["_statehold"]["key"], "web:c1");
    assert_eq!(member["text"], "hi");

    // A form request cannot carry it: the bot sees a new conversation,
    // counted; the snapshot stays.
    assert_eq!(form("").status, 200);
    let seen = bot.requests().last().cloned().unwrap();
    assert_eq!(seen.header("x-statehold-status"), Some("new"));
    assert_eq!(seen.header("x-statehold-state"), None);
    assert_eq!(seen.header("x-statehold-state-in"), None);
    assert_eq!(
        sh.metric("statehold_state_loads_total{result=\"oversized\"}"),
        1.0
    );
    assert!(sh.stored("web", "c1").unwrap()["state"]["note"].is_string());
    // A client's own X-Statehold-State-In never reaches the bot.
    let headers = [("x-chat", "c2"), ("x-statehold-state-in", "body")];
    support::post_json(sh.addr(), "/web", json_body, &headers).unwrap();
    let seen = bot.requests().last().cloned().unwrap();
    assert_eq!(seen.header("x-statehold-state-in"), None);
}

/// Issue 20, item 11: a bot error answer that repeats the snapshot it was
/// handed (aiohttp's 400 echoed the start of the refused header line; a
/// framework's 422 may echo the request body) is withheld: 502 with a
/// fixed text, counted and logged, nothing stored. Before: passed on to
/// the client as it was.
#[test]
fn a_bot_error_answer_that_repeats_the_snapshot_is_withheld() {
    let dir = support::temp_dir();
    let bot = Recorder::start();
    bot.respond(|req| match req.header("x-statehold-state") {
        Some(state) if req.update_text() == "ECHO" => {
            let body = format!(
                "400, message: Got more than 8190 bytes when reading: b'X-Statehold-State: {}...'",
                &state[..state.len().min(60)]
            );
            answer(
                "HTTP/1.1 400 Bad Request",
                "text/plain",
                body.as_bytes(),
                &[],
            )
        }
        _ if req.update_text() == "FAIL" => answer(
            "HTTP/1.1 400 Bad Request",
            "text/plain",
            b"unknown command",
            &[],
        ),
        _ => json_answer(
            r#"{"ok":true}"#,
            &[(
                "x-statehold-state",
                r#"{"phone":"+4915112345678","step":"otp"}"#,
            )],
        ),
    });
    let sh = proxy(&bot, dir.path(), TELEGRAM_PLAIN, "");
    assert_eq!(post(&sh, "/telegram", &[], &tg(1, "7", "hi")).status, 200);
    let r = post(&sh, "/telegram", &[], &tg(2, "7", "ECHO"));
    assert_eq!(r.status, 502);
    let encoded = statehold::contract::encode_state(br#"{"phone":"+4915112345678","step":"otp"}"#);
    assert!(!r.text().contains(&encoded[..12]), "{}", r.text());
    assert!(!r.text().contains("4915112345678"));
    assert!(sh.logs().contains("repeats the snapshot"));
    assert_eq!(
        sh.metric("statehold_state_saves_total{result=\"rejected\"}"),
        1.0
    );
    assert_eq!(sh.stored("tg", "7").unwrap()["state"]["step"], "otp");
    // An error answer that does not repeat it passes as it was.
    let r = post(&sh, "/telegram", &[], &tg(3, "7", "FAIL"));
    assert_eq!((r.status, r.text().as_str()), (400, "unknown command"));
}
