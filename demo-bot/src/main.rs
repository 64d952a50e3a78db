//! `statehold-demo-bot`: a Telegram-style bot that keeps a multi-step
//! registration flow in an in-memory dict, as most bots do, with the two
//! small changes statehold needs: it takes its entry from the injected
//! snapshot when statehold hands one over, and reports its entry back in
//! `X-Statehold-State` (or clears it when the flow ends).
//!
//! The flow: `/start` → name → email → plan → done. Every state also keeps
//! `applied`, the update ids it has absorbed, so tests can prove that no
//! update was lost or applied twice.
//!
//! For the test suite it also records what it handled (`GET /_handled`),
//! counts overlapping requests of one conversation (`GET /_stats`), and obeys
//! request headers: `x-demo-delay-ms` (work slowly), `x-demo-status`
//! (answer with that status and leave its dict alone), `x-demo-report`
//! (report this raw `X-Statehold-State` value instead of the real state),
//! and `x-demo-defer-ms` with `x-demo-report-to` (answer at once with
//! `X-Statehold-Deferred: 1` and post the report that many ms later to
//! `POST /v1/turns/<token>` on that admin address, as a bot that answers
//! first and works afterwards does; `never`: never report). Late reports
//! and their answers are listed at `GET /_reports`.
//!
//! usage: statehold-demo-bot [--listen 127.0.0.1:3000] [--body-mode]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use statehold::contract::{decode_b64, encode_state};

#[derive(Default)]
struct Bot {
    /// The in-memory dict: conversation → flow state. Lost on restart.
    flows: Mutex<HashMap<String, Value>>,
    /// Requests per conversation currently inside the handler.
    in_flight: Mutex<HashMap<String, u32>>,
    overlaps: Mutex<u64>,
    handled: Mutex<Vec<Value>>,
    /// Late reports posted: key, update id, the status they got.
    reports: Mutex<Vec<Value>>,
    body_mode: bool,
    started: Option<Instant>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut listen: SocketAddr = ([127, 0, 0, 1], 3000).into();
    let mut body_mode = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => {
                listen = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| std::io::Error::other("--listen needs host:port"))?
            }
            "--body-mode" => body_mode = true,
            other => return Err(std::io::Error::other(format!("unknown argument {other}"))),
        }
    }
    let bot = Arc::new(Bot {
        body_mode,
        started: Some(Instant::now()),
        ..Bot::default()
    });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("demo bot listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let bot = Arc::clone(&bot);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let bot = Arc::clone(&bot);
                async move { Ok::<_, Infallible>(bot.handle(req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    r
}

impl Bot {
    fn micros(&self) -> u64 {
        self.started.map_or(0, |s| s.elapsed().as_micros() as u64)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/_handled" => return reply(StatusCode::OK, Value::Array(lock(&self.handled).clone())),
            "/_reports" => return reply(StatusCode::OK, Value::Array(lock(&self.reports).clone())),
            "/_stats" => {
                let flows = lock(&self.flows).len();
                let in_flight: u32 = lock(&self.in_flight).values().sum();
                return reply(
                    StatusCode::OK,
                    json!({"overlaps": *lock(&self.overlaps), "handled": lock(&self.handled).len(),
                           "flows": flows, "in_flight": in_flight}),
                );
            }
            "/_health" => return reply(StatusCode::OK, json!({"ok": true})),
            _ => {}
        }
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let update: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let chat = update
            .pointer("/message/chat/id")
            .cloned()
            .unwrap_or(Value::Null);
        let key = header("x-statehold-key").unwrap_or_else(|| format!("raw:{chat}"));
        let update_id = update.get("update_id").cloned().unwrap_or(Value::Null);
        let text = update
            .pointer("/message/text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();

        // What statehold handed over, header or body mode.
        let (status_seen, injected) = if self.body_mode {
            let field = update.get("_statehold").cloned().unwrap_or(Value::Null);
            (
                field
                    .get("status")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                field.get("state").cloned().filter(|s| !s.is_null()),
            )
        } else {
            let injected = header("x-statehold-state")
                .and_then(|s| decode_b64(s.as_bytes()))
                .and_then(|raw| serde_json::from_slice(&raw).ok());
            (header("x-statehold-status"), injected)
        };
        let reserved_seen: serde_json::Map<String, Value> = parts
            .headers
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("x-statehold-"))
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    Value::String(v.to_str().unwrap_or("?").into()),
                )
            })
            .collect();

        let start = self.micros();
        // Counted out on drop: hyper drops this future when the caller hangs up.
        let inside = InFlight::enter(&self, &key);
        if let Some(ms) = header("x-demo-delay-ms").and_then(|v| v.parse::<u64>().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let forced_status = header("x-demo-status")
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok());

        // The bot's own logic: the dict is its state; statehold's snapshot,
        // when there is one, is the truth (another replica or a previous
        // life of this process may have moved the flow on).
        let (text_out, new_state) = {
            let mut flows = lock(&self.flows);
            match (&status_seen.as_deref(), injected) {
                (_, Some(state)) => {
                    flows.insert(key.clone(), state);
                }
                (Some("new"), None) => {
                    flows.remove(&key);
                }
                _ => {}
            }
            let current = flows.get(&key).cloned();
            let (text_out, next) = step(current, &text, &update_id);
            if forced_status.is_none() {
                match &next {
                    Some(s) => {
                        flows.insert(key.clone(), s.clone());
                    }
                    None => {
                        flows.remove(&key);
                    }
                }
            }
            (text_out, next)
        };

        let end = self.micros();
        lock(&self.handled).push(json!({
            "key": key, "update_id": update_id, "text": text, "start_us": start, "end_us": end,
            "status_seen": status_seen, "reserved_seen": reserved_seen,
            "version_seen": header("x-statehold-version").or_else(|| update.pointer("/_statehold/version").map(Value::to_string)),
            "path": parts.uri.path(), "query": parts.uri.query(),
            "forwarded_for": header("x-forwarded-for"), "forwarded_proto": header("x-forwarded-proto"),
            "header_names": parts.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        }));

        if let Some(status) = forced_status {
            return reply(status, json!({"error": "forced by x-demo-status"}));
        }
        let mut body = json!({"method": "sendMessage", "chat_id": chat, "text": text_out});
        if let (Some(defer), Some(to), Some(token)) = (
            header("x-demo-defer-ms"),
            header("x-demo-report-to"),
            header("x-statehold-turn").or_else(|| {
                update
                    .pointer("/_statehold/turn")?
                    .as_str()
                    .map(str::to_string)
            }),
        ) {
            // Answer first, work afterwards: the report follows later, and
            // the conversation counts as in flight until it is saved.
            let report = match &new_state {
                Some(s) => json!({ "state": s }),
                None => json!({"clear": true}),
            };
            if let Ok(ms) = defer.parse::<u64>() {
                let bot = Arc::clone(&self);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    // Out before the report: once it is saved, statehold
                    // may hand over the next request before its answer
                    // reaches us.
                    drop(inside);
                    let (status, version) = post_report(&to, &token, &report).await;
                    lock(&bot.reports).push(json!({"key": key, "update_id": update_id,
                        "status": status, "version": version}));
                });
            }
            if self.body_mode {
                body["_statehold"] = json!({"deferred": true});
                return reply(StatusCode::OK, body);
            }
            let mut resp = reply(StatusCode::OK, body);
            resp.headers_mut()
                .insert("x-statehold-deferred", "1".parse().expect("static"));
            // Tests: a deferred answer that reports too (ambiguous).
            if let Some(raw) = parts.headers.get("x-demo-report") {
                resp.headers_mut().insert("x-statehold-state", raw.clone());
            }
            return resp;
        }
        drop(inside);
        if self.body_mode {
            body["_statehold"] = match &new_state {
                Some(s) => json!({"state": s}),
                None => json!({"clear": true}),
            };
            return reply(StatusCode::OK, body);
        }
        let mut resp = reply(StatusCode::OK, body);
        // Tests: report this raw value instead of the real state.
        if let Some(raw) = parts.headers.get("x-demo-report") {
            resp.headers_mut().insert("x-statehold-state", raw.clone());
            return resp;
        }
        match &new_state {
            // Base64url keeps any JSON header-safe.
            Some(s) => {
                if let Ok(v) = encode_state(s.to_string().as_bytes()).parse() {
                    resp.headers_mut().insert("x-statehold-state", v);
                }
            }
            None => {
                resp.headers_mut()
                    .insert("x-statehold-clear", "1".parse().expect("static"));
            }
        }
        resp
    }
}

