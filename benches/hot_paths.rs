//! Criterion benches for the per-request hot paths: key extraction on real
//! platform payloads, contract encode/decode, embedded store load + commit,
//! and the whole pipeline over loopback against an in-process bot.
//!
//! `cargo bench --bench hot_paths` (add `-- <filter>` for one group).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use statehold::backend::embedded::EmbeddedBackend;
use statehold::backend::{Commit, Held, StateChange, Turns};
use statehold::contract::{self, Injection, LoadStatus};
use statehold::key::{first_present, ConvKey, JsonBody, KeySource, RequestParts};
use statehold::presets::Preset;

const TELEGRAM: &str = r#"{"update_id":10000,"message":{"date":1441645532,"chat":{"id":1111111,"type":"private","first_name":"Test","last_name":"Testov","username":"Test"},"message_id":1365,"from":{"id":1111111,"is_bot":false,"first_name":"Test","last_name":"Testov","username":"Test","language_code":"en"},"text":"I would like to book a table for four people tomorrow evening at eight, preferably by the window, and please note that one of us is vegetarian and another has a nut allergy, so the kitchen should be told in advance. Also, could you confirm whether there is parking nearby and if the restaurant is wheelchair accessible? Thank you very much for your help with this booking, it is for a birthday.","entities":[{"offset":0,"length":1,"type":"bold"}]}}"#;

const WHATSAPP: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=","timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]},"field":"messages"}]}]}"#;

fn snapshot_500() -> Vec<u8> {
    let state = serde_json::json!({
        "step": "payment", "name": "Sheena Nelson", "email": "sheena@example.com",
        "items": [{"sku": "A-1001", "qty": 2, "price": 1999}, {"sku": "B-2002", "qty": 1, "price": 4999}],
        "address": {"street": "1 Infinite Loop", "city": "Cupertino", "zip": "95014", "country": "US"},
        "notes": "Leave at the front desk. Call on arrival. Fragile items inside, handle with care.",
        "applied": [10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008]
    });
    serde_json::to_vec(&state).unwrap_or_default()
}

fn keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("key");
    let headers = HeaderMap::new();
    for (name, body, preset) in [
        ("telegram", TELEGRAM, Preset::Telegram),
        ("whatsapp", WHATSAPP, Preset::Whatsapp),
    ] {
        let sources: Vec<KeySource> = preset
            .key_sources()
            .iter()
            .map(|s| KeySource::parse(s).unwrap())
            .collect();
        let dedupe: Vec<KeySource> = preset
            .dedupe_sources()
            .iter()
            .map(|s| KeySource::parse(s).unwrap())
            .collect();
        g.throughput(Throughput::Bytes(body.len() as u64));
        let extract = |json: JsonBody<'_>| {
            let req = RequestParts {
                headers: &headers,
                query: None,
                body: body.as_bytes(),
                json: Some(json),
            };
            let id = first_present(&sources, &req).unwrap().unwrap();
            let key = ConvKey::new("ns", &id);
            let d = first_present(&dedupe, &req)
                .unwrap()
                .map(|d| d.into_owned());
            (key, d)
        };
        // Before issue 22: the body built into a `Value` (body mode still
        // does this, to rewrite it).
        g.bench_function(format!("{name}/parse+extract"), |b| {
            b.iter(|| {
                let json: Value = serde_json::from_slice(black_box(body.as_bytes())).unwrap();
                black_box(extract(JsonBody::Parsed(&json)))
            })
        });
        // Header mode now: checked as strictly, ids read in place.
        g.bench_function(format!("{name}/check+extract in place"), |b| {
            b.iter(|| {
                let text = black_box(body.as_bytes());
                statehold::key::check_json(text).unwrap();
                let text = std::str::from_utf8(text).unwrap();
                black_box(extract(JsonBody::Text(text)))
            })
        });
    }
    g.finish();
}