/// POSTs a late report to statehold's admin listener (`addr`, host:port)
/// and returns the status it got (0: no answer) and the version saved.
async fn post_report(addr: &str, token: &str, report: &Value) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = report.to_string();
    let request = format!(
        "POST /v1/turns/{token} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, Value::Null);
    };
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, Value::Null);
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok();
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let version = serde_json::from_str::<Value>(body).map_or(Value::Null, |v| v["version"].clone());
    (status, version)
}

/// A request of one conversation inside the handler (for a deferring bot:
/// until its late report was answered).
struct InFlight {
    bot: Arc<Bot>,
    key: String,
}

impl InFlight {
    fn enter(bot: &Arc<Bot>, key: &str) -> Self {
        let mut m = lock(&bot.in_flight);
        let n = m.entry(key.to_string()).or_insert(0);
        if *n > 0 {
            *lock(&bot.overlaps) += 1;
        }
        *n += 1;
        InFlight {
            bot: Arc::clone(bot),
            key: key.to_string(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = lock(&self.bot.in_flight);
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// One step of the registration flow: (reply text, next state or None when
/// the flow is over / never started).
fn step(current: Option<Value>, text: &str, update_id: &Value) -> (String, Option<Value>) {
    let mut state = match current {
        Some(s) => s,
        None if text == "/start" => json!({"step": "name", "applied": []}),
        None => return ("Session expired. Send /start to register.".into(), None),
    };
    if let Some(applied) = state.get_mut("applied").and_then(Value::as_array_mut) {
        applied.push(update_id.clone());
    }
    let step = state
        .get("step")
        .and_then(Value::as_str)
        .unwrap_or("name")
        .to_string();
    if text == "/start"
        && step == "name"
        && state["applied"].as_array().is_some_and(|a| a.len() == 1)
    {
        return ("Welcome! What's your name?".into(), Some(state));
    }
    match step.as_str() {
        "name" => {
            state["name"] = json!(text);
            state["step"] = json!("email");
            (
                format!("Nice to meet you, {text}. Your email?"),
                Some(state),
            )
        }
        "email" => {
            state["email"] = json!(text);
            state["step"] = json!("plan");
            ("Which plan: basic or pro?".into(), Some(state))
        }
        _ => {
            let name = state["name"].as_str().unwrap_or("?").to_string();
            let email = state["email"].as_str().unwrap_or("?").to_string();
            (
                format!("Registered {name} <{email}> on the {text} plan. Done!"),
                None,
            )
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