fn contract_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("contract");
    let state = snapshot_500();
    let key = ConvKey::new("tg", "1111111");
    let b64 = contract::encode_state(&state);
    let token = statehold::backend::TurnToken::mint(0, 42, &key).expect("token");
    // Minted for every keyed request (X-Statehold-Turn, issue 19).
    g.bench_function("turn_token/mint", |b| {
        b.iter(|| black_box(statehold::backend::TurnToken::mint(0, 42, &key)))
    });
    g.bench_function("turn_token/parse+digest", |b| {
        b.iter(|| {
            let t = statehold::backend::TurnToken::parse(black_box(token.as_str()));
            black_box(t.map(|t| t.digest()))
        })
    });
    g.bench_function("inject_headers/500B", |b| {
        b.iter(|| {
            let mut h = HeaderMap::with_capacity(8);
            let inj = Injection {
                key: &key,
                via: None,
                version: 7,
                status: LoadStatus::Restored,
                state: Some(&state),
                turn: Some(token.as_str()),
            };
            contract::inject_headers(&mut h, &inj, true);
            black_box(h)
        })
    });
    g.bench_function("capture_headers/raw_500B", |b| {
        let mut h = HeaderMap::new();
        h.insert(
            contract::HEADER_STATE,
            HeaderValue::from_bytes(&state).unwrap(),
        );
        b.iter(|| black_box(contract::capture_headers(black_box(&h), 65536).unwrap()))
    });
    g.bench_function("capture_headers/base64_500B", |b| {
        let mut h = HeaderMap::new();
        h.insert(contract::HEADER_STATE, HeaderValue::from_str(&b64).unwrap());
        b.iter(|| black_box(contract::capture_headers(black_box(&h), 65536).unwrap()))
    });
    g.bench_function("strip_reserved/clean", |b| {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("content-length", HeaderValue::from_static("1000"));
        b.iter(|| contract::strip_reserved(black_box(&mut h)))
    });
    let reply = format!(
        r#"{{"method":"sendMessage","chat_id":1111111,"text":"ok","_statehold":{{"state":{}}}}}"#,
        String::from_utf8_lossy(&state)
    );
    g.bench_function("capture_body/500B", |b| {
        b.iter(|| {
            black_box(contract::capture_body(
                black_box(reply.as_bytes()),
                "/_statehold",
                65536,
            ))
        })
    });
    g.finish();
}

/// A commit storing `state`.
/// Privacy at rest: the key hash and sealing of a 500-byte snapshot.
fn privacy(c: &mut Criterion) {
    use statehold::key::ConvKey;
    use statehold::privacy::Privacy;
    let p = Privacy::new(Some(&[9u8; 32]), vec![("k1".into(), [1u8; 32])]);
    let key = ConvKey::new("wa", "263774227441");
    let stored = p.stored_key(&key);
    let snapshot = Bytes::from(snapshot_500());
    let sealed = p.seal_state(&stored, snapshot.clone()).expect("seal");
    let mut g = c.benchmark_group("privacy");
    g.throughput(Throughput::Bytes(snapshot.len() as u64));
    g.bench_function("stored_key (HMAC-SHA256)", |b| {
        b.iter(|| black_box(p.stored_key(black_box(&key))))
    });
    g.bench_function("seal/500B", |b| {
        b.iter(|| black_box(p.seal_state(&stored, black_box(snapshot.clone()))))
    });
    g.bench_function("open/500B", |b| {
        b.iter(|| black_box(p.open_state(&stored, black_box(sealed.clone()))))
    });
    g.bench_function("seal+open/500B", |b| {
        b.iter(|| {
            let sealed = p
                .seal_state(&stored, black_box(snapshot.clone()))
                .expect("seal");
            black_box(p.open_state(&stored, sealed))
        })
    });
    g.finish();
}

fn put(state: Bytes, expected_version: Option<u64>) -> Commit {
    Commit {
        expected_version,
        change: StateChange::Put(state),
        dedupe: None,
        origin: Default::default(),
        audit: None,
        link: None,
    }
}

/// No turn in these benches waits on another.
const WAIT: Duration = Duration::from_secs(5);

fn embedded_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hour = Duration::from_secs(3600);
    let store = Arc::new(
        EmbeddedBackend::open(&dir.path().join("bench.db"), hour, hour, 32 << 20).unwrap(),
    );
    let state = Bytes::from(snapshot_500());
    // 10,000 stored conversations.
    rt.block_on(async {
        for i in 0..10_000 {
            let key = ConvKey::new("b", &i.to_string());
            let (held, _) = store.begin(&key, WAIT, None).await.unwrap();
            held.finish(put(state.clone(), None)).await.unwrap();
        }
    });
    let mut g = c.benchmark_group("embedded");
    let mut i = 0u64;
    g.bench_function("begin (turn + load)/500B", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            let key = ConvKey::new("b", &i.to_string());
            black_box(rt.block_on(store.begin(&key, WAIT, Some("u"))).unwrap())
        })
    });
    g.bench_function("begin+finish/500B (fsync)", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            let key = ConvKey::new("b", &i.to_string());
            rt.block_on(async {
                let (held, loaded) = store.begin(&key, WAIT, None).await.unwrap();
                let commit = put(state.clone(), Some(loaded.version));
                black_box(held.finish(commit).await.unwrap())
            })
        })
    });
    // 32 concurrent commits share fsyncs through group commit.
    g.throughput(Throughput::Elements(32));
    g.bench_function("32 concurrent begin+finish", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..32)
                    .map(|j| {
                        let store = Arc::clone(&store);
                        let state = state.clone();
                        tokio::spawn(async move {
                            let key = ConvKey::new("b", &j.to_string());
                            let (held, loaded) = store.begin(&key, WAIT, None).await.unwrap();
                            let commit = put(state, Some(loaded.version));
                            held.finish(commit).await.unwrap()
                        })
                    })
                    .collect();
                for t in tasks {
                    black_box(t.await.unwrap());
                }
            })
        })
    });
    g.finish();
}

/// A minimal in-process bot: answers every request with a ~500-byte snapshot.
async fn fast_bot(listener: tokio::net::TcpListener, snapshot: Arc<String>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let snapshot = Arc::clone(&snapshot);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let snapshot = Arc::clone(&snapshot);
                async move {
                    let mut resp = http::Response::new(Full::new(Bytes::from_static(
                        br#"{"method":"sendMessage","chat_id":1,"text":"ok"}"#,
                    )));
                    resp.headers_mut().insert(
                        "x-statehold-state",
                        HeaderValue::from_str(&snapshot).unwrap(),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let bot_listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let bot_addr = bot_listener.local_addr().unwrap();
    let snapshot = Arc::new(contract::encode_state(&snapshot_500()));
    rt.spawn(fast_bot(bot_listener, snapshot));
    let config_text = format!(
        r#"[server]
listen = "{listen}"
[upstream]
url = "http://{bot_addr}"
[store]
path = "{}"
[[route]]
path = "/telegram"
namespace = "tg"
preset = "telegram"
[admin]
listen = "{admin}"
[log]
level = "warn"
"#,
        dir.path().join("p.db").display()
    );
    let config = statehold::config::Config::parse(
        &config_text,
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(statehold::app::serve(config, async move {
        let _ = stop_rx.await;
    }));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    // Wait until the proxy accepts connections.
    rt.block_on(async {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(30);
    let mut update_id = 0u64;
    for (name, path) in [("unmatched", "/other"), ("telegram/embedded", "/telegram")] {
        g.bench_function(name, |b| {
            b.iter(|| {
                update_id += 1;
                let body = TELEGRAM
                    .replace("10000", &update_id.to_string())
                    .replace("1111111", &(update_id % 10_000).to_string());
                let req = http::Request::post(format!("http://{listen}{path}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                rt.block_on(async {
                    let resp = client.request(req).await.unwrap();
                    assert!(resp.status().is_success());
                    black_box(resp.into_body().collect().await.unwrap().to_bytes())
                })
            })
        });
    }
    g.finish();
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
}

criterion_group!(
    benches,
    keys,
    contract_codec,
    privacy,
    embedded_store,
    pipeline
);
criterion_main!(benches);
